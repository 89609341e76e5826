"""The console in a real browser (Playwright driving Debian's headless
Chromium, with fonts-noto-cjk): what supervisors, agents and auditors do,
live updates included; no console error on any page; a screenshot of each
page kept in test-artifacts/console/ (TICKETING_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.console.site import PASSWORD, Site, eventually

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("TICKETING_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")) / "console"
LIVE_MS = 1500
"""A new event or alert on an open page: the console's promise is a second; this leaves room for a loaded CI box."""

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (.ci/run installs Debian's "
                                "chromium and fonts-noto-cjk in CI)")


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Person:
    """A signed-in page, with every console error and failed request it met."""

    def __init__(self, browser: Any, site: Site, role: str, viewport: tuple[int, int] = (1366, 768)) -> None:
        self.name = site.person(role)
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                           locale="zh-CN")
        self.page = self.context.new_page()
        self.errors: list[str] = []
        # a failed load is told twice, as a console message and as the response: kept once, with its address
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     and not m.text.startswith("Failed to load resource") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400
                     and not r.url.endswith(("/audit", "/login")) else None)
        self.base = f"http://127.0.0.1:{site.port}"
        self.page.goto(f"{self.base}/")
        self.page.fill("input[name=name]", self.name)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()

    def open(self, path: str) -> Any:
        self.page.goto(self.base + path)
        self.page.wait_for_load_state()
        return self.page

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        assert not self.errors, self.errors
        self.context.close()


def test_a_supervisor_sees_a_new_complaint_and_a_breach_arrive_live_and_assigns_it(browser: Any, site: Site) -> None:
    supervisor = Person(browser, site, "supervisor")
    agent = site.person("agent")
    page = supervisor.open("/")
    assert page.locator("nav a.here").inner_text() == "Now"
    before = int(page.locator("#open-total").inner_text())
    page.locator("body[data-stream=open]").wait_for()
    customer = site.customer(tier="vip", region="华北")
    began = time.monotonic()
    site.complaint(customer, region=None)  # its region: the customer's (the dashboard once said "(none)")
    expect(page.locator("#open-total")).to_have_text(str(before + 1), timeout=LIVE_MS)
    print(f"on / after {time.monotonic() - began:.2f} s")
    assert "华北" in page.locator("#open-by-region").inner_text()
    supervisor.shot("now-1366x768")

    page = supervisor.open("/limits")
    page.locator("body[data-stream=open]").wait_for()
    urgent = site.complaint(customer, priority="urgent")
    began = time.monotonic()
    row = page.locator(f'tr[data-case="{urgent}"]').first
    row.wait_for(timeout=LIVE_MS)
    print(f"on /limits after {time.monotonic() - began:.2f} s")
    countdown = row.locator(".countdown")
    first = countdown.inner_text()
    page.wait_for_timeout(1100)
    assert countdown.inner_text() != first, "the time left counts down in the browser"
    supervisor.shot("limits-counting-down")
    # its first response falls due 4 s after registering: the breach alert pops up and the row turns breached
    page.locator("#alerts li.breached").first.wait_for(timeout=8000)
    assert urgent[:8] in page.locator("#alerts").inner_text()
    page.locator(f'tr.breached[data-case="{urgent}"]').first.wait_for(timeout=LIVE_MS)
    supervisor.shot("limits-breached")

    form = row.locator("form")
    form.locator("select").select_option(agent)
    form.locator("button").click()
    page.wait_for_load_state()
    assert f"assigned to {agent}" in page.locator(".done").inner_text()
    last = site.history(urgent)["events"][-1]
    assert last["type"] == "complaint.assigned" and last["actor"]["id"] == supervisor.name
    supervisor.close()


