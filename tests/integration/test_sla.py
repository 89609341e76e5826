"""The SLA engine over the real bus and store: limits start, pause, regrade
and stop with the case's events; the monitor raises each warning and breach
once as time (an injected clock) moves, records each breach on its case, and
answers what runs and what was breached."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, select

from contracts.alerts import ALERT_STREAM
from infra.bootstrap import Runtime, start
from infra.config_files import load_sla_policy
from infra.monitors.sla_monitor import SlaMonitor
from infra.settings import Settings
from infra.store.rebuild import rebuild_projection
from projections.sla import SlaLimits
from projections.sla_tables import sla_alert, sla_clock
from tests.conftest import Client, FakeClock, Received, stream_messages, wait_for

pytestmark = pytest.mark.anyio


class Alerts(Received):
    """What a plain nats-py subscriber of `ticketing.v1.alerts.>` receives."""

    def of(self, case_id: str, type_: str | None = None) -> list[tuple[str, str, int]]:
        return [(a["type"], a["metric"], a["cycle"]) for a in self.received
                if a["case_id"] == case_id and type_ in (None, a["type"])]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The SLA policy shipped with the product (other tests relax it)."""
    return settings.model_copy(update={"sla_policy": None})


@pytest.fixture
async def alerts(client: Client) -> AsyncIterator[Alerts]:
    seen = Alerts()
    sub = await seen.listen(client, "ticketing.v1.alerts.>")
    yield seen
    await sub.unsubscribe()


async def settle(runtime: Runtime) -> None:
    """Everything committed is projected and the monitor has looked at now."""
    await runtime.worker.sla.tick()


async def alerts_in_stream(runtime: Runtime) -> list[dict[str, Any]]:
    return await stream_messages(runtime.js, ALERT_STREAM)


async def case_events(client: Client, case_id: str) -> list[dict[str, Any]]:
    reply = await client.query("case.history", {"case_id": case_id})
    assert reply["ok"], reply
    return list(reply["events"])


async def breach_recorded(client: Client, case_id: str, metric: str) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]]:
        return [e for e in await case_events(client, case_id)
                if e["type"].endswith(".sla_breached") and e["data"]["metric"] == metric]
    return list(await wait_for(found))


