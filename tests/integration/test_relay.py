"""The relay against a real nats-server and a real store file: killed between
publishing and saving its position, restarted, it loses and doubles nothing."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.js import JetStreamContext

from contracts.catalog import EVENT_STREAM
from infra.auth.seal import Seal
from infra.bus.nats_server import EmbeddedNats
from infra.bus.relay import Relay
from infra.runtime.worker import ensure_streams, notification_translator
from infra.store.event_store import EventStore
from tests.conftest import connect_as, wait_for
from ticketing.case import Context
from ticketing.complaint import Complaint, Registration
from ticketing.values import Role

pytestmark = pytest.mark.anyio

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SEAL = Seal(base64.b64encode(b"k" * 32).decode())


class Died(Exception):
    """Stands for the process dying at this point."""


class DiesBeforeSaving:
    """The store as the relay sees it, except that saving the position kills
    the relay: what it published is on the stream, its position is not saved."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def notifications(self, after: int, limit: int) -> list[Any]:
        return self.store.notifications(after, limit)

    def relay_position(self, name: str) -> int:
        return self.store.relay_position(name)

    def links(self, after: int, limit: int) -> dict[int, Any]:
        return self.store.links(after, limit)

    def save_relay_position(self, name: str, position: int) -> None:
        raise Died


class ForgetsTheStream(DiesBeforeSaving):
    """A relay that trusts only its saved position (0), as if it could not read
    the stream's tail: only the duplicate window stands between it and copies."""

    def save_relay_position(self, name: str, position: int) -> None:
        self.store.save_relay_position(name, position)


def record_complaints(store: EventStore, count: int) -> list[uuid.UUID]:
    """Record `count` complaints with two events each, interleaved."""
    cases = [Complaint.register(uuid.uuid4(), Registration(uuid.uuid4(), "phone", "billing", "low", "描述"),
                                Context("agent-1", Role.AGENT, AT, uuid.uuid4())) for _ in range(count)]
    store.save(*cases)
    for case in cases:
        case.acknowledge(Context("agent-1", Role.AGENT, AT, uuid.uuid4()))
    store.save(*cases)
    return [case.id for case in cases]


async def stream_messages(js: JetStreamContext) -> list[dict[str, Any]]:
    info = await js.stream_info(EVENT_STREAM)
    messages = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(EVENT_STREAM, seq=seq)
        messages.append(orjson.loads(msg.data) | {"_msg_id": msg.headers["Nats-Msg-Id"]})
    return messages


async def run_until_caught_up(relay: Relay) -> None:
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.caught_up.wait(), 10)
    finally:
        relay.stop()
        await task


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    return EventStore(f"sqlite:///{tmp_path / 'events.db'}")


@pytest.fixture
async def js(nats_server: EmbeddedNats) -> Any:
    nc = await connect_as(nats_server.url, nats_server.directory.auth_dir, "system")  # admin rights: the product's own
    js = nc.jetstream()
    await ensure_streams(js)
    yield js
    await nc.close()


def assert_exactly_the_store(messages: list[dict[str, Any]], store: EventStore) -> None:
    read = store.notifications(0, 10_000)
    assert read == store.recorder.select_notifications(1, 10_000), "the same rows as the library's own read"
    assert store.notifications(7, 5) == read[7:12]
    expected = [n.id for n in read]
    assert [m["position"] for m in messages] == expected
    assert len({m["_msg_id"] for m in messages}) == len(messages)
    assert all(m["_msg_id"] == m["id"] for m in messages)


async def test_relay_killed_before_saving_its_position_resumes_without_copies(
        store: EventStore, js: JetStreamContext) -> None:
    record_complaints(store, 30)  # 60 events
    translate = notification_translator(store)

    dying = Relay(DiesBeforeSaving(store), js, translate, SEAL, batch=25)
    await dying._reconcile()
    await dying.pump()  # publishes 25, then dies saving its position
    await asyncio.sleep(0.1)
    assert len(await stream_messages(js)) == 25
    assert store.relay_position(Relay.name) == 0

    record_complaints(store, 5)
    await run_until_caught_up(Relay(store, js, translate, SEAL, batch=25))

    assert_exactly_the_store(await stream_messages(js), store)
    assert store.relay_position(Relay.name) == store.max_position() == 70


