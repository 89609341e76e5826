"""The console from outside with plain HTTP: sign-in, every refusal (no
session, a forged CSRF token, a removed user, too many failures, a role's
pages and actions), every page, the live stream, the contracts."""

from __future__ import annotations

import json
import re
import socket
import time
from datetime import datetime, timedelta
from pathlib import Path

import orjson

import contracts
from tests.console.site import PASSWORD, Site, Web, eventually

CONTACT = ("138 0013 8000", "世纪大道", "王小明")
"""The test customer's phone, address and name: never on a page."""


def test_without_a_session_every_page_sends_to_sign_in_and_nothing_is_done(site: Site) -> None:
    web = site.web()
    for path in ("/", "/limits", "/dangerous", "/cases/x", "/reports/2026-11", "/staff/2026-11", "/audit"):
        reply = web.get(path)
        assert reply.status == 303 and reply.location.startswith("/login?next="), (path, reply.status)
    assert web.get("/stream").status == 401
    case_id = site.complaint()
    reply = web.post(f"/cases/{case_id}/assign", {"assignee": "x", "csrf": "x"})
    assert reply.status == 303 and reply.location.startswith("/login")
    assert [e["type"] for e in site.history(case_id)["events"]] == ["complaint.registered"]
    # a cookie of our own making is nobody
    web.cookies["ticketing_session"] = "WyJvcGVyYXRvciIsIngiLCJ5Il0.forged.signature"
    assert web.get("/").status == 303


def test_sign_in_needs_the_forms_own_token_and_the_right_password(site: Site) -> None:
    name = site.person("supervisor")
    web = site.web()
    assert web.post("/login", {"name": name, "password": PASSWORD, "token": "x"}).status == 403
    assert web.sign_in(name, "wrong password!").status == 401
    reply = web.sign_in(name)
    assert reply.status == 303 and reply.location == "/"
    cookie = next(v for v in reply.set_cookies if v.startswith("ticketing_session="))
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert web.get("/").status == 200
    # after sign-in, back where the person was going, never to another site
    other = site.web()
    page = other.get("/login?next=//evil.example/x")
    token = re.search(r'name="token" value="([^"]+)"', page.body).group(1)  # type: ignore[union-attr]
    assert other.post("/login", {"name": name, "password": PASSWORD, "token": token,
                                 "next": "//evil.example/x"}).location == "/"


def test_five_failed_sign_ins_a_minute_for_one_name_are_answered_429_even_with_the_right_password(
        site: Site) -> None:
    name = site.person("agent")
    web = site.web()
    for _ in range(5):
        assert web.sign_in(name, "not the password").status == 401
    refused = web.sign_in(name)
    assert refused.status == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "ticketing_session" not in web.cookies
    assert site.web().sign_in(site.person("agent")).status == 303  # another name is not held up


def test_each_role_sees_its_pages_and_is_refused_the_others_with_a_plain_403(site: Site) -> None:
    site.complaint()
    expected = {
        "agent": {"/": 200, "/limits": 200, "/dangerous": 200, "/reports/2026-11": 403, "/staff/2026-11": 200,
                  "/audit": 403},
        "technician": {"/": 403, "/limits": 200, "/dangerous": 403, "/reports/2026-11": 403,
                       "/staff/2026-11": 200, "/audit": 403},
        "supervisor": {"/": 200, "/limits": 200, "/dangerous": 200, "/reports/2026-11": 200,
                       "/staff/2026-11": 200, "/audit": 403},
        "manager": {"/": 200, "/limits": 200, "/dangerous": 200, "/reports/2026-11": 200, "/staff/2026-11": 200,
                    "/audit": 200},
        "auditor": {"/": 200, "/limits": 200, "/dangerous": 200, "/reports/2026-11": 200, "/staff/2026-11": 200,
                    "/audit": 200},
    }
    for role, pages in expected.items():
        web = site.web()
        assert web.sign_in(site.person(role)).status == 303
        for path, status in pages.items():
            reply = web.get(path)
            assert reply.status == status, (role, path, reply.status, reply.body[-400:])
            if status == 403:
                assert "Not for your role" in reply.body and "<script>" not in reply.body.split("</head>")[1]
            assert not any(text in reply.body for text in CONTACT), (role, path)


