"""Event evolution: `complaint.registered` v2 adds `channel_detail`. Events
stored as v1 are upcast on read (eventsourcing's `class_version` and
`upcast_v1_v2`) and go on the bus as v2 with `schema_version`, and the hash
chain verifies over old and new alike (it hashes the stored bytes)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from contracts.catalog import EVENT_STREAM
from contracts.complaint import Registered, RegisteredV1
from infra.bootstrap import Runtime
from infra.store.verify import verify
from tests.conftest import Client, FakeClock, stream_messages, wait_for
from ticketing.case import Context
from ticketing.complaint import Complaint, Registration
from ticketing.values import Role

pytestmark = pytest.mark.anyio


def store_as_v1(runtime: Runtime, customer_id: str, clock: FakeClock) -> uuid.UUID:
    """A registration written as the product wrote it before v2: no
    `channel_detail`, no `class_version` in the stored state."""
    ctx = Context(actor_id="agent-1", role=Role.AGENT, at=clock.now, correlation_id=uuid.uuid4(),
                  compensation_limit=Decimal("500"))
    case = Complaint.register(uuid.uuid4(), Registration(uuid.UUID(customer_id), "phone", "billing", "normal",
                                                         "written by v1"), ctx)
    stored = runtime.store.mapper.to_stored_event(case.collect_events()[0])
    state = orjson.loads(stored.state)
    assert state.pop("class_version") == 2
    del state["channel_detail"]
    runtime.store.recorder.insert_events([StoredEvent(stored.originator_id, stored.originator_version,
                                                      stored.topic, orjson.dumps(state))])
    return case.id


async def test_v1_events_read_as_v2_on_the_bus_and_in_history_and_the_chain_verifies(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    new = await client.register_complaint(channel_detail="400-800-1234 售后热线")
    old_id = store_as_v1(runtime, await client.known_customer(), clock)
    await client.register_complaint()  # wakes the relay

    history = await client.query("case.history", {"case_id": str(old_id)}, role="auditor")
    [registered] = history["events"]
    assert registered["schema_version"] == 2 and registered["data"]["channel_detail"] is None
    assert history["state"]["channel_detail"] is None and history["state"]["description"] == "written by v1"

    async def on_the_bus() -> dict[str, dict]:
        found = {m["aggregate_id"]: m for m in await stream_messages(runtime.js, EVENT_STREAM)
                 if m["type"] == "complaint.registered"}
        return found if str(old_id) in found and str(new["aggregate_id"]) in found else {}
    published = await wait_for(on_the_bus)
    fresh, upcast = published[str(new["aggregate_id"])], published[str(old_id)]
    assert (fresh["schema_version"], fresh["data"]["channel_detail"]) == (2, "400-800-1234 售后热线")
    assert (upcast["schema_version"], upcast["data"]["channel_detail"]) == (2, None)
    Registered.model_validate(upcast["data"])
    RegisteredV1.model_validate(fresh["data"])  # a v1 reader ignores the new field

    verdict = verify(runtime.store, [])
    assert verdict.intact, verdict.summary()
    assert verdict.events == runtime.store.max_position()
