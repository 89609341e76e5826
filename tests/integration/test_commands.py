"""Complaint commands over the real bus: a plain nats-py client, a real
nats-server, a real SQLite file (and PostgreSQL in CI)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import nats
import orjson
import pytest

from contracts.catalog import EVENTS
from contracts.envelope import EventEnvelope
from infra.bootstrap import Runtime, start
from infra.settings import Settings
from tests.conftest import Client, FakeClock, complaint_data, refused_by_nats, wait_for

pytestmark = pytest.mark.anyio


def summary(runtime: Runtime, case_id: str) -> dict[str, Any] | None:
    from sqlalchemy import select

    from projections.case_summary import case_summary

    with runtime.readmodels.connect() as conn:
        row = conn.execute(select(case_summary).where(case_summary.c.case_id == case_id)).mappings().first()
    return dict(row) if row else None


def store_size(runtime: Runtime) -> int:
    """Events recorded on cases (the test client's customer's own aside)."""
    return sum("Customer" not in n.topic for n in runtime.store.notifications(0, 100_000))


async def test_command_is_answered_published_and_projected(runtime: Runtime, client: Client) -> None:
    seen: list[Any] = []

    async def collect(msg: Any) -> None:
        seen.append(msg)

    await client.known_customer()
    await client.nc.subscribe("ticketing.v1.events.complaint.>", cb=collect)
    reply = await client.register_complaint(priority="urgent")
    assert reply["version"] == 1 and len(reply["events"]) == 1
    case_id = reply["aggregate_id"]

    await wait_for(lambda: len(seen) == 1)
    msg = seen[0]
    assert msg.subject == "ticketing.v1.events.complaint.registered"
    assert msg.headers["Nats-Msg-Id"] == reply["events"][0]
    event = orjson.loads(msg.data)
    EventEnvelope.model_validate(event)
    EVENTS["complaint"]["registered"].model_validate(event["data"])
    assert event["id"] == reply["events"][0] and event["aggregate_id"] == case_id
    assert event["aggregate_version"] == 1 and event["position"] == 2, "after the customer's registration"
    assert event["occurred_at"] == "2026-11-25T01:00:00.123456Z"
    assert event["actor"] == {"id": "agent-1", "role": "agent"}
    assert event["data"]["description"] == complaint_data()["description"]

    row = await wait_for(lambda: summary(runtime, case_id))
    assert row["status"] == "registered" and row["priority"] == "urgent" and row["kind"] == "complaint"
    assert row["version"] == 1


async def test_the_closed_loop_over_the_bus(runtime: Runtime, client: Client, clock: FakeClock) -> None:
    case_id = (await client.register_complaint())["aggregate_id"]
    steps = [
        ("acknowledge", {"note": "已致电客户"}),
        ("assign", {"assignee": "agent-2", "department": "production"}),
        ("analyse", {"root_cause": "受潮", "responsible_party": "company", "severity": "major",
                     "plan": "换货并检查仓储"}),
        ("resolve", {"resolution": "exchanged 20 bags", "first_contact": False, "compensation": "120.50"}),
        ("revisit", {"satisfied": True, "score": 92, "comment": "满意"}),
        ("close", {}),
    ]
    for version, (command, data) in enumerate(steps, start=2):
        clock.advance(minutes=20)
        reply = await client.command("complaint", command, data, aggregate_id=case_id,
                                     expected_version=version - 1)
        assert reply == {"ok": True, "aggregate_id": case_id, "version": version, "events": reply["events"]}
    row = await wait_for(lambda: (r := summary(runtime, case_id)) and r["version"] == 7 and r)
    assert row["status"] == "closed" and row["assignee"] == "agent-2" and row["score"] == 92
    assert row["compensation"] == "120.50" and row["first_contact"] is False
    assert all(row[f"{s}_at"] is not None for s in ("acknowledged", "analysed", "resolved", "revisited"))


async def test_same_command_id_returns_the_first_reply_and_records_nothing(
        runtime: Runtime, client: Client) -> None:
    command_id = str(uuid.uuid4())
    data = complaint_data()
    first = await client.command("complaint", "register", data, command_id=command_id)
    again = await client.command("complaint", "register", data, command_id=command_id)
    assert again == first
    assert store_size(runtime) == 1


async def test_command_id_reused_for_another_command_is_refused(runtime: Runtime, client: Client) -> None:
    command_id = str(uuid.uuid4())
    await client.command("complaint", "register", complaint_data(), command_id=command_id)
    reply = await client.command("complaint", "register", complaint_data(priority="low"), command_id=command_id)
    assert reply["error"]["code"] == "validation_error"
    assert reply["error"]["details"] == [{"field": "command_id", "reason": "was already used for a different command"}]
    assert store_size(runtime) == 1


async def test_stale_expected_version_is_a_conflict(runtime: Runtime, client: Client) -> None:
    case_id = (await client.register_complaint())["aggregate_id"]
    await client.command("complaint", "acknowledge", {}, aggregate_id=case_id, expected_version=1)
    reply = await client.command("complaint", "assign", {"assignee": "x"}, aggregate_id=case_id,
                                 expected_version=1)
    assert reply["error"]["code"] == "conflict"
    assert store_size(runtime) == 2


@pytest.mark.parametrize("payload, fields", [
    (b"\xff not json", {"(body)"}),
    (b"[1, 2]", {"(body)"}),
    (orjson.dumps({"command_id": "nope", "actor": {"id": "a", "role": "boss"},
                   "data": {"customer_id": 5, "channel": "fax", "category": "billing", "priority": "high",
                            "description": ["not", "text"]}}),
     {"command_id", "actor.role", "data.customer_id", "data.channel", "data.description"}),
    (orjson.dumps({"command_id": str(uuid.uuid4()), "actor": {"id": "agent-1", "role": "agent"},
                   "data": complaint_data(customer_id=str(uuid.uuid4()), priority=1, unknown_field=True)}),
     {"data.priority", "data.unknown_field"}),
    (orjson.dumps({"command_id": str(uuid.uuid4()), "actor": {"id": "agent-1", "role": "agent"},
                   "aggregate_id": str(uuid.uuid4()), "data": complaint_data(customer_id=str(uuid.uuid4()))}),
     {"aggregate_id"}),
    (orjson.dumps({"command_id": str(uuid.uuid4()), "actor": {"id": "agent-1", "role": "agent"},
                   "data": complaint_data(customer_id=str(uuid.uuid4()), description="   ")}),
     {"data.description"}),
])
async def test_bad_register_payloads_get_validation_errors_and_write_nothing(
        runtime: Runtime, client: Client, payload: bytes, fields: set[str]) -> None:
    reply = await client.raw("ticketing.v1.commands.complaint.register", payload)
    assert reply["ok"] is False and reply["error"]["code"] == "validation_error"
    assert {d["field"] for d in reply["error"]["details"]} == fields
    assert store_size(runtime) == 0


async def test_wrong_types_on_a_later_command(runtime: Runtime, client: Client) -> None:
    case_id = (await client.register_complaint())["aggregate_id"]
    reply = await client.command("complaint", "resolve", {"resolution": "ok", "first_contact": "yes",
                                                           "compensation": 12.5}, aggregate_id=case_id)
    assert reply["error"]["code"] == "validation_error"
    assert {d["field"] for d in reply["error"]["details"]} == {"data.first_contact", "data.compensation"}
    assert store_size(runtime) == 1


async def test_unknown_case_is_not_found(runtime: Runtime, client: Client) -> None:
    reply = await client.command("complaint", "acknowledge", {}, aggregate_id=str(uuid.uuid4()))
    assert reply["error"]["code"] == "not_found"


async def test_illegal_move_is_an_invalid_transition(runtime: Runtime, client: Client) -> None:
    case_id = (await client.register_complaint())["aggregate_id"]
    await client.command("complaint", "withdraw", {"reason": "resolved by the courier"}, aggregate_id=case_id)
    reply = await client.command("complaint", "resolve", {"resolution": "x", "first_contact": True},
                                 aggregate_id=case_id)
    assert reply["error"]["code"] == "invalid_transition"
    assert store_size(runtime) == 2


async def test_role_that_may_not_act_is_forbidden(runtime: Runtime, client: Client) -> None:
    case_id = (await client.register_complaint())["aggregate_id"]
    await client.command("complaint", "escalate", {"reason": "beyond my authority"}, aggregate_id=case_id)
    reply = await client.command("complaint", "escalate", {"reason": "legal threat", "to": "manager"},
                                 aggregate_id=case_id)
    assert reply["error"]["code"] == "forbidden"
    # A role that may never run a command cannot even send it: NATS refuses the publish.
    reply = await client.command("complaint", "acknowledge", {}, aggregate_id=case_id, role="technician")
    assert refused_by_nats(reply)
    assert store_size(runtime) == 2


async def test_concurrent_commands_commit_together_and_all_arrive(runtime: Runtime, client: Client) -> None:
    replies = await asyncio.gather(*(client.register_complaint() for _ in range(100)))
    assert len({r["aggregate_id"] for r in replies}) == 100
    assert runtime.writer.batches < 100, "concurrent commands should share transactions"
    await wait_for(lambda: runtime.relay.position == 101)


async def test_commands_in_hand_when_the_command_side_stops_are_answered_and_none_taken_after(
        runtime: Runtime, client: Client) -> None:
    """The responders stop (as serve does at Ctrl-C) in the middle of a
    burst: every command recorded got its reply, nothing unanswered was
    recorded, and what comes after is taken by nobody until they start again."""
    customer = await client.known_customer()
    nc = await client.as_role("agent")
    before = store_size(runtime)

    async def register() -> dict[str, Any] | None:
        body = {"command_id": str(uuid.uuid4()), "data": complaint_data(customer_id=customer)}
        try:
            return dict(orjson.loads((await nc.request("ticketing.v1.commands.complaint.register",
                                                       orjson.dumps(body), timeout=5)).data))
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            return None

    burst = [asyncio.create_task(register()) for _ in range(200)]
    await asyncio.sleep(0.05)
    assert runtime.responders is not None
    await runtime.responders.stop(5)
    recorded = store_size(runtime) - before  # what the commands in hand wrote: all done by now
    replies = await asyncio.gather(*burst)
    answered = [r for r in replies if r is not None]
    assert answered and all(r["ok"] for r in answered), answered[:3]
    assert len(answered) == recorded, "recorded exactly what was answered, by the stop's end"
    assert await register() is None, "nobody takes commands once stopped"
    assert store_size(runtime) - before == len(answered)
    await runtime.responders.start(runtime.broker.connection)
    again = await register()
    assert again is not None and again["ok"], again


async def test_repeats_among_concurrent_commands_get_their_first_replies(runtime: Runtime,
                                                                          client: Client) -> None:
    """Groups of many commands read no earlier replies ahead: repeats must
    still get their first reply and record nothing, whether they would now
    succeed again (a register, an assign) or fail (a second acknowledge)."""
    registers = [(str(uuid.uuid4()), complaint_data()) for _ in range(20)]
    first = [await client.command("complaint", "register", data, command_id=cid) for cid, data in registers]
    cases = [reply["aggregate_id"] for reply in first]
    acks = [(str(uuid.uuid4()), case) for case in cases[:10]]
    assigns = [(str(uuid.uuid4()), case) for case in cases[10:]]
    first_acks = [await client.command("complaint", "acknowledge", {}, aggregate_id=case, command_id=cid)
                  for cid, case in acks]
    first_assigns = [await client.command("complaint", "assign", {"assignee": "li"}, aggregate_id=case,
                                          command_id=cid) for cid, case in assigns]
    recorded = store_size(runtime)

    fresh = [client.command("complaint", "escalate", {"reason": "媒体"}, aggregate_id=case) for case in cases]
    repeats = ([client.command("complaint", "register", data, command_id=cid) for cid, data in registers]
               + [client.command("complaint", "acknowledge", {}, aggregate_id=case, command_id=cid)
                  for cid, case in acks]
               + [client.command("complaint", "assign", {"assignee": "li"}, aggregate_id=case, command_id=cid)
                  for cid, case in assigns])
    replies = await asyncio.gather(*fresh, *repeats)

    assert all(reply["ok"] for reply in replies[:20]), replies[:20]
    assert replies[20:] == first + first_acks + first_assigns
    assert runtime.writer.split >= 1, "a repeat that succeeds again splits its group"
    assert store_size(runtime) == recorded + 20


async def test_idempotency_survives_a_restart(settings: Settings, clock: FakeClock, client: Client) -> None:
    command_id = str(uuid.uuid4())
    data = complaint_data()
    rt = await start(settings, clock)
    try:
        first = await client.command("complaint", "register", data, command_id=command_id)
    finally:
        await rt.stop()
    rt = await start(settings, clock)
    try:
        again = await client.command("complaint", "register", data, command_id=command_id)
        assert again == first and rt.store.max_position() == 2, "the customer and the complaint"
    finally:
        await rt.stop()


async def test_store_locked_is_unavailable_and_records_nothing(
        settings: Settings, clock: FakeClock, client: Client) -> None:
    if settings.database_url:
        pytest.skip("SQLite: another process holds the write lock")
    import sqlite3
    rt = await start(settings.model_copy(update={"sqlite_busy_timeout_ms": 200}), clock)
    try:
        await client.register_complaint()
        other = sqlite3.connect(settings.data_dir / "events.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            reply = await client.command("complaint", "register", complaint_data())
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert reply["error"]["code"] == "unavailable"
        assert rt.store.max_position() == 2, "the customer and the first complaint"
        assert (await client.register_complaint())["ok"], "the store is back"
    finally:
        await rt.stop()


@pytest.mark.parametrize("occurred_at", ["0001-01-01T00:00:00Z", "0999-12-31T23:59:59Z", "9999-12-31T00:00:00Z",
                                         "1899-12-31T23:59:59Z", "3000-01-01T00:00:00Z"])
async def test_times_outside_four_digit_sane_years_are_refused(runtime: Runtime, client: Client,
                                                              occurred_at: str) -> None:
    reply = await client.command("complaint", "register", complaint_data(occurred_at=occurred_at))
    assert reply["error"]["code"] == "validation_error"
    assert [d["field"] for d in reply["error"]["details"]] == ["data.occurred_at"]
    assert store_size(runtime) == 0


@pytest.mark.parametrize("period", ["0001-01", "0001-Q1", "9999-12", "9999-99", "2026-13", "1899-Q4"])
async def test_every_report_period_is_answered(runtime: Runtime, client: Client, period: str) -> None:
    reply = await client.query("report", {"period": period})
    assert reply["error"]["code"] == "validation_error"
    assert reply["error"]["details"][0]["field"] == "period"