async def test_a_limit_warns_then_breaches_once_and_the_case_records_it(
        runtime: Runtime, client: Client, clock: FakeClock, alerts: Alerts) -> None:
    registered_at = clock.now
    case_id = (await client.register_complaint(priority="high"))["aggregate_id"]
    assert (await client.command("complaint", "assign", {"assignee": "李娜"}, aggregate_id=case_id))["ok"]
    await settle(runtime)
    assert alerts.of(case_id) == [], "nothing is due at the start"

    clock.advance(minutes=22)  # the warning comes at 75 % of 30 min: 22.5 min
    await settle(runtime)
    assert alerts.of(case_id) == []
    clock.advance(minutes=1)
    await wait_for(lambda: alerts.of(case_id) == [("sla.warning", "first_response", 1)], timeout=3)
    clock.advance(minutes=8)  # 31 min: the first response is late
    await wait_for(lambda: ("sla.breached", "first_response", 1) in alerts.of(case_id), timeout=3)
    [breach] = [a for a in alerts.received if a["type"] == "sla.breached"]
    assert breach["deadline"] == (registered_at + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert (breach["tier"], breach["priority"], breach["assignee"]) == ("basic", "high", "李娜")
    assert breach["limit_seconds"] == 1800 and breach["elapsed_seconds"] == pytest.approx(31 * 60, abs=1)
    assert breach["reasons"] and "first_response" in breach["reasons"][0]

    [event] = await breach_recorded(client, case_id, "first_response")
    assert event["actor"] == {"id": "sla-monitor", "role": "system"}
    assert event["data"]["limit_seconds"] == 1800 and event["data"]["cycle"] == 1

    for _ in range(5):  # more ticks, and the acknowledgement that comes late: nothing again
        await settle(runtime)
    assert (await client.command("complaint", "acknowledge", {}, aggregate_id=case_id))["ok"]
    await settle(runtime)
    assert alerts.of(case_id) == [("sla.warning", "first_response", 1), ("sla.breached", "first_response", 1)]
    assert len(await alerts_in_stream(runtime)) == 2

    reply = await client.query("sla.breaches", {"metric": "first_response"})
    assert reply["ok"], reply
    [row] = [b for b in reply["breaches"] if b["case_id"] == case_id]
    assert (row["state"], row["recorded"]) == ("missed", True)
    assert row["elapsed_seconds"] == pytest.approx(31 * 60, abs=1)


async def test_limits_met_raise_nothing_and_the_rest_keep_running(
        runtime: Runtime, client: Client, clock: FakeClock, alerts: Alerts) -> None:
    case_id = (await client.register_complaint(priority="normal"))["aggregate_id"]
    steps = [("acknowledge", {}, 10),
             ("analyse", {"root_cause": "受潮 damp storage", "responsible_party": "company", "severity": "major",
                          "plan": "换货 replace"}, 60),
             ("resolve", {"resolution": "换货 replaced", "first_contact": False}, 120)]
    for command, data, minutes in steps:
        clock.advance(minutes=minutes)
        assert (await client.command("complaint", command, data, aggregate_id=case_id))["ok"]
    await settle(runtime)
    reply = await client.query("sla.open", {})
    mine = {(row["metric"], row["state"]) for row in reply["limits"] if row["case_id"] == case_id}
    assert mine == {("callback", "running"), ("loop", "running")}
    assert alerts.of(case_id) == []
    with runtime.readmodels.connect() as conn:
        states = dict(conn.execute(select(sla_clock.c.metric, sla_clock.c.state)
                                   .where(sla_clock.c.case_id == case_id)).all())
    assert states == {"first_response": "met", "plan": "met", "resolution": "met", "callback": "running",
                      "loop": "running"}


async def test_waiting_on_the_customer_pauses_and_a_priority_change_regrades(
        runtime: Runtime, client: Client, clock: FakeClock, alerts: Alerts) -> None:
    case_id = (await client.register_complaint(priority="normal"))["aggregate_id"]
    clock.advance(minutes=5)
    assert (await client.command("complaint", "acknowledge", {}, aggregate_id=case_id))["ok"]
    clock.advance(minutes=55)  # 1 h of the 4 h plan used
    assert (await client.command("complaint", "await_customer", {"reason": "待客户提供照片 photos"},
                                 aggregate_id=case_id))["ok"]
    clock.advance(days=2)
    await settle(runtime)
    assert alerts.of(case_id) == [], "no clock runs while the customer is awaited"
    paused = {row["metric"]: row for row in (await client.query("sla.open", {}))["limits"]
              if row["case_id"] == case_id}
    assert {row["state"] for row in paused.values()} == {"paused"}
    assert paused["plan"]["elapsed_seconds"] == pytest.approx(3600, abs=1)

    assert (await client.command("complaint", "resume", {}, aggregate_id=case_id))["ok"]
    resumed_at = clock.now
    await settle(runtime)
    running = {row["metric"]: row for row in (await client.query("sla.open", {}))["limits"]
               if row["case_id"] == case_id}
    assert running["plan"]["time_left_seconds"] == pytest.approx(3 * 3600, abs=1), "3 h of the plan left"

    clock.advance(hours=1)  # 2 h used; urgent allows 2 h for the plan: due now
    assert (await client.command("complaint", "reprioritise", {"priority": "urgent", "reason": "媒体关注 press"},
                                 aggregate_id=case_id, role="supervisor"))["ok"]
    await wait_for(lambda: ("sla.breached", "plan", 1) in alerts.of(case_id), timeout=3)
    [breach] = [a for a in alerts.received if a["type"] == "sla.breached" and a["case_id"] == case_id]
    assert breach["priority"] == "urgent"
    assert breach["deadline"] == (resumed_at + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_a_tier_change_regrades_the_customers_running_limits(
        runtime: Runtime, client: Client, clock: FakeClock, alerts: Alerts) -> None:
    case_id = (await client.register_complaint(priority="normal"))["aggregate_id"]
    clock.advance(minutes=20)
    assert (await client.command("customer", "change_tier", {"tier": "strategic", "reason": "签约 signed"},
                                 aggregate_id=await client.known_customer(), role="supervisor"))["ok"]
    # strategic: first response in 10 min, which passed 10 min ago
    await wait_for(lambda: ("sla.breached", "first_response", 1) in alerts.of(case_id), timeout=3)
    breach = next(a for a in alerts.received if a["type"] == "sla.breached" and a["case_id"] == case_id)
    assert breach["tier"] == "strategic" and breach["limit_seconds"] == 600


async def test_reopening_starts_a_new_cycle_with_its_own_alerts(
        runtime: Runtime, client: Client, clock: FakeClock, alerts: Alerts) -> None:
    case_id = (await client.register_complaint(priority="high"))["aggregate_id"]
    assert (await client.command("complaint", "resolve", {"resolution": "解释 explained", "first_contact": True},
                                 aggregate_id=case_id))["ok"]
    clock.advance(hours=1)
    assert (await client.command("complaint", "reopen", {"reason": "问题复现 it came back"},
                                 aggregate_id=case_id))["ok"]
    clock.advance(hours=5)  # the second cycle's plan (4 h) is late
    await wait_for(lambda: ("sla.breached", "plan", 2) in alerts.of(case_id), timeout=3)
    assert ("sla.breached", "plan", 1) not in alerts.of(case_id), "the first cycle's plan was met"
    await breach_recorded(client, case_id, "plan")


async def test_repair_jobs_count_their_first_response_to_the_dispatch(
        runtime: Runtime, client: Client, clock: FakeClock, alerts: Alerts) -> None:
    reply = await client.command("repair_job", "register", {
        "customer_id": await client.known_customer(), "kind": "repair", "product_model": "XK-200 投料机",
        "fault_description": "电机不转 motor dead", "priority": "normal", "in_warranty": True,
        "site_address": "江苏省南京市江宁区 1 号"})
    job_id = reply["aggregate_id"]
    clock.advance(minutes=20)
    assert (await client.command("repair_job", "dispatch", {
        "technician": "张工", "scheduled_at": (clock.now + timedelta(hours=3)).isoformat()},
        aggregate_id=job_id, role="supervisor"))["ok"]
    clock.advance(hours=30)  # a repair job's plan (diagnosis) is due within 24 h
    await wait_for(lambda: ("sla.breached", "plan", 1) in alerts.of(job_id), timeout=3)
    assert [a for a in alerts.of(job_id) if a[1] == "first_response"] == [], "dispatched in time"
    breach = next(a for a in alerts.received if a["case_id"] == job_id and a["type"] == "sla.breached")
    assert breach["case_type"] == "repair_job" and breach["assignee"] == "张工"
    await breach_recorded(client, job_id, "plan")


async def test_queries_put_the_most_urgent_first_and_filter(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    urgent = (await client.register_complaint(priority="urgent"))["aggregate_id"]
    normal = (await client.register_complaint(priority="normal"))["aggregate_id"]
    assert (await client.command("complaint", "assign", {"assignee": "王芳"}, aggregate_id=normal))["ok"]
    await settle(runtime)
    reply = await client.query("sla.open", {"metric": "first_response"})
    assert [row["case_id"] for row in reply["limits"]] == [urgent, normal]
    assert [row["time_left_seconds"] for row in reply["limits"]] == [15 * 60, 30 * 60]
    reply = await client.query("sla.open", {"assignee": "王芳"})
    assert {row["case_id"] for row in reply["limits"]} == {normal}
    assert (await client.query("sla.open", {"tier": "vip"}))["limits"] == []

    start_ = clock.now
    clock.advance(hours=2)
    await settle(runtime)
    reply = await client.query("sla.breaches", {"since": start_.isoformat(),
                                                "until": (start_ + timedelta(minutes=20)).isoformat()})
    assert [(b["case_id"], b["metric"], b["state"]) for b in reply["breaches"]] == [
        (urgent, "first_response", "running")]
    reply = await client.query("sla.breaches", {"metric": "first_response"})
    assert [b["case_id"] for b in reply["breaches"]] == [normal, urgent], "the latest first"

    bad = await client.query("sla.breaches", {"metric": "lunch", "since": "yesterday"})
    assert bad["error"]["code"] == "validation_error"
    assert {d["field"] for d in bad["error"]["details"]} == {"metric", "since"}


async def test_a_rebuild_gives_the_same_limits_and_raises_nothing_again(
        runtime: Runtime, client: Client, clock: FakeClock, alerts: Alerts) -> None:
    late = (await client.register_complaint(priority="high"))["aggregate_id"]
    waiting = (await client.register_complaint(priority="low"))["aggregate_id"]
    assert (await client.command("complaint", "await_customer", {"reason": "等回复 waiting"},
                                 aggregate_id=waiting))["ok"]
    clock.advance(minutes=40)
    await wait_for(lambda: ("sla.breached", "first_response", 1) in alerts.of(late), timeout=3)
    await breach_recorded(client, late, "first_response")
    await settle(runtime)

    def snapshot() -> list[tuple[Any, ...]]:
        with runtime.readmodels.connect() as conn:
            return [tuple(row) for row in conn.execute(select(sla_clock).order_by(sla_clock.c.clock_id))]

    before, raised = snapshot(), len(await alerts_in_stream(runtime))
    policy = load_sla_policy(runtime.settings)
    await asyncio.to_thread(rebuild_projection, runtime.store, runtime.readmodels, SlaLimits(policy))
    assert snapshot() == before
    for _ in range(3):
        await settle(runtime)
    assert len(await alerts_in_stream(runtime)) == raised

    # Even with the ledger lost too, the breach on the case keeps it from coming again.
    with runtime.readmodels.begin() as conn:
        conn.execute(delete(sla_alert).where(sla_alert.c.alert == "breached"))
    await settle(runtime)
    assert [a for a in alerts.of(late) if a[0] == "sla.breached"] == [("sla.breached", "first_response", 1)]


async def test_a_second_monitor_or_a_crash_before_the_ledger_raises_no_second_copy(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    case_id = (await client.register_complaint(priority="high"))["aggregate_id"]
    await settle(runtime)
    runtime.worker.sla.stop()  # this test drives the ticks itself
    other = SlaMonitor(runtime.readmodels, load_sla_policy(runtime.settings), runtime.nc, runtime.js, clock,
                       store_position=runtime.store.max_position, signer=runtime.signer)
    clock.advance(minutes=31)
    await asyncio.gather(runtime.worker.sla.tick(), other.tick())
    # A monitor that died after publishing but before noting it in the ledger
    # publishes the same alert again when it comes back:
    with runtime.readmodels.begin() as conn:
        conn.execute(delete(sla_alert))
    await other.tick()
    mine = [a for a in await alerts_in_stream(runtime) if a["case_id"] == case_id]
    assert [(a["type"], a["metric"]) for a in mine] == [("sla.breached", "first_response")]


async def test_a_deadline_that_passes_while_the_monitor_is_down_is_raised_once_on_restart(
        settings: Settings, clock: FakeClock, client: Client, alerts: Alerts) -> None:
    first = await start(settings, clock)
    case_id = (await client.register_complaint(priority="high"))["aggregate_id"]
    await first.worker.sla.tick()
    await first.stop()
    clock.advance(minutes=45)
    second = await start(settings, clock)
    try:
        await wait_for(lambda: ("sla.breached", "first_response", 1) in alerts.of(case_id), timeout=5)
        await breach_recorded(client, case_id, "first_response")
        for _ in range(3):
            await second.worker.sla.tick()
    finally:
        await second.stop()
    third = await start(settings, clock)
    try:
        for _ in range(3):
            await third.worker.sla.tick()
        js_copies = [a for a in await alerts_in_stream(third) if a["case_id"] == case_id]
    finally:
        await third.stop()
    assert alerts.of(case_id) == [("sla.breached", "first_response", 1)], "no warning once the deadline passed"
    assert len(js_copies) == 1


OFFICE_POLICY = """
[defaults]
calendar = "office"

[[limit]]
first_response = "2h"

[calendar.office]
timezone = "Asia/Shanghai"
hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }
holidays = ["2027-01-01"]
"""


@pytest.fixture
def office_settings(settings: Settings, tmp_path: Path) -> Settings:
    policy = tmp_path / "office.toml"
    policy.write_text(OFFICE_POLICY)
    return settings.model_copy(update={"sla_policy": policy})


async def test_business_hours_skip_the_weekend_and_the_holiday(
        office_settings: Settings, clock: FakeClock, client: Client, alerts: Alerts) -> None:
    clock.now = datetime(2026, 12, 31, 9, 0, tzinfo=UTC)  # Thursday 17:00 in Shanghai; Friday is a holiday
    runtime = await start(office_settings, clock)
    try:
        case_id = (await client.register_complaint(priority="normal"))["aggregate_id"]
        clock.now = datetime(2027, 1, 4, 0, 59, tzinfo=UTC)  # Monday 08:59 in Shanghai: 1 h counted
        for _ in range(2):
            await runtime.worker.sla.tick()
        assert alerts.of(case_id) == [], "nothing counts over the holiday and the weekend"
        clock.now = datetime(2027, 1, 4, 1, 31, tzinfo=UTC)  # 09:31: 1 h 31 min counted of 2 h
        await wait_for(lambda: alerts.of(case_id) == [("sla.warning", "first_response", 1)], timeout=3)
        clock.now = datetime(2027, 1, 4, 2, 0, tzinfo=UTC)  # Monday 10:00
        await wait_for(lambda: ("sla.breached", "first_response", 1) in alerts.of(case_id), timeout=3)
        breach = next(a for a in alerts.received if a["type"] == "sla.breached")
        assert breach["deadline"] == "2027-01-04T02:00:00.000000Z" and breach["calendar"] == "office"
    finally:
        await runtime.stop()


async def test_a_changed_policy_applies_to_running_limits_at_the_next_start(
        settings: Settings, clock: FakeClock, client: Client, tmp_path: Path) -> None:
    first = await start(settings, clock)
    try:
        case_id = (await client.register_complaint(priority="normal"))["aggregate_id"]
        await first.worker.sla.tick()
    finally:
        await first.stop()
    tighter = tmp_path / "tighter.toml"
    tighter.write_text('[[limit]]\nfirst_response = "5m"\nplan = "1h"\n')
    second = await start(settings.model_copy(update={"sla_policy": tighter}), clock)
    try:
        reply = await client.query("sla.open", {})
        mine = {row["metric"]: row["time_left_seconds"] for row in reply["limits"] if row["case_id"] == case_id}
        assert mine == {"first_response": 300, "plan": 3600}, "resolution and loop are no longer limited"
    finally:
        await second.stop()


async def test_the_cli_shows_the_same_as_the_queries(
        runtime: Runtime, client: Client, clock: FakeClock, settings: Settings) -> None:
    late = (await client.register_complaint(priority="urgent"))["aggregate_id"]
    clock.advance(minutes=20)
    fresh = (await client.register_complaint(priority="normal"))["aggregate_id"]
    await settle(runtime)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env |= {"TICKETING_DATA_DIR": str(settings.data_dir), "COLUMNS": "250"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(Path(sys.executable).parent / "ticketing"), "sla", *args], env=env,
                              capture_output=True, text=True, timeout=30, check=False)

    table = await asyncio.to_thread(run, "--metric", "first_response")
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if late in line or fresh in line]
    assert [late in lines[0], fresh in lines[1]] == [True, True], "the most urgent first"
    assert "breached" in lines[0] and "-5m" in lines[0] and "30m" in lines[1]

    breaches = await asyncio.to_thread(run, "--breaches", "--json")
    reply = orjson.loads(breaches.stdout)
    assert reply == {**await client.query("sla.breaches", {}), "at": reply["at"]}
    assert [b["case_id"] for b in reply["breaches"]] == [late]
    bad = await asyncio.to_thread(run, "--breaches", "--since", "yesterday")
    assert bad.returncode == 1 and "validation_error" in bad.stdout


async def test_a_start_under_the_same_policy_recounts_nothing(runtime: Runtime, client: Client,
                                                             settings: Settings, tmp_path: Path) -> None:
    """A restart does not recount every running limit before moving: only a
    changed policy file makes it count them again, once."""
    for _ in range(3):
        await client.register_complaint(priority="normal")
    await settle(runtime)
    policy = load_sla_policy(settings)
    with runtime.readmodels.begin() as conn:
        assert SlaLimits(policy).retarget(conn) == 0, "counted under this policy already"
    tighter = tmp_path / "tighter.toml"
    tighter.write_text('[[limit]]\nfirst_response = "5m"\n')
    other = load_sla_policy(settings.model_copy(update={"sla_policy": tighter}))
    with runtime.readmodels.begin() as conn:
        assert SlaLimits(other).retarget(conn) > 0
        assert SlaLimits(other).retarget(conn) == 0, "once"


async def test_breaches_due_while_the_command_side_is_away_are_said_once_and_recorded_after(
        runtime: Runtime, client: Client, clock: FakeClock, alerts: Alerts,
        caplog: pytest.LogCaptureFixture) -> None:
    """Many limits fall due at once while nobody answers commands: each alert
    goes out once, the outage is logged once (not per breach and tick), and
    every breach is on its case once the command side is back."""
    cases = [(await client.register_complaint(priority="high"))["aggregate_id"] for _ in range(6)]
    await settle(runtime)
    assert runtime.responders is not None
    await runtime.responders.stop(5)
    try:
        clock.advance(minutes=31)
        for _ in range(4):
            await runtime.worker.sla.tick()
        await wait_for(lambda: all(("sla.breached", "first_response", 1) in alerts.of(c) for c in cases), timeout=5)
        said = [r for r in caplog.records if "recording breaches" in r.getMessage()]
        assert len(said) == 1, [r.getMessage() for r in said]
    finally:
        await runtime.responders.start(runtime.broker.connection)
    await runtime.worker.sla.tick()
    for case_id in cases:
        assert len(await breach_recorded(client, case_id, "first_response")) == 1
    assert [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()] == [
        "SLA monitor: the command side answers again; recording breaches"]
    assert sorted(a["case_id"] for a in alerts.received if a["type"] == "sla.breached") == sorted(cases)


async def test_open_limits_come_in_pages_that_add_up_to_the_whole_list(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    """Pages of two, through limits with the same deadline (registered at one
    instant) and paused ones (no deadline, last): each limit once, in the
    order of the whole list; a cursor this list did not give is refused."""
    for priority in ("normal", "normal", "normal", "urgent", "low"):
        await client.register_complaint(priority=priority)
    waiting = (await client.register_complaint(priority="normal"))["aggregate_id"]
    assert (await client.command("complaint", "acknowledge", {}, aggregate_id=waiting))["ok"]
    assert (await client.command("complaint", "await_customer", {"reason": "等回复 waiting"},
                                 aggregate_id=waiting))["ok"]
    await settle(runtime)
    whole = (await client.query("sla.open", {}))
    assert whole["next"] is None
    keys = [(row["case_id"], row["metric"]) for row in whole["limits"]]
    assert any(row["state"] == "paused" for row in whole["limits"]) and len(keys) >= 7
    assert [row["state"] for row in whole["limits"]][-1] == "paused", "paused limits last"
    paged, after, pages = [], None, 0
    while True:
        reply = await client.query("sla.open", {"limit": 2} | ({"after": after} if after else {}))
        assert reply["ok"] and len(reply["limits"]) <= 2
        paged += [(row["case_id"], row["metric"]) for row in reply["limits"]]
        pages += 1
        after = reply["next"]
        if after is None:
            break
    assert paged == keys and pages == (len(keys) + 1) // 2
    for bad in ("nonsense", "2026-13-01T00:00:00|x", "2026-11-01T00:00:00|x"):
        refused = await client.query("sla.open", {"after": bad})
        assert refused["error"]["code"] == "validation_error" and refused["error"]["details"][0]["field"] == "after"


async def test_breaches_come_in_pages_that_add_up_to_the_whole_list(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    for i, priority in enumerate(("normal", "normal", "urgent", "low", "normal", "normal")):
        await client.register_complaint(priority=priority)
        clock.advance(minutes=i % 2)  # pairs registered at one instant: breaches at one instant
    clock.advance(days=3)
    await settle(runtime)
    whole = await client.query("sla.breaches", {})
    assert whole["next"] is None
    keys = [(row["case_id"], row["metric"], row["cycle"]) for row in whole["breaches"]]
    assert len(keys) >= 5 and len(set(keys)) == len(keys)
    paged, after = [], None
    while True:
        reply = await client.query("sla.breaches", {"limit": 2} | ({"after": after} if after else {}))
        assert reply["ok"] and len(reply["breaches"]) <= 2
        paged += [(row["case_id"], row["metric"], row["cycle"]) for row in reply["breaches"]]
        after = reply["next"]
        if after is None:
            break
    assert paged == keys
    for bad in ("nonsense", "|x", "2026-11-01T00:00:00|x"):
        refused = await client.query("sla.breaches", {"after": bad})
        assert refused["error"]["code"] == "validation_error" and refused["error"]["details"][0]["field"] == "after"