def test_an_agent_is_shown_no_supervisor_action_and_is_refused_one_posted_anyway(site: Site) -> None:
    customer_id = site.customer()
    site.command("customer", "flag", {"mark": "malicious", "reason": "threatened staff"}, customer_id)
    web = site.web()
    web.sign_in(site.person("agent"))
    listed = eventually(lambda: _showing(web, "/dangerous", customer_id))
    assert listed and "/clear" not in listed and "Clear</button>" not in listed
    reply = web.post(f"/customers/{customer_id}/clear", {"reason": "be nice", "csrf": web.csrf("/")})
    assert reply.status == 403
    assert [e["type"] for e in site.history(customer_id)["events"]] == ["customer.registered", "customer.flagged"]
    # what the role tables let an agent do stays (an agent may assign a complaint; domain.md: supervisors do)
    case_id = site.complaint()
    assert eventually(lambda: case_id in web.get("/limits").body)


def test_a_forged_csrf_token_changes_nothing_and_the_real_one_acts_recording_person_and_console(
        site: Site) -> None:
    case_id = site.complaint()
    agent = site.person("agent")
    supervisor = site.person("supervisor")
    web = site.web()
    web.sign_in(supervisor)
    other = site.web()
    other.sign_in(site.person("supervisor"))
    for token in ("", "forged", other.csrf()):  # missing, made up, another session's
        assert web.post(f"/cases/{case_id}/assign", {"assignee": agent, "csrf": token}).status == 403
    assert [e["type"] for e in site.history(case_id)["events"]] == ["complaint.registered"]
    reply = web.post(f"/cases/{case_id}/assign", {"assignee": agent, "csrf": web.csrf()})
    assert reply.status == 303 and "done=" in reply.location, reply.location
    events = site.history(case_id)["events"]
    assert events[-1]["type"] == "complaint.assigned" and events[-1]["data"]["assignee"] == agent
    assert events[-1]["actor"] == {"id": supervisor, "role": "supervisor", "via": {"id": "console", "role": "gateway"}}
    # a command the domain refuses comes back said, not as a crash
    refused = web.post("/cases/00000000-0000-0000-0000-000000000000/assign", {"assignee": agent, "csrf": web.csrf()})
    assert refused.status == 303 and "error=not_found" in refused.location


def test_a_removed_user_a_new_password_and_signing_out_each_end_the_session_at_once(site: Site) -> None:
    for ending in ("remove", "passwd", "logout"):
        name = site.person("supervisor")
        web = site.web()
        web.sign_in(name)
        assert web.get("/").status == 200
        stream = _open_stream(site.port, web.cookies)
        if ending == "remove":
            assert site.cli("users", "remove", name).returncode == 0
        elif ending == "passwd":
            done = site.cli("users", "passwd", name, "--password-file", "-", stdin="another password 2\n")
            assert done.returncode == 0, done.stderr
        else:
            kept = dict(web.cookies)
            assert web.post("/logout", {"csrf": web.csrf("/")}).status == 303
            web.cookies = kept  # the cookie replayed after signing out
        assert web.get("/").status == 303, ending
        site.complaint()  # something arrives: the open stream notices who is gone
        assert "event: ended" in _read_stream(stream, "event: ended", 5), ending


def test_the_stream_brings_a_new_event_within_a_second_and_an_agent_learns_only_that_something_changed(
        site: Site) -> None:
    supervisor, agent = site.web(), site.web()
    supervisor.sign_in(site.person("supervisor"))
    agent.sign_in(site.person("agent"))
    watching, changed = _open_stream(site.port, supervisor.cookies), _open_stream(site.port, agent.cookies)
    time.sleep(0.2)
    began = time.monotonic()
    case_id = site.complaint()
    text = _read_stream(watching, case_id, 5)
    assert time.monotonic() - began < 1.0, f"{time.monotonic() - began:.2f} s"
    assert "event: event" in text
    other = _read_stream(changed, "event: changed", 5)
    assert "event: changed" in other and case_id not in other


def test_a_case_as_of_an_instant_before_its_resolution_and_before_it_existed(site: Site) -> None:
    case_id = site.complaint()
    site.command("complaint", "acknowledge", {"note": "called"}, case_id)
    time.sleep(0.05)
    middle = datetime.fromisoformat(site.history(case_id)["events"][-1]["occurred_at"]) + timedelta(milliseconds=1)
    time.sleep(0.05)
    site.command("complaint", "resolve", {"resolution": "sent again", "first_contact": False}, case_id)
    web = site.web()
    web.sign_in(site.person("supervisor"))
    now = eventually(lambda: _showing(web, f"/cases/{case_id}", "callback: callback"))  # the policy's callback
    assert now and "complaint.resolved" in now and "<td>resolved</td>" in now
    then = web.get(f"/cases/{case_id}?at={middle.isoformat().replace('+00:00', 'Z')}")
    assert then.status == 200
    assert "<td>acknowledged</td>" in then.body and "version 2, 2 of 3 events" in then.body
    assert "first_response" in then.body  # its limits as they stood then
    before = web.get(f"/cases/{case_id}?at=2020-01-01T00:00:00Z")
    assert before.status == 200 and "did not exist yet" in before.body
    assert web.get(f"/cases/{case_id}?at=yesterday").status == 400
    assert web.get("/cases/not-a-case").status == 400


