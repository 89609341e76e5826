"""The case-summary projection fed from the real stream: rebuilt from the store
it gives the live rows; copies, redeliveries and a dead consumer's pending
messages neither double nor lose an event; a message it cannot apply is parked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, inspect, select, update

from contracts.catalog import EVENT_STREAM
from infra.auth.seal import HEADER as SEAL
from infra.bootstrap import Runtime, start
from infra.bus.projection_runner import DEADLETTER_STREAM, ProjectionRunner
from infra.settings import Settings
from infra.store.rebuild import rebuild_projection
from projections.activity import counted_in
from projections.base import marks_of, tracking
from projections.case_summary import CaseSummary, case_summary
from projections.staff import StaffFigures, staff_month
from tests.conftest import Client, FakeClock, wait_for

pytestmark = pytest.mark.anyio

PATHS: list[list[tuple[str, dict[str, Any]]]] = [
    [],
    [("acknowledge", {})],
    [("acknowledge", {}), ("assign", {"assignee": "li.wei", "department": "technical"})],
    [("acknowledge", {}), ("await_customer", {"reason": "需要照片"}), ("resume", {})],
    [("acknowledge", {}), ("analyse", {"root_cause": "受潮", "plan": "换货", "responsible_party": "company",
                                       "severity": "major"}),
     ("resolve", {"resolution": "换货", "first_contact": False, "compensation": "80.00"})],
    [("acknowledge", {}), ("resolve", {"resolution": "解释说明", "first_contact": True}),
     ("revisit", {"satisfied": False, "score": 40}), ("reopen", {"reason": "仍不满意"})],
    [("resolve", {"resolution": "退款", "first_contact": True}), ("revisit", {"satisfied": True, "score": 95}),
     ("close", {})],
    [("withdraw", {})],
    [("escalate", {"reason": "媒体曝光风险", "to": "supervisor"})],
]


async def drive(client: Client, clock: FakeClock, rounds: int = 2) -> list[str]:
    """Cases down every path, their steps interleaved in time."""
    cases: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = []
    for _ in range(rounds):
        for path in PATHS:
            clock.advance(minutes=3)
            cases.append(((await client.register_complaint())["aggregate_id"], list(path)))
    for step in range(max(len(p) for p in PATHS)):
        for case_id, path in cases:
            if step < len(path):
                clock.advance(minutes=11)
                command, data = path[step]
                reply = await client.command("complaint", command, data, aggregate_id=case_id,
                                             role="supervisor")
                assert reply["ok"], (command, reply)
    return [case_id for case_id, _ in cases]


def rows(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.readmodels.connect() as conn:
        result = conn.execute(select(case_summary).order_by(case_summary.c.case_id)).mappings()
        return [dict(r) for r in result]


def caught_up(runtime: Runtime) -> bool:
    return marks_of(runtime.readmodels, CaseSummary.name)[0] == runtime.store.max_position()


async def policies_idle(runtime: Runtime) -> bool:
    """Every policy has handled every event it was given."""
    assert runtime.worker is not None
    for policy in runtime.worker.policies:
        info = await runtime.js.consumer_info(EVENT_STREAM, policy.durable)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def settled(runtime: Runtime, timeout: float = 10.0) -> None:
    """Caught up, and nothing new recorded for a while: the callback policy,
    reacting to resolved complaints, has had its say."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = -1
    while True:
        await wait_for(lambda: caught_up(runtime), timeout=timeout)
        await wait_for(lambda: policies_idle(runtime), timeout=timeout)
        now = runtime.store.max_position()
        if now == last:
            return
        assert asyncio.get_running_loop().time() < deadline, "never settled"
        last = now
        await asyncio.sleep(0.3)


def complaints(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in found if row["kind"] == "complaint"]


async def stop_runner(runtime: Runtime) -> None:
    runner = runtime.projector
    runner.stop()
    assert runtime.worker is not None
    await asyncio.gather(*(t for t in runtime.worker.tasks if t.get_name() == runner.durable))


