"""Event evolution: `complaint.registered` v2 adds `channel_detail`, v3
`about_staff`. Events stored as v1 or v2 are upcast on read (eventsourcing's
`class_version`, `upcast_v1_v2`, `upcast_v2_v3`) and go on the bus as v3 with
`schema_version`, and the hash chain verifies over old and new alike (it
hashes the stored bytes)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from contracts.catalog import EVENT_STREAM
from contracts.complaint import Registered, RegisteredV1, RegisteredV2
from infra.bootstrap import Runtime
from infra.store.verify import verify
from tests.conftest import Client, FakeClock, stream_messages, wait_for
from ticketing.case import Context
from ticketing.complaint import Complaint, Registration
from ticketing.values import Role

pytestmark = pytest.mark.anyio


def store_as(version: int, runtime: Runtime, customer_id: str, clock: FakeClock) -> uuid.UUID:
    """A registration written as the product wrote it at `version`: v1 has no
    `channel_detail` and no `class_version` in the stored state, v2 no
    `about_staff`."""
    ctx = Context(actor_id="agent-1", role=Role.AGENT, at=clock.now, correlation_id=uuid.uuid4(),
                  compensation_limit=Decimal("500"))
    case = Complaint.register(uuid.uuid4(), Registration(uuid.UUID(customer_id), "phone", "billing", "normal",
                                                         f"written by v{version}"), ctx)
    stored = runtime.store.mapper.to_stored_event(case.collect_events()[0])
    state = orjson.loads(stored.state)
    assert state.pop("class_version") == 3
    del state["about_staff"]
    if version == 1:
        del state["channel_detail"]
    else:
        state["class_version"] = version
    runtime.store.recorder.insert_events([StoredEvent(stored.originator_id, stored.originator_version,
                                                      stored.topic, orjson.dumps(state))])
    return case.id


async def test_v1_and_v2_events_read_as_v3_on_the_bus_and_in_history_and_the_chain_verifies(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    new = await client.register_complaint(channel_detail="400-800-1234 售后热线", about_staff="agent-7")
    old_id = store_as(1, runtime, await client.known_customer(), clock)
    v2_id = store_as(2, runtime, await client.known_customer(), clock)
    await client.register_complaint()  # wakes the relay

    history = await client.query("case.history", {"case_id": str(old_id)}, role="auditor")
    [registered] = history["events"]
    assert registered["schema_version"] == 3 and registered["data"]["channel_detail"] is None
    assert history["state"]["channel_detail"] is None and history["state"]["description"] == "written by v1"
    assert registered["data"]["about_staff"] is None and history["state"]["about_staff"] is None
    v2 = await client.query("case.history", {"case_id": str(v2_id)}, role="auditor")
    assert v2["events"][0]["schema_version"] == 3 and v2["state"]["description"] == "written by v2"
    assert v2["state"]["channel_detail"] is None and v2["state"]["about_staff"] is None

    async def on_the_bus() -> dict[str, dict]:
        found = {m["aggregate_id"]: m for m in await stream_messages(runtime.js, EVENT_STREAM)
                 if m["type"] == "complaint.registered"}
        return found if {str(old_id), str(v2_id), str(new["aggregate_id"])} <= set(found) else {}
    published = await wait_for(on_the_bus)
    fresh, upcast = published[str(new["aggregate_id"])], published[str(old_id)]
    assert (fresh["schema_version"], fresh["data"]["channel_detail"]) == (3, "400-800-1234 售后热线")
    assert fresh["data"]["about_staff"] == "agent-7"
    assert (upcast["schema_version"], upcast["data"]["channel_detail"], upcast["data"]["about_staff"]) == (3, None, None)
    assert published[str(v2_id)]["schema_version"] == 3 and published[str(v2_id)]["data"]["about_staff"] is None
    Registered.model_validate(upcast["data"])
    RegisteredV1.model_validate(fresh["data"])  # older readers ignore the new fields
    RegisteredV2.model_validate(fresh["data"])

    verdict = verify(runtime.store, [])
    assert verdict.intact, verdict.summary()
    assert verdict.events == runtime.store.max_position()