def test_the_report_in_every_format_carries_the_same_figures_as_the_query(site: Site) -> None:
    site.complaint()
    period = datetime.now().strftime("%Y-%m")
    web = site.web()
    web.sign_in(site.person("manager"))
    page = web.get(f"/reports/{period}")
    assert page.status == 200 and f"Service quality report {period}" in page.body
    as_json = web.get(f"/reports/{period}.json")
    assert as_json.headers["content-type"].startswith("application/json")
    figures = json.loads(as_json.body)
    asked = site.ask("ticketing.v1.queries.report", {"period": period})
    assert figures["figures"] == asked["figures"] and figures["top"] == asked["top"]
    assert str(figures["figures"]["registered"]["complaint"]) in page.body
    as_csv = web.get(f"/reports/{period}.csv")
    assert as_csv.body.startswith("section,figure,value") and "attachment" in as_csv.headers["content-disposition"]
    assert "<script" not in web.get(f"/reports/{period}.html").body
    assert web.get("/reports/12-2026").status == 400
    assert web.get(f"/reports/{period}.exe").status == 404


def test_the_audit_page_gives_the_verdict_and_a_bundle_that_checks(site: Site, tmp_path: Path) -> None:
    case_id = site.complaint()
    web = site.web()
    web.sign_in(site.person("auditor"))
    verdict = web.get("/audit")
    assert verdict.status == 200 and "The history is intact" in verdict.body
    deadline = time.monotonic() + 15
    while (bundle := web.get(f"/audit/bundle?case_id={case_id}")).status != 200 and time.monotonic() < deadline:
        time.sleep(0.5)  # until a signed anchor covers the case
    assert bundle.status == 200, bundle.body
    path = tmp_path / "case.json"
    path.write_text(bundle.body)
    checked = site.cli("audit", "check", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert web.get("/audit/bundle?case_id=nope").status == 404


def test_what_a_customer_or_an_agent_typed_is_shown_as_text_never_run(site: Site) -> None:
    typed = "<script>alert(1)</script>"
    case_id = site.complaint(description=typed, product='"><img src=x onerror=alert(2)>')
    web = site.web()
    web.sign_in(site.person("supervisor"))
    page = web.get(f"/cases/{case_id}").body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and typed not in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page


def test_contracts_are_served_to_anyone_and_nothing_beside_them(site: Site) -> None:
    web = site.web()
    index = web.get("/contracts/")
    assert index.status == 200 and "asyncapi.json" in index.body and "queries/dashboard.json" in index.body
    served = web.get("/contracts/asyncapi.json")
    assert orjson.loads(served.body) == orjson.loads((Path(contracts.__file__).parent / "asyncapi.json").read_bytes())
    for path in ("/contracts/../pyproject.toml", "/contracts/%2e%2e/%2e%2e/pyproject.toml", "/contracts/catalog.py"):
        assert web.get(path).status == 404, path


def test_every_page_says_what_the_browser_may_run_and_frame(site: Site) -> None:
    web = site.web()
    web.sign_in(site.person("supervisor"))
    reply = web.get("/")
    assert "script-src 'self'" in reply.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["cache-control"] == "no-store"
    assert "<script>" not in reply.body  # no inline script: the policy would stop it


def _showing(web: Web, path: str, text: str) -> str | None:
    body = web.get(path).body
    return body if text in body else None


# -- the stream, read as a browser would --------------------------------------------


def _open_stream(port: int, cookies: dict[str, str]) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    connection.sendall(f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                       f"Accept: text/event-stream\r\n\r\n".encode())
    head = _read_stream(connection, ": live", 5)
    assert " 200 " in head.split("\r\n")[0], head
    return connection


def _read_stream(connection: socket.socket, wanted: str, timeout: float) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        connection.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        seen += chunk.decode(errors="replace")
    assert wanted in seen, f"{wanted!r} not in {seen[-500:]!r}"
    return seen