async def test_copies_published_again_within_the_window_are_dropped(
        store: EventStore, js: JetStreamContext) -> None:
    record_complaints(store, 10)
    translate = notification_translator(store)
    await run_until_caught_up(Relay(store, js, translate, SEAL, batch=7))
    assert len(await stream_messages(js)) == 20

    # A relay that publishes everything again from position 0, without looking
    # at the stream first: every copy is refused by Nats-Msg-Id.
    blind = Relay(ForgetsTheStream(store), js, translate, SEAL, batch=7)
    while await blind.pump():
        pass
    assert blind.published == 20

    assert_exactly_the_store(await stream_messages(js), store)


async def test_saved_position_ahead_of_an_emptied_stream_is_not_republished(
        store: EventStore, js: JetStreamContext) -> None:
    """The saved position wins when the stream was purged: the relay does not
    replay history onto it (the store is the source of truth)."""
    record_complaints(store, 3)
    translate = notification_translator(store)
    await run_until_caught_up(Relay(store, js, translate, SEAL))
    await js.purge_stream(EVENT_STREAM)
    record_complaints(store, 1)
    await run_until_caught_up(Relay(store, js, translate, SEAL))
    assert [m["position"] for m in await stream_messages(js)] == [7, 8]


async def test_a_strangers_message_in_the_stream_does_not_stop_the_relay(
        store: EventStore, js: JetStreamContext) -> None:
    """Only the product may publish on ticketing.v1.events.>, but someone
    with admin rights can still put a message into the stream: the relay's
    next publish is then refused (its expected predecessor is not the last
    message), and it must carry on after it, copying nothing, even when the
    stranger's message looks like one of ours and claims an enormous
    position, and even across a restart."""
    record_complaints(store, 2)
    translate = notification_translator(store)
    relay = Relay(store, js, translate, SEAL)
    task = asyncio.create_task(relay.run())
    forged_id = str(uuid.uuid4())
    forged = {"id": forged_id, "type": "customer.flagged", "schema_version": 1, "aggregate_type": "customer",
              "aggregate_id": str(uuid.uuid4()), "aggregate_version": 2, "position": 1_000_000_000,
              "occurred_at": "2026-11-25T09:00:00.000000Z", "actor": {"id": "mallory", "role": "supervisor"},
              "correlation_id": str(uuid.uuid4()), "causation_id": None,
              "data": {"mark": "extortion", "reason": "forged", "case_id": None}}
    try:
        await asyncio.wait_for(relay.caught_up.wait(), 10)
        await js.publish("ticketing.v1.events.complaint.registered", b'{"not": "ours"}',
                         headers={"Nats-Msg-Id": "stranger-1"})
        await js.publish("ticketing.v1.events.customer.flagged", orjson.dumps(forged),
                         headers={"Nats-Msg-Id": forged_id})
        record_complaints(store, 2)
        relay.wake()

        async def all_there() -> bool:
            return len(await stream_messages(js)) == 10
        await wait_for(all_there, timeout=20)
    finally:
        relay.stop()
        await task
    record_complaints(store, 1)  # a restart after the forgery: it resumes from its own last event
    await run_until_caught_up(Relay(store, js, translate, SEAL))
    messages = await stream_messages(js)
    ours = [m for m in messages if m["_msg_id"] not in ("stranger-1", forged_id)]
    assert_exactly_the_store(ours, store)
    assert messages[4] == {"not": "ours", "_msg_id": "stranger-1"}
    assert messages[5]["position"] == 1_000_000_000



async def test_a_stranger_taking_an_events_id_first_is_reported(
        store: EventStore, js: JetStreamContext, caplog: pytest.LogCaptureFixture) -> None:
    """Someone with admin rights publishes under the id the next event will
    carry: the stream drops the real one as a copy. The relay cannot undo
    that, but says which event the stream lacks (the store still has it)."""
    from handlers.translate import event_id

    [case_id] = record_complaints(store, 1)
    translate = notification_translator(store)
    await run_until_caught_up(Relay(store, js, translate, SEAL))
    squatted = str(event_id(case_id, 3))
    await js.publish("ticketing.v1.events.complaint.assigned", b'{"forged": true}',
                     headers={"Nats-Msg-Id": squatted})
    case = store.repository.get(case_id)
    case.assign(Context("agent-1", Role.AGENT, AT, uuid.uuid4()), assignee="李娜")
    store.save(case)
    await run_until_caught_up(Relay(store, js, translate, SEAL))
    assert "the event at position 3 was dropped" in caplog.text
    assert [m["_msg_id"] for m in await stream_messages(js)][-1] == squatted
