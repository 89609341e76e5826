"""The dashboard and the quality report over the real bus: a seeded two
months of cases, callbacks and customers, driven with a moving clock, and
every figure checked against numbers the test computes from what it did."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from infra.bootstrap import Runtime
from infra.settings import Settings
from tests.conftest import Client, FakeClock, customer_data, wait_for
from tests.integration.test_callbacks import history, the_callback

pytestmark = pytest.mark.anyio

ZONE = "Asia/Shanghai"
NOVEMBER = (datetime(2026, 10, 31, 16, 0, tzinfo=UTC), datetime(2026, 11, 30, 16, 0, tzinfo=UTC))
OCTOBER = (datetime(2026, 9, 30, 16, 0, tzinfo=UTC), NOVEMBER[0])
CATEGORIES = ("product_quality", "delivery", "billing", "service_attitude")
PRODUCTS = ("育肥牛饲料 A3", "预混料 P2", "犊牛料 C1")
REGIONS = ("华东", "华南", "西北")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shipped SLA policy (30 min, 4 h, 24 h ...) and a department in Shanghai."""
    return settings.model_copy(update={"sla_policy": None, "timezone": ZONE})


@dataclass
class Case:
    registered_at: datetime
    category: str
    product: str
    region: str
    acknowledged_at: datetime
    resolved_at: datetime
    first_contact: bool
    callback: str  # "done", "missed" or "none"
    score: int = 0
    satisfied: bool = True
    called_at: datetime | None = None
    case_id: str = ""
    follow_up_at: datetime | None = None


@dataclass
class Seed:
    customers: list[tuple[datetime, str]] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)


def plan(rng: random.Random) -> Seed:
    seed = Seed()
    seed.customers = [(datetime(2026, 10, 1, 2, 0, tzinfo=UTC), "") for _ in range(4)]
    seed.customers += [(datetime(2026, 11, 10, 2, 0, tzinfo=UTC), "")]
    starts = [datetime(2026, 10, 20, 3, 0, tzinfo=UTC) + timedelta(hours=37 * i) for i in range(24)]
    for n, start in enumerate(starts):
        resolve_after = rng.choice([timedelta(hours=3), timedelta(hours=20), timedelta(hours=30)])
        case = Case(start, rng.choice(CATEGORIES), rng.choice(PRODUCTS), rng.choice(REGIONS),
                    start + rng.choice([timedelta(minutes=10), timedelta(minutes=25), timedelta(minutes=50)]),
                    start + resolve_after, rng.random() < 0.7, rng.choice(["done", "done", "missed", "none"]))
        if case.callback == "done":
            case.score = rng.randint(60, 100)
            case.satisfied = n != 14  # one customer is not satisfied: a follow-up complaint opens
            case.called_at = case.resolved_at + timedelta(hours=2)
        elif case.callback == "missed":
            case.called_at = case.resolved_at + timedelta(hours=1)
        seed.cases.append(case)
    return seed


async def drive(seed: Seed, client: Client, clock: FakeClock, runtime: Runtime) -> list[str]:
    """Carry the seed out in time order; returns the customers' ids."""
    customers = []
    for at, _ in seed.customers:
        clock.now = at
        reply = await client.command("customer", "register", customer_data())
        assert reply["ok"], reply
        customers.append(reply["aggregate_id"])
    steps: list[tuple[datetime, int, Callable[[], Awaitable[None]]]] = []
    for n, case in enumerate(seed.cases):
        steps += [(case.registered_at, n, _register(client, case, customers[n % 4])),
                  (case.acknowledged_at, n, _step(client, case, "acknowledge", {})),
                  (case.resolved_at, n, _step(client, case, "resolve", {
                      "resolution": "处理完毕 done", "first_contact": case.first_contact}))]
        if case.called_at is not None:
            steps.append((case.called_at, n, _call(client, case, runtime)))
    for at, _, step in sorted(steps, key=lambda s: (s[0], s[1])):
        clock.now = at
        await step()
    return customers


