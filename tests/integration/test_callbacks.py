"""The closed loop over the real bus: a resolved complaint gets exactly one
callback from the callback policy; the callback's verdict revisits the
complaint and, when the customer is not satisfied, opens a linked follow-up
complaint. Events delivered twice change nothing."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from contracts.catalog import EVENT_STREAM
from infra.bootstrap import Runtime
from tests.conftest import Client, FakeClock, stream_messages, wait_for

pytestmark = pytest.mark.anyio


async def stream_events(runtime: Runtime, type_: str | None = None) -> list[dict[str, Any]]:
    return [e for e in await stream_messages(runtime.js, EVENT_STREAM) if type_ in (None, e["type"])]


async def resolved_complaint(client: Client, clock: FakeClock) -> str:
    case_id = (await client.register_complaint(category="delivery", priority="high"))["aggregate_id"]
    for command, data in [("acknowledge", {}),
                          ("resolve", {"resolution": "补发货物 (goods sent again)", "first_contact": False})]:
        clock.advance(minutes=30)
        assert (await client.command("complaint", command, data, aggregate_id=case_id))["ok"]
    return case_id


async def the_callback(runtime: Runtime, case_id: str) -> dict[str, Any]:
    async def scheduled() -> list[dict[str, Any]]:
        return [e for e in await stream_events(runtime, "callback.scheduled") if e["data"]["case_id"] == case_id]
    [event] = await wait_for(scheduled)
    return event


async def history(client: Client, case_id: str) -> dict[str, Any]:
    reply = await client.query("case.history", {"case_id": case_id})
    assert reply["ok"], reply
    return reply


async def test_unsatisfied_callback_opens_a_linked_follow_up(runtime: Runtime, client: Client,
                                                             clock: FakeClock) -> None:
    case_id = await resolved_complaint(client, clock)
    scheduled = await the_callback(runtime, case_id)
    resolved = (await stream_events(runtime, "complaint.resolved"))[0]
    assert scheduled["data"]["case_type"] == "complaint"
    assert scheduled["data"]["due_at"] == "2026-11-26T02:00:00.123456Z", "due a day after the resolution"
    assert scheduled["actor"] == {"id": "policy:callbacks", "role": "system"}
    assert scheduled["causation_id"] == resolved["id"]
    assert scheduled["correlation_id"] == resolved["correlation_id"]
    callback_id = scheduled["aggregate_id"]

    for outcome in ("busy", "no_answer"):
        clock.advance(hours=1)
        reply = await client.command("callback", "attempt", {"outcome": outcome}, aggregate_id=callback_id)
        assert reply["ok"], reply
    clock.advance(hours=1)
    done = await client.command("callback", "complete",
                                {"satisfied": False, "score": 35, "comment": "货到了但是坏的 (arrived broken)"},
                                aggregate_id=callback_id)
    assert done["ok"], done

    async def followed_up() -> dict[str, Any] | None:
        original = await history(client, case_id)
        return original if original["state"]["follow_up_case_ids"] else None
    original = await wait_for(followed_up)
    assert original["state"]["status"] == "revisited"
    assert original["state"]["revisit_outcome"] == {"satisfied": False, "score": 35,
                                                    "comment": "货到了但是坏的 (arrived broken)"}
    [follow_up_id] = original["state"]["follow_up_case_ids"]
    assert [e["type"] for e in original["events"]][-2:] == ["complaint.revisited", "complaint.follow_up_opened"]

    follow_up = await history(client, follow_up_id)
    assert follow_up["state"]["follows_case_id"] == case_id
    assert follow_up["state"]["status"] == "registered"
    assert follow_up["state"]["category"] == "delivery" and follow_up["state"]["priority"] == "high"
    assert follow_up["state"]["description"] == "货到了但是坏的 (arrived broken)"
    assert follow_up["state"]["customer_id"] == original["state"]["customer_id"]

    callback = await history(client, callback_id)
    assert callback["state"]["status"] == "completed"
    assert [a["outcome"] for a in callback["state"]["attempts"]] == ["busy", "no_answer"]


async def test_satisfied_callback_revisits_and_opens_nothing(runtime: Runtime, client: Client,
                                                            clock: FakeClock) -> None:
    case_id = await resolved_complaint(client, clock)
    callback_id = (await the_callback(runtime, case_id))["aggregate_id"]
    assert (await client.command("callback", "complete", {"satisfied": True, "score": 95},
                                 aggregate_id=callback_id))["ok"]

    async def revisited() -> bool:
        return (await history(client, case_id))["state"]["status"] == "revisited"
    await wait_for(revisited)
    assert len(await stream_events(runtime, "complaint.registered")) == 1


async def test_events_delivered_twice_schedule_one_callback_and_open_one_follow_up(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    case_id = await resolved_complaint(client, clock)
    callback_id = (await the_callback(runtime, case_id))["aggregate_id"]
    [runner] = runtime.worker.policies  # type: ignore[union-attr]

    # The resolved event again, as a different stream message (so it is kept).
    [resolved] = await stream_events(runtime, "complaint.resolved")
    handled = runner.handled
    await runtime.js.publish("ticketing.v1.events.complaint.resolved", orjson.dumps(resolved),
                             headers={"Nats-Msg-Id": str(uuid.uuid4())})
    await wait_for(lambda: runner.handled == handled + 1)
    assert len(await stream_events(runtime, "callback.scheduled")) == 1

    assert (await client.command("callback", "complete", {"satisfied": False, "score": 10,
                                                          "new_request": "要求上门检查 (wants a visit)"},
                                 aggregate_id=callback_id))["ok"]

    async def linked() -> bool:
        return bool((await history(client, case_id))["state"]["follow_up_case_ids"])
    await wait_for(linked)
    [completed] = await stream_events(runtime, "callback.completed")
    handled = runner.handled
    await runtime.js.publish("ticketing.v1.events.callback.completed", orjson.dumps(completed),
                             headers={"Nats-Msg-Id": str(uuid.uuid4())})
    await wait_for(lambda: runner.handled == handled + 1)

    registered = await stream_events(runtime, "complaint.registered")
    assert len(registered) == 2, "the original and one follow-up"
    assert registered[1]["data"]["follows_case_id"] == case_id
    assert registered[1]["data"]["description"] == "要求上门检查 (wants a visit)"
    assert len(await stream_events(runtime, "complaint.follow_up_opened")) == 1
    assert len(await stream_events(runtime, "complaint.revisited")) == 1


async def test_too_many_failed_attempts_miss_the_callback(runtime: Runtime, client: Client,
                                                          clock: FakeClock) -> None:
    case_id = await resolved_complaint(client, clock)
    callback_id = (await the_callback(runtime, case_id))["aggregate_id"]
    for outcome in ("no_answer", "busy", "wrong_number"):
        assert (await client.command("callback", "attempt", {"outcome": outcome},
                                     aggregate_id=callback_id))["ok"]
    async def missed_events() -> list[dict[str, Any]]:
        return await stream_events(runtime, "callback.missed")
    [missed] = await wait_for(missed_events)
    assert missed["data"] == {"case_id": case_id, "case_type": "complaint", "attempts": 3}
    late = await client.command("callback", "complete", {"satisfied": True, "score": 90},
                                aggregate_id=callback_id)
    assert late["error"]["code"] == "invalid_transition"
    bad = await client.command("callback", "attempt", {"outcome": "asleep"}, aggregate_id=callback_id)
    assert bad["error"]["code"] == "validation_error"
    assert [d["field"] for d in bad["error"]["details"]] == ["data.outcome"]