def test_a_supervisor_clears_a_dangerous_customer_and_sees_the_alert(browser: Any, site: Site) -> None:
    supervisor = Person(browser, site, "supervisor")
    customer = site.customer()
    site.command("customer", "flag", {"mark": "extortion", "reason": "asked for money to withdraw a post"}, customer)
    page = supervisor.open("/dangerous")
    row = page.locator(f'tr[data-customer="{customer}"]')
    if not row.count():
        eventually(lambda: supervisor.open("/dangerous").locator(f'tr[data-customer="{customer}"]').count())
        page = supervisor.page
        row = page.locator(f'tr[data-customer="{customer}"]')
    supervisor.shot("dangerous")
    page.locator("body[data-stream=open]").wait_for()
    row.locator("input[name=reason]").fill("apologised in person; 已当面致歉")
    row.locator("button").click()
    page.wait_for_load_state()
    assert "cleared from the list" in page.locator(".done").inner_text()
    page.locator("body[data-stream=open]").wait_for()
    page.locator("#alerts li.cleared").first.wait_for(timeout=5000)
    assert page.locator(f'tr[data-customer="{customer}"]').count() == 0 or eventually(
        lambda: supervisor.open("/dangerous").locator(f'tr[data-customer="{customer}"]').count() == 0)
    supervisor.close()


def test_a_case_scrubbed_to_before_its_resolution_shows_it_as_it_was(browser: Any, site: Site) -> None:
    case_id = site.complaint()
    site.command("complaint", "acknowledge", {"note": "called"}, case_id)
    site.command("complaint", "resolve", {"resolution": "sent again", "first_contact": False}, case_id)
    supervisor = Person(browser, site, "supervisor")
    page = supervisor.open(f"/cases/{case_id}")
    assert page.locator("table.state").inner_text().count("resolved") >= 1
    supervisor.shot("case-now")
    slider = page.locator("#scrub")
    slider.evaluate("(s) => { s.value = 2; s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); }")
    page.wait_for_url("**at=*")
    assert "version 2, 2 of 3 events" in page.locator("#as-of").inner_text()
    state = page.locator("table.state").inner_text()
    assert "acknowledged" in state and "sent again" not in state
    assert page.locator("tr.event.later").count() == 1  # the resolution, greyed: it had not happened then
    supervisor.shot("case-before-resolution")
    supervisor.close()


def test_an_agent_finds_no_supervisor_action_and_no_contact_data(browser: Any, site: Site) -> None:
    customer = site.customer()
    site.complaint(customer)
    site.command("customer", "flag", {"mark": "malicious", "reason": "threatened staff"}, customer)
    agent = Person(browser, site, "agent")
    for path in ("/", "/limits", "/dangerous", f"/staff/{datetime.now():%Y-%m}"):
        page = agent.open(path)
        text = page.content()
        assert not any(contact in text for contact in ("138 0013 8000", "世纪大道", "王小明")), path
        assert page.locator("text=Clear").count() == 0
    assert [a.inner_text() for a in agent.open("/").locator("nav a").all()] == [
        "Now", "Limits", "Dangerous customers", "Staff"]
    assert agent.open("/audit").locator("h1").inner_text() == "Not for your role"
    agent.shot("agent-forbidden")
    agent.close()


def test_an_auditor_verifies_the_chain_and_reads_the_report(browser: Any, site: Site) -> None:
    site.complaint()
    auditor = Person(browser, site, "auditor", viewport=(1920, 1080))
    page = auditor.open("/audit")
    assert "The history is intact" in page.locator("#verdict").inner_text()
    auditor.shot("audit-1920x1080")
    period = f"{datetime.now():%Y-%m}"
    page = auditor.open(f"/reports/{period}")
    assert page.locator("#chart-top svg").count() == 1
    assert "华东" in page.locator("#chart-top").inner_text()  # Chinese drawn by the browser's CJK font
    auditor.shot("report")
    page = auditor.open(f"/staff/{period}")
    auditor.shot("staff")
    page = auditor.open("/contracts/")
    assert page.locator("a", has_text="asyncapi.json").count() == 1
    auditor.shot("contracts")
    auditor.close()