def _register(client: Client, case: Case, customer: str) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        reply = await client.command("complaint", "register", {
            "customer_id": customer, "channel": "phone", "category": case.category, "priority": "normal",
            "description": "seeded", "product": case.product, "region": case.region})
        assert reply["ok"], reply
        case.case_id = reply["aggregate_id"]
    return run


def _step(client: Client, case: Case, command: str, data: dict[str, Any]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        reply = await client.command("complaint", command, data, aggregate_id=case.case_id)
        assert reply["ok"], reply
    return run


def _call(client: Client, case: Case, runtime: Runtime) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        callback = (await the_callback(runtime, case.case_id))["aggregate_id"]
        if case.callback == "missed":
            for _ in range(3):
                assert (await client.command("callback", "attempt", {"outcome": "no_answer"},
                                             aggregate_id=callback))["ok"]
            return
        reply = await client.command("callback", "complete", {
            "satisfied": case.satisfied, "score": case.score, "comment": None if case.satisfied else "还是结块"},
            aggregate_id=callback)
        assert reply["ok"], reply

        async def revisited() -> bool:  # the policy's revisit (and follow-up) before time moves on
            types = [e["type"] for e in (await history(client, case.case_id))["events"]]
            return "complaint.revisited" in types and (case.satisfied or "complaint.follow_up_opened" in types)
        await wait_for(revisited)
        if not case.satisfied:
            case.follow_up_at = case.called_at
    return run


def within(at: datetime | None, period: tuple[datetime, datetime]) -> bool:
    return at is not None and period[0] <= at < period[1]


def expected(seed: Seed, period: tuple[datetime, datetime]) -> dict[str, Any]:
    """The figures, from what the test did."""
    cases = seed.cases
    registered = [c for c in cases if within(c.registered_at, period)]
    follow_ups = [c for c in cases if within(c.follow_up_at, period)]
    resolved = [c for c in cases if within(c.resolved_at, period)]
    acknowledged = [c for c in cases if within(c.acknowledged_at, period)]
    done = [c for c in cases if c.callback == "done" and within(c.called_at, period)]
    missed = [c for c in cases if c.callback == "missed" and within(c.called_at, period)]

    def rate(hits: list[Case], of: list[Case]) -> float | None:
        return len(hits) / len(of) if of else None

    categories = Counter(c.category for c in registered + follow_ups)
    customers = sum(at < period[1] for at, _ in seed.customers)
    return {
        "registered": len(registered) + len(follow_ups), "resolved": len(resolved),
        "first_contact_rate": rate([c for c in resolved if c.first_contact], resolved),
        "first_response": (sum(c.acknowledged_at - c.registered_at <= timedelta(minutes=30) for c in acknowledged),
                           sum(c.acknowledged_at - c.registered_at > timedelta(minutes=30) for c in acknowledged)),
        "plan": (sum(c.resolved_at - c.registered_at <= timedelta(hours=4) for c in resolved),
                 sum(c.resolved_at - c.registered_at > timedelta(hours=4) for c in resolved)),
        "resolution": (sum(c.resolved_at - c.registered_at <= timedelta(hours=24) for c in resolved),
                       sum(c.resolved_at - c.registered_at > timedelta(hours=24) for c in resolved)),
        "loop": (sum(c.called_at - c.registered_at <= timedelta(hours=24) for c in done),
                 sum(c.called_at - c.registered_at > timedelta(hours=24) for c in done)),
        "callback": (len(done), 0),  # called two hours after the resolution, within the 24 h
        "callbacks_done": len(done), "callbacks_missed": len(missed),
        "satisfaction": sum(c.score for c in done) / len(done) if done else None,
        "complaint_rate": 100 * (len(registered) + len(follow_ups)) / customers,
        "top_categories": sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))[:5],
        "unsatisfied": [c.case_id for c in done if not c.satisfied],
    }


