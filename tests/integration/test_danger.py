"""The dangerous-customer list over the real bus: each rule puts a customer
on the list, a higher level raises them, time or a supervisor takes them off,
and each of these is announced once to a plain nats-py subscriber."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from contracts.alerts import ALERT_STREAM
from infra.bootstrap import Runtime
from infra.config_files import load_danger_rules
from infra.monitors.danger_monitor import DangerMonitor
from infra.monitors.policy_runner import CONCURRENCY
from infra.settings import Settings
from infra.store.rebuild import rebuild_projection
from projections.danger import DangerousCustomers
from projections.danger_list import danger_state
from tests.conftest import (
    Client,
    FakeClock,
    Received,
    complaint_data,
    customer_data,
    refused_by_nats,
    stream_messages,
    wait_for,
)

pytestmark = pytest.mark.anyio


class Announcements(Received):
    """What a plain nats-py subscriber of `ticketing.v1.alerts.customer.>` receives."""

    def of(self, customer_id: str) -> list[tuple[str, str | None]]:
        return [(a["type"], a["level"]) for a in self.received if a["customer_id"] == customer_id]


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """Limits for VIP customers only (basic customers' cases never breach here)."""
    policy = tmp_path / "vip_only.toml"
    policy.write_text('[[limit]]\ntier = "vip"\nfirst_response = "15m"\n')
    return settings.model_copy(update={"sla_policy": policy})


@pytest.fixture
async def announced(client: Client) -> AsyncIterator[Announcements]:
    seen = Announcements()
    sub = await seen.listen(client, "ticketing.v1.alerts.customer.>")
    yield seen
    await sub.unsubscribe()


async def customer(client: Client, tier: str = "basic") -> str:
    reply = await client.command("customer", "register", customer_data(tier=tier))
    assert reply["ok"], reply
    return str(reply["aggregate_id"])


async def complaint(client: Client, customer_id: str, **overrides: Any) -> str:
    reply = await client.command("complaint", "register", complaint_data(customer_id=customer_id, **overrides))
    assert reply["ok"], reply
    return str(reply["aggregate_id"])


async def look(runtime: Runtime) -> None:
    """The monitor applies the rules now (as its timer would)."""
    assert runtime.worker is not None
    await runtime.worker.danger.tick()


async def dangerous(client: Client, customer_id: str) -> dict[str, Any] | None:
    reply = await client.query("customers.dangerous", {})
    assert reply["ok"], reply
    return next((c for c in reply["customers"] if c["customer_id"] == customer_id), None)


async def stream_copies(runtime: Runtime, customer_id: str) -> list[tuple[str, str | None]]:
    return [(alert["type"], alert["level"]) for alert in await stream_messages(runtime.js, ALERT_STREAM)
            if alert.get("customer_id") == customer_id]


async def test_repeated_complaints_enter_rise_and_age_out(
        runtime: Runtime, client: Client, clock: FakeClock, announced: Announcements) -> None:
    who = await customer(client)
    cases = []
    for _ in range(2):
        cases.append(await complaint(client, who))
        clock.advance(days=5)
    await look(runtime)
    assert announced.of(who) == [] and await dangerous(client, who) is None
    cases.append(await complaint(client, who))
    entered = clock.now
    await look(runtime)
    await wait_for(lambda: announced.of(who) == [("customer.dangerous", "watch")], timeout=3)
    listed = await dangerous(client, who)
    assert listed is not None and (listed["level"], listed["danger_type"]) == ("watch", "churn_risk")
    assert listed["reasons"][0]["case_ids"] == cases and "3 complaints in 30 days" in listed["reasons"][0]["text"]
    assert listed["entered_at"] == entered.strftime("%Y-%m-%dT%H:%M:%S.%fZ") and listed["counter_measure"]

    for _ in range(2):  # five in the month: high
        clock.advance(days=1)
        await complaint(client, who)
    await look(runtime)
    await wait_for(lambda: announced.of(who)[-1:] == [("customer.dangerous", "high")], timeout=3)
    rising = [a for a in announced.received if a["customer_id"] == who][-1]
    assert rising["previous_level"] == "watch" and rising["entered_at"] == listed["entered_at"]

    clock.advance(days=40)  # every complaint is older than 30 days now
    await look(runtime)
    await wait_for(lambda: announced.of(who)[-1:] == [("customer.cleared", None)], timeout=3)
    assert await dangerous(client, who) is None
    for _ in range(3):
        await look(runtime)
    expected = [("customer.dangerous", "watch"), ("customer.dangerous", "high"), ("customer.cleared", None)]
    assert announced.of(who) == expected
    assert await stream_copies(runtime, who) == expected


async def test_a_burst_entering_at_once_is_announced_once_each_and_listed(
        runtime: Runtime, client: Client, announced: Announcements) -> None:
    """More customers than alerts in flight (CONCURRENCY) enter in the same
    look: each is announced once, noted, and listed; the next look repeats
    nobody."""
    many = [await customer(client) for _ in range(CONCURRENCY + 8)]
    for who in many:
        for _ in range(3):
            await complaint(client, who)
    await look(runtime)
    await wait_for(lambda: all(announced.of(who) for who in many), timeout=10)
    await look(runtime)
    await asyncio.sleep(0.3)
    assert all(announced.of(who) == [("customer.dangerous", "watch")] for who in many)
    listed = (await client.query("customers.dangerous", {"limit": 500}))
    assert {c["customer_id"] for c in listed["customers"]} >= set(many)
    with runtime.readmodels.connect() as conn:
        noted = {row.customer_id for row in conn.execute(danger_state.select())}
    assert noted >= set(many)


async def test_marks_escalations_compensation_and_unfounded_complaints(
        runtime: Runtime, client: Client, clock: FakeClock, announced: Announcements) -> None:
    extortionist = await customer(client)
    magnet = await customer(client)
    payer = await customer(client)
    withdrawer = await customer(client)
    case = await complaint(client, extortionist)
    assert (await client.command("customer", "flag", {"mark": "extortion", "reason": "要求赔偿十万否则曝光",
                                                      "case_id": case}, aggregate_id=extortionist,
                                 role="supervisor"))["ok"]
    for _ in range(2):
        escalated = await complaint(client, magnet)
        assert (await client.command("complaint", "escalate", {"reason": "不满意", "to": "manager"},
                                     aggregate_id=escalated, role="supervisor"))["ok"]
    paid = await complaint(client, payer)
    assert (await client.command("complaint", "resolve", {"resolution": "赔偿", "first_contact": False,
                                                          "compensation": "2500.00"},
                                 aggregate_id=paid, role="supervisor"))["ok"]
    for _ in range(3):
        withdrawn = await complaint(client, withdrawer)
        assert (await client.command("complaint", "withdraw", {"reason": "客户撤回"}, aggregate_id=withdrawn))["ok"]
    await look(runtime)

    async def listed() -> dict[str, tuple[str, str]]:
        reply = await client.query("customers.dangerous", {})
        return {c["customer_id"]: (c["danger_type"], c["level"]) for c in reply["customers"]}
    async def all_listed() -> dict[str, tuple[str, str]]:
        found = await listed()
        return found if {extortionist, magnet, payer, withdrawer} <= found.keys() else {}
    found = await wait_for(all_listed, timeout=5)
    assert found[extortionist] == ("extortion", "critical")
    assert found[magnet] == ("escalation_magnet", "high")
    assert found[payer] == ("escalation_magnet", "watch")
    # three complaints, all withdrawn: a churn risk and a possible malicious complainant, both to watch
    assert (await dangerous(client, withdrawer))["types"] == {"churn_risk": "watch", "malicious_complainant": "watch"}
    ordered = [c["customer_id"] for c in (await client.query("customers.dangerous", {}))["customers"]]
    assert ordered.index(extortionist) < ordered.index(magnet) < ordered.index(payer)
    only = await client.query("customers.dangerous", {"level": "high"})
    assert {c["customer_id"] for c in only["customers"]} >= {extortionist, magnet}
    assert payer not in {c["customer_id"] for c in only["customers"]}
    paged, after = [], None
    while True:  # pages of one follow the list's order and end
        page = await client.query("customers.dangerous", {"limit": 1} | ({"after": after} if after else {}))
        assert len(page["customers"]) <= 1 and page["total"] == len(ordered)
        paged += [c["customer_id"] for c in page["customers"]]
        if (after := page["next"]) is None:
            break
    assert paged == ordered
    bad = await client.query("customers.dangerous", {"after": "not a cursor"})
    assert bad["error"]["code"] == "validation_error" and bad["error"]["details"][0]["field"] == "after"

    # Past the longest window the escalations no longer count, the mark still
    # does (a look reads only what the window holds, and the marks).
    clock.advance(days=load_danger_rules(runtime.settings).longest_window.days + 1)
    for who in (extortionist, magnet):
        await complaint(client, who)
    await look(runtime)
    await wait_for(lambda: announced.of(magnet)[-1:] == [("customer.cleared", None)], timeout=3)
    assert (await dangerous(client, extortionist))["level"] == "critical"

    assert (await client.command("customer", "unflag", {"mark": "extortion", "reason": "误会已澄清"},
                                 aggregate_id=extortionist, role="supervisor"))["ok"]
    await look(runtime)
    await wait_for(lambda: announced.of(extortionist) == [("customer.dangerous", "critical"),
                                                         ("customer.cleared", None)], timeout=3)


async def test_a_supervisor_clears_a_customer_and_new_reasons_count_again(
        runtime: Runtime, client: Client, clock: FakeClock, announced: Announcements) -> None:
    who = await customer(client)
    for _ in range(3):
        await complaint(client, who)
    await look(runtime)
    await wait_for(lambda: announced.of(who) == [("customer.dangerous", "watch")], timeout=3)
    refused = await client.command("customer", "clear_danger", {"reason": "已上门道歉"}, aggregate_id=who)
    assert refused_by_nats(refused), "an agent may not"
    assert (await client.command("customer", "clear_danger", {"reason": "已上门道歉 apologised in person"},
                                 aggregate_id=who, role="supervisor"))["ok"]
    await look(runtime)
    await wait_for(lambda: announced.of(who)[-1:] == [("customer.cleared", None)], timeout=3)
    history = await client.query("case.history", {"case_id": who})
    assert history["state"]["danger_clearances"][0]["reason"] == "已上门道歉 apologised in person"

    clock.advance(hours=1)
    for _ in range(3):
        await complaint(client, who)
    await look(runtime)
    await wait_for(lambda: announced.of(who)[-1:] == [("customer.dangerous", "watch")], timeout=3)
    assert len(announced.of(who)) == 3


async def test_unsatisfied_callbacks_and_a_vip_left_waiting(
        runtime: Runtime, client: Client, clock: FakeClock, announced: Announcements, settings: Settings) -> None:
    unhappy = await customer(client)
    for _ in range(2):
        case = await complaint(client, unhappy)
        assert (await client.command("complaint", "resolve", {"resolution": "r", "first_contact": True},
                                     aggregate_id=case))["ok"]
        assert (await client.command("complaint", "revisit", {"satisfied": False, "score": 30},
                                     aggregate_id=case))["ok"]
    await look(runtime)
    await wait_for(lambda: announced.of(unhappy) == [("customer.dangerous", "high")], timeout=5)
    reasons = (await dangerous(client, unhappy))["reasons"]
    assert [r["rule"] for r in reasons] == ["unsatisfied callbacks"]

    vip = await customer(client, tier="vip")
    waiting = await complaint(client, vip)
    clock.advance(minutes=20)  # past the VIP's 15 minutes: the SLA monitor records the breach on the case
    await runtime.worker.sla.tick()

    async def breached() -> bool:
        history = await client.query("case.history", {"case_id": waiting})
        return any(e["type"] == "complaint.sla_breached" for e in history["events"])
    await wait_for(breached, timeout=5)
    await look(runtime)
    await wait_for(lambda: announced.of(vip) == [("customer.dangerous", "high")], timeout=5)
    listed = await dangerous(client, vip)
    assert listed["reasons"][0]["rule"] == "VIP left waiting" and listed["reasons"][0]["case_ids"] == [waiting]


async def test_a_rebuild_announces_nobody_again_and_the_cli_shows_the_list(
        runtime: Runtime, client: Client, clock: FakeClock, announced: Announcements, settings: Settings) -> None:
    who = await customer(client)
    for _ in range(3):
        await complaint(client, who)
    await look(runtime)
    await wait_for(lambda: announced.of(who) == [("customer.dangerous", "watch")], timeout=3)
    # A monitor that died after publishing, before noting it, publishes the
    # same alert again when it comes back: the stream drops the copy.
    with runtime.readmodels.begin() as conn:
        conn.execute(delete(danger_state))
    restarted = DangerMonitor(runtime.readmodels, load_danger_rules(settings), runtime.js, clock,
                              store_position=runtime.store.max_position, signer=runtime.signer)
    await restarted.tick()
    await wait_for(lambda: len(announced.of(who)) == 2, timeout=3)  # a core subscriber sees the copy...
    assert await stream_copies(runtime, who) == [("customer.dangerous", "watch")]  # ...the stream does not

    before = await client.query("customers.dangerous", {})
    await asyncio.to_thread(rebuild_projection, runtime.store, runtime.readmodels, DangerousCustomers())
    for _ in range(3):
        await look(runtime)
    assert announced.of(who) == [("customer.dangerous", "watch")] * 2, "nothing after the copy"
    assert await stream_copies(runtime, who) == [("customer.dangerous", "watch")]
    assert await client.query("customers.dangerous", {}) == before | {"at": before["at"]}

    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env |= {"TICKETING_DATA_DIR": str(settings.data_dir), "COLUMNS": "250"}
    shown = await asyncio.to_thread(subprocess.run, [str(Path(sys.executable).parent / "ticketing"), "customers",
                                                     "dangerous"], env=env, capture_output=True, text=True,
                                    timeout=30, check=False)
    assert shown.returncode == 0, shown.stderr
    assert who in shown.stdout and "churn_risk" in shown.stdout and "3 complaints in 30 days" in shown.stdout


async def test_a_look_assesses_only_who_may_have_changed(
        runtime: Runtime, client: Client, clock: FakeClock, announced: Announcements) -> None:
    """Each second's look costs what changed, not the size of the list: a
    listed customer with nothing new is looked at again only when one of
    their counted facts ages out of its window."""
    assert runtime.worker is not None
    monitor = runtime.worker.danger
    who = await customer(client)
    first = clock.now
    for _ in range(3):
        await complaint(client, who)
        clock.advance(hours=1)
    await look(runtime)
    await wait_for(lambda: announced.of(who) == [("customer.dangerous", "watch")], timeout=3)

    def looked_at(at: Any) -> set[str]:
        return set(monitor.read(lambda conn: monitor.assess_changed(conn, at, {who})))
    assert looked_at(clock.now) == set(), "nothing new, nothing ageing: nobody assessed"
    assert looked_at(first + timedelta(days=30) - timedelta(seconds=1)) == set()
    assert looked_at(first + timedelta(days=30, seconds=1)) == {who}, "the first complaint ages out then"
    await complaint(client, who)
    await look(runtime)
    assert looked_at(clock.now) == set(), "the new complaint was looked at once, by the look above"


async def test_the_facts_kept_from_look_to_look_list_what_a_fresh_read_lists(
        runtime: Runtime, client: Client, clock: FakeClock, announced: Announcements) -> None:
    """The monitor keeps listed customers' facts between looks and reads only
    the new ones; the list it writes is what a monitor reading every fact
    afresh assesses, as facts are added and as they age out."""
    assert runtime.worker is not None
    monitor = runtime.worker.danger
    who = await customer(client)

    async def agrees() -> None:
        fresh = DangerMonitor(runtime.readmodels, monitor.rules, runtime.js, clock,
                              store_position=runtime.store.max_position, signer=runtime.signer)
        assessed, _ = fresh.read(lambda conn: fresh.assess_changed(conn, clock.now, set()))[who]
        listed = await dangerous(client, who)
        assert listed is not None and assessed is not None
        assert [(r["rule"], r["text"], r["case_count"]) for r in listed["reasons"]] == [
            (r.rule, r.text, len(r.case_ids)) for r in assessed.reasons]
    for _ in range(2):  # days 0 and 9: not listed, so nothing kept
        await complaint(client, who)
        clock.advance(days=9)
    await look(runtime)
    assert who not in monitor._facts
    await complaint(client, who)  # day 18: read whole, the new fact among the others
    await look(runtime)
    await wait_for(lambda: announced.of(who) == [("customer.dangerous", "watch")], timeout=3)
    await agrees()
    clock.advance(days=9)
    await complaint(client, who)  # day 27: one new fact, beside the three kept
    await look(runtime)
    await agrees()
    clock.advance(days=13)  # day 40: those of days 0 and 9 have aged out
    await complaint(client, who)
    await look(runtime)
    await agrees()