async def test_rebuild_gives_the_same_rows_as_the_live_run(runtime: Runtime, client: Client,
                                                           clock: FakeClock) -> None:
    cases = await drive(client, clock)
    await settled(runtime)
    live = rows(runtime)
    assert len(complaints(live)) == len(cases)
    assert len(live) - len(cases) == 6, "a callback for each resolved complaint"
    assert {r["status"] for r in live} >= {"registered", "acknowledged", "resolved", "reopened", "closed",
                                          "withdrawn"}

    reached = await asyncio.to_thread(rebuild_projection, runtime.store, runtime.readmodels, CaseSummary())
    assert reached == runtime.store.max_position()
    assert rows(runtime) == live

    # The live consumer carries on after a rebuild, neither re-applying nor missing.
    clock.advance(hours=1)
    reply = await client.command("complaint", "acknowledge", {}, aggregate_id=cases[0])
    assert reply["ok"]
    await settled(runtime)
    after = {r["case_id"]: r for r in rows(runtime)}
    assert after[cases[0]]["status"] == "acknowledged" and after[cases[0]]["version"] == 2
    assert [r for r in rows(runtime) if r["case_id"] != cases[0]] == \
        [r for r in live if r["case_id"] != cases[0]]


async def test_cli_rebuild_repairs_a_damaged_read_model(runtime: Runtime, client: Client, clock: FakeClock,
                                                        settings: Settings) -> None:
    await drive(client, clock, rounds=1)
    await settled(runtime)
    live = rows(runtime)
    with runtime.readmodels.begin() as conn:
        conn.execute(update(case_summary).values(status="closed", assignee="nobody"))

    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env["TICKETING_DATA_DIR"] = str(settings.data_dir)
    env["TICKETING_SLA_POLICY"] = str(settings.sla_policy)  # the serving process's policy
    if settings.database_url:
        env["TICKETING_DATABASE_URL"] = settings.database_url
    done = await asyncio.to_thread(
        subprocess.run, [str(Path(sys.executable).parent / "ticketing"), "projections", "rebuild"],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"rebuilt case_summary, sla, activity, danger, staff up to position {runtime.store.max_position()}" \
        in done.stdout
    assert rows(runtime) == live


async def test_copies_and_stale_redeliveries_are_not_applied(runtime: Runtime, client: Client,
                                                             clock: FakeClock) -> None:
    case_id = (await client.register_complaint())["aggregate_id"]
    for command, data in PATHS[4]:
        clock.advance(minutes=5)
        assert (await client.command("complaint", command, data, aggregate_id=case_id))["ok"]
    await settled(runtime)
    before = rows(runtime)
    runner = runtime.projector
    applied = dict(runner.applied)

    # The `acknowledged` message again, as a different message (so the stream
    # keeps it): applying it would put the resolved case back to acknowledged.
    acknowledged = await runtime.js.get_msg(EVENT_STREAM, seq=2)
    ack = await runtime.js.publish(acknowledged.subject, acknowledged.data,
                                   headers={"Nats-Msg-Id": str(uuid.uuid4()),
                                            SEAL: runtime.seal.of(acknowledged.subject, acknowledged.data)})
    await wait_for(lambda: marks_of(runtime.readmodels, CaseSummary.name)[1] == ack.seq)
    assert rows(runtime) == before
    assert runner.applied == applied


async def test_a_consumer_that_died_holding_messages_loses_none(runtime: Runtime, client: Client,
                                                                clock: FakeClock) -> None:
    await drive(client, clock, rounds=1)
    await settled(runtime)
    await stop_runner(runtime)

    first = await drive(client, clock, rounds=1)
    # A dead instance: it fetched the next messages and will never ack them.
    dead = await runtime.js.pull_subscribe_bind(durable=runtime.projector.durable, stream=EVENT_STREAM)
    held = await dead.fetch(5, timeout=2)
    assert len(held) == 5
    second = await drive(client, clock, rounds=1)

    # Well within ack_wait, so only re-anchoring can bring the held ones back.
    runner = ProjectionRunner(runtime.projector.projections, runtime.readmodels, runtime.js, runtime.seal)
    task = asyncio.create_task(runner.run())
    try:
        await settled(runtime)
        live = rows(runtime)
        reached = await asyncio.to_thread(rebuild_projection, runtime.store, runtime.readmodels, CaseSummary())
        assert reached == runtime.store.max_position()
        assert rows(runtime) == live
        assert {r["case_id"] for r in live} >= set(first) | set(second)
    finally:
        runner.stop()
        await task


async def test_a_message_that_cannot_be_applied_is_parked_and_the_rest_goes_on(
        runtime: Runtime, client: Client) -> None:
    """Sealed as the relay would (a bug of ours, not a stranger's message).
    The retries are rounds over every projection: a message none can apply
    holds the stream up for one backoff (about 6 s), not one per projection."""
    parked = await runtime.nc.subscribe("ticketing.v1.deadletter.projections.case_summary")
    parked_at: dict[str, list[float]] = {}

    async def arrived(msg: Any) -> None:
        parked_at.setdefault(msg.headers["Ticketing-Stream-Sequence"], []).append(asyncio.get_running_loop().time())
    await runtime.nc.subscribe("ticketing.v1.deadletter.projections.*", cb=arrived)

    async def publish(subject: str, data: bytes) -> None:
        await runtime.js.publish(subject, data, headers={"Nats-Msg-Id": str(uuid.uuid4()),
                                                         SEAL: runtime.seal.of(subject, data)})
    await publish("ticketing.v1.events.complaint.registered", b"not json")
    bogus = {"id": str(uuid.uuid4()), "type": "complaint.acknowledged", "aggregate_type": "complaint",
             "position": 10_000,
             "aggregate_id": str(uuid.uuid4()), "aggregate_version": 2, "occurred_at": "nonsense",
             "data": {}}
    await publish("ticketing.v1.events.complaint.acknowledged", orjson.dumps(bogus))

    first = await parked.next_msg(timeout=10)
    assert first.data == b"not json" and first.headers["Ticketing-Reason"] == "not a v1 event envelope"
    second = await parked.next_msg(timeout=30)
    assert orjson.loads(second.data) == bogus and "Invalid isoformat" in second.headers["Ticketing-Reason"]

    async def parked_by_each() -> bool:  # each projection parks its copy of the two
        return (await runtime.js.stream_info(DEADLETTER_STREAM)).state.messages == 2 * len(runtime.projector.names)
    await wait_for(parked_by_each, timeout=30)
    second_parks = parked_at[second.headers["Ticketing-Stream-Sequence"]]
    assert len(second_parks) == len(runtime.projector.names)
    assert max(second_parks) - min(second_parks) < 3, "parked one backoff after another"

    case_id = (await client.register_complaint())["aggregate_id"]
    await wait_for(lambda: any(r["case_id"] == case_id for r in rows(runtime)))


async def test_at_start_a_projection_new_to_the_store_or_out_of_date_is_built_from_the_store(
        settings: Settings, clock: FakeClock, client: Client, tmp_path: Path) -> None:
    """A newer version adds a projection (its tables and tracking row absent)
    and changes another's counters (kept in another time zone): the next
    start builds both from the store, together, though the stream no longer
    holds the history; the others are left as they are."""
    first = await start(settings, clock)
    try:
        case_id = (await client.register_complaint())["aggregate_id"]
        assert (await client.command("complaint", "resolve", {"resolution": "done", "first_contact": True},
                                     aggregate_id=case_id))["ok"]
        await wait_for(lambda: all(marks_of(first.readmodels, name)[0] == first.store.max_position()
                                   for name in first.projector.names), timeout=15)
        head = first.store.max_position()
        engine = first.readmodels
    finally:
        await first.stop()
    with engine.begin() as conn:
        StaffFigures.metadata.drop_all(conn)
        conn.execute(delete(tracking).where(tracking.c.name == "staff"))
        conn.execute(update(counted_in).values(zone="Asia/Tokyo"))
        summary_before = conn.execute(select(case_summary)).all()
        # an index an older version kept and this one dropped (nothing reads it; every row pays for it)
        conn.exec_driver_sql("CREATE INDEX ix_case_summary_kind ON case_summary (kind)")
    await client.nc.jetstream().purge_stream(EVENT_STREAM)

    second = await start(settings, clock)
    try:
        assert marks_of(second.readmodels, "staff")[0] == marks_of(second.readmodels, "activity")[0] == head
        indexes = {index["name"] for index in inspect(second.readmodels).get_indexes("case_summary")}
        assert "ix_case_summary_kind" not in indexes and "ix_case_summary_status_registered" in indexes
        with second.readmodels.connect() as conn:
            handled = conn.execute(select(staff_month.c.n).where(staff_month.c.figure == "handled_complaint")).all()
            assert [row.n for row in handled] == [1]
            assert conn.execute(select(counted_in.c.zone)).scalar() == "UTC"
            assert conn.execute(select(case_summary)).all() == summary_before
    finally:
        await second.stop()