async def test_the_monthly_report_matches_what_happened(
        runtime: Runtime, client: Client, clock: FakeClock, settings: Settings, tmp_path: Path) -> None:
    seed = plan(random.Random(20261125))
    await drive(seed, client, clock, runtime)
    clock.now = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    await runtime.worker.sla.tick()

    reply = await client.query("report", {"period": "2026-11"})
    assert reply["ok"], reply
    want, before = expected(seed, NOVEMBER), expected(seed, OCTOBER)
    figures = reply["figures"]
    assert (figures["start"], figures["end"]) == ("2026-10-31T16:00:00.000000Z", "2026-11-30T16:00:00.000000Z")
    assert figures["registered"] == {"complaint": want["registered"], "repair_job": 0}
    assert figures["resolved"]["complaint"] == want["resolved"]
    assert figures["first_contact_rate"] == pytest.approx(want["first_contact_rate"])
    assert figures["callbacks_done"] == want["callbacks_done"]
    assert figures["callbacks_missed"] == want["callbacks_missed"]
    assert figures["satisfaction"] == pytest.approx(want["satisfaction"])
    for metric in ("first_response", "plan", "resolution", "callback", "loop"):
        met, missed = want[metric]
        assert (reply["on_time"][metric]["met"], reply["on_time"][metric]["missed"]) == (met, missed), metric
    assert figures["first_response_on_time"] == pytest.approx(
        want["first_response"][0] / sum(want["first_response"]))
    assert reply["complaint_rate"] == pytest.approx(want["complaint_rate"])
    assert reply["previous"]["registered"]["complaint"] == before["registered"]
    assert reply["complaint_rate_previous"] == pytest.approx(before["complaint_rate"])
    assert reply["complaint_rate_change"] == pytest.approx(
        (want["complaint_rate"] - before["complaint_rate"]) / before["complaint_rate"])
    assert [(r["name"], r["count"]) for r in reply["top"]["categories"]] == want["top_categories"]
    scored = [w for w in reply["satisfaction_trend"] if w["count"]]
    assert sum(w["count"] for w in scored) == want["callbacks_done"]
    assert reply["satisfaction_trend"][0]["start"] == figures["start"]
    assert reply["satisfaction_trend"][-1]["end"] == figures["end"]
    unsatisfied = [c for c in reply["typical_cases"] if any("not satisfied" in why for why in c["why"])]
    assert [c["case_id"] for c in unsatisfied] == want["unsatisfied"]
    misses = " ".join(reply["misses"])
    assert ("satisfaction" in misses) == (want["satisfaction"] < 90)
    assert ("first-contact" in misses) == (want["first_contact_rate"] < 0.8)

    quarter = await client.query("report", {"period": "2026-q4"})
    assert quarter["period"] == "2026-Q4" and quarter["previous"]["period"] == "2026-Q3"
    assert quarter["figures"]["registered"]["complaint"] == want["registered"] + before["registered"]
    assert quarter["figures"]["callbacks_done"] == want["callbacks_done"] + before["callbacks_done"]

    # The same figures as files, from the CLI.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env["TICKETING_DATA_DIR"] = str(settings.data_dir)
    done = await asyncio.to_thread(
        subprocess.run, [str(Path(sys.executable).parent / "ticketing"), "report", "--month", "2026-11",
                         "--out", str(tmp_path / "reports")],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Glyph" not in done.stderr and "Warning" not in done.stderr, done.stderr  # Chinese names drawn quietly
    html = (tmp_path / "reports" / "report-2026-11.html").read_text(encoding="utf-8")
    assert html.count("<svg") == 5 and "<script" not in html
    on_disk = orjson.loads((tmp_path / "reports" / "report-2026-11.json").read_bytes())
    assert on_disk["figures"] == reply["figures"] and on_disk["on_time"] == reply["on_time"]
    csv_rows = (tmp_path / "reports" / "report-2026-11.csv").read_text(encoding="utf-8").splitlines()
    assert f"figures,registered.complaint,{want['registered']}" in csv_rows
    # The staff section: the one agent who did the work, as the staff.assessment query has it.
    staff = await client.query("staff.assessment", {"period": "2026-11"}, role="manager")
    assert on_disk["staff"] == staff and [c["person"] for c in staff["cards"]] == ["agent-1"]
    card = staff["cards"][0]
    assert card["figures"]["handled_total"] == want["resolved"] and card["rank"] == 1
    assert 'id="staff-table"' in html and html.count('class="staff-card"') == 1
    assert f"staff,agent-1.score,{card['score']}" in csv_rows and f"staff,agent-1.grade,{card['grade']}" in csv_rows
    await look_at(tmp_path / "reports" / "report-2026-11.html", tmp_path)


async def look_at(page: Path, tmp_path: Path) -> None:
    """Open the page in headless Chromium: it renders, with its five charts,
    and logs no error. Skipped where no Chromium is installed."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium in CI)")
    shot = tmp_path / "report.png"
    dom = await asyncio.to_thread(subprocess.run, [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
        "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr
    assert dom.stdout.count("<svg") == 5 and "Service quality report 2026-11" in dom.stdout
    assert "Uncaught" not in dom.stderr and "CONSOLE(" not in dom.stderr, dom.stderr
    snap = await asyncio.to_thread(subprocess.run, [
        browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1200,2400",
        page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert snap.returncode == 0 and shot.stat().st_size > 20_000, snap.stderr


async def test_the_dashboard_shows_open_work_and_todays_figures(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)  # 01:00 on the 25th in Shanghai
    customer = await client.known_customer()
    cases = []
    for category, region in (("delivery", "华东"), ("delivery", "华南"), ("billing", "华东")):
        reply = await client.command("complaint", "register", {
            "customer_id": customer, "channel": "phone", "category": category, "priority": "normal",
            "description": "d", "region": region})
        cases.append(reply["aggregate_id"])
        clock.advance(minutes=10)
    assert (await client.command("complaint", "assign", {"assignee": "李娜"}, aggregate_id=cases[0]))["ok"]
    assert (await client.command("complaint", "acknowledge", {}, aggregate_id=cases[0]))["ok"]
    assert (await client.command("complaint", "resolve", {"resolution": "ok", "first_contact": True},
                                 aggregate_id=cases[2]))["ok"]
    await the_callback(runtime, cases[2])  # scheduled before the clock moves on
    clock.advance(hours=2)  # the two still open are past their 30 min first response

    async def settled() -> dict[str, Any]:
        await runtime.worker.sla.tick()
        reply = await client.query("dashboard", {})
        return reply if reply["month"]["resolved"]["complaint"] == 1 and reply["open_total"] == 3 else {}
    reply = await wait_for(settled)
    assert reply["timezone"] == ZONE
    # two complaints still open, and the callback the resolved one is waiting for
    assert reply["open"]["kind"] == {"complaint": 2, "callback": 1}
    assert reply["open"]["category"] == {"delivery": 2, "(none)": 1}
    assert reply["open"]["status"] == {"acknowledged": 1, "registered": 1, "scheduled": 1}
    assert reply["open"]["assignee"] == {"(none)": 2, "李娜": 1}
    assert reply["backlog"] == {"under 1h": 0, "1-4h": 3, "4-24h": 0, "1-3d": 0, "over 3d": 0}
    for period in ("today", "month"):
        assert reply[period]["registered"]["complaint"] == 3
        assert reply[period]["first_contact_rate"] == 1.0
    assert reply["today"]["period"] == "2026-11-25"
    assert reply["limits_breached"] >= 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env |= {"TICKETING_DATA_DIR": str(runtime.settings.data_dir), "COLUMNS": "200"}
    shown = await asyncio.to_thread(subprocess.run, [str(Path(sys.executable).parent / "ticketing"), "dashboard"],
                                    env=env, capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "3 open cases" in shown.stdout and "first-contact resolution" in shown.stdout
    assert "breached" in shown.stdout and "李娜" in shown.stdout
    bad = await client.query("dashboard", {"extra": 1})
    assert bad["error"]["code"] == "validation_error"
    bad = await client.query("report", {"period": "November"})
    assert bad["error"]["code"] == "validation_error"
