"""Repair jobs over the real bus: dispatch approval by role, a SIM swap that
keeps both numbers, charges by warranty, the callback loop with a follow-up
job, and the site address in no published event."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import select

from infra.bootstrap import Runtime
from projections.case_summary import case_summary
from tests.conftest import Client, FakeClock, at_rest, complaint_data, refused_by_nats, wait_for

pytestmark = pytest.mark.anyio

SITE = "深圳市南山区科技园北区 8 栋 1203"


async def register_job(client: Client, **overrides: Any) -> str:
    data = {"customer_id": await client.known_customer(), "kind": "repair", "product_model": "GT06N 车载定位终端",
            "fault_description": "终端不上线 (terminal offline)", "priority": "high", "in_warranty": False,
            "site_address": SITE, "serial_number": "868120301234567", "purchase_date": "2025-03-01"} | overrides
    reply = await client.command("repair_job", "register", data)
    assert reply["ok"], reply
    return str(reply["aggregate_id"])


async def events(client: Client, case_id: str) -> list[dict[str, Any]]:
    return list((await client.query("case.history", {"case_id": case_id}))["events"])


async def test_a_sim_swap_from_request_to_follow_up(runtime: Runtime, client: Client, clock: FakeClock) -> None:
    seen: list[Any] = []

    async def collect(msg: Any) -> None:
        seen.append(msg)

    await client.nc.subscribe("ticketing.v1.events.>", cb=collect)
    job = await register_job(client)
    order = {"technician": "technician-1", "scheduled_at": "2026-11-25T06:00:00Z"}
    asked = await client.command("repair_job", "dispatch", order, aggregate_id=job, role="agent")
    assert asked["ok"]
    assert refused_by_nats(await client.command("repair_job", "approve_dispatch", {}, aggregate_id=job,
                                                role="agent"))
    assert (await client.command("repair_job", "approve_dispatch", {}, aggregate_id=job,
                                 role="supervisor"))["ok"]
    clock.advance(hours=5)
    tech = {"role": "technician"}
    assert (await client.command("repair_job", "diagnose", {"diagnosis": "SIM 卡损坏 (SIM broken)"},
                                 aggregate_id=job, **tech))["ok"]
    half = await client.command("repair_job", "record_parts", {"parts": ["SIM 卡"], "new_sim": "89860012345"},
                                aggregate_id=job, **tech)
    assert half["error"]["code"] == "validation_error"
    assert [d["field"] for d in half["error"]["details"]] == ["data.old_sim"]
    swap = {"parts": ["SIM 卡"], "old_sim": "89860000001", "new_sim": "89860012345"}
    assert (await client.command("repair_job", "record_parts", swap, aggregate_id=job, **tech))["ok"]
    assert (await client.command("repair_job", "resolve", {"work_done": "更换 SIM 卡", "charge": "30.00",
                                                          "payment_taken": True}, aggregate_id=job, **tech))["ok"]

    history = await events(client, job)
    assert [e["type"] for e in history] == [
        "repair_job.registered", "repair_job.dispatch_requested", "repair_job.dispatched", "repair_job.analysed",
        "repair_job.parts_recorded", "repair_job.resolved"]
    assert history[4]["data"] == swap | {"old_serial": None, "new_serial": None}
    assert history[2]["actor"]["role"] == "supervisor" and history[2]["data"]["technician"] == "technician-1"

    async def callback() -> str | None:
        found = [m for m in seen if m.subject == "ticketing.v1.events.callback.scheduled"
                 and orjson.loads(m.data)["data"]["case_id"] == job]
        return str(orjson.loads(found[0].data)["aggregate_id"]) if found else None
    callback_id = await wait_for(callback)
    assert (await client.command("callback", "complete", {"satisfied": False, "score": 50,
                                                          "new_request": "还是偶尔掉线 (still drops now and then)"},
                                 aggregate_id=callback_id))["ok"]

    async def follow_up() -> str | None:
        state = (await client.query("case.history", {"case_id": job}))["state"]
        return state["follow_up_case_ids"][0] if state["follow_up_case_ids"] else None
    follow_up_id = await wait_for(follow_up)
    follow = (await client.query("case.history", {"case_id": follow_up_id}))["state"]
    assert follow["follows_case_id"] == job and follow["product_model"] == "GT06N 车载定位终端"
    assert follow["fault_description"] == "还是偶尔掉线 (still drops now and then)"

    def rows() -> dict[str, Any] | None:
        with runtime.readmodels.connect() as conn:
            found = {r["case_id"]: dict(r) for r in conn.execute(select(case_summary)).mappings()}
        return found if follow_up_id in found and found[job]["follow_up_case_id"] else None
    summary = await wait_for(rows)
    assert summary[job]["kind"] == "repair_job" and summary[job]["status"] == "revisited"
    assert summary[job]["assignee"] == "technician-1" and summary[job]["compensation"] == "30.00"
    assert summary[follow_up_id]["follows_case_id"] == job

    assert seen and all(SITE.encode() not in m.data for m in seen)
    assert "site_address" not in follow and SITE not in orjson.dumps(await events(client, job)).decode()
    raw = at_rest(runtime)
    assert SITE.encode() not in raw and SITE.encode("unicode_escape") not in raw


async def test_who_may_send_whom_and_what_costs_what(runtime: Runtime, client: Client) -> None:
    job = await register_job(client, in_warranty=True)
    contractor = {"technician": "外包: 顺达维修", "scheduled_at": "2026-11-26T02:00:00Z", "contractor": True}
    assert (await client.command("repair_job", "dispatch", contractor, aggregate_id=job,
                                 role="supervisor"))["error"]["code"] == "forbidden"
    assert (await client.command("repair_job", "dispatch", contractor, aggregate_id=job, role="manager"))["ok"]
    colleague = await client.command("repair_job", "resolve", {"work_done": "更换主板"}, aggregate_id=job,
                                     role="technician")
    assert colleague["error"]["code"] == "forbidden", "a technician never closes a job sent to another"
    free = await client.command("repair_job", "resolve", {"work_done": "更换主板", "charge": "120.00"},
                                aggregate_id=job, role="supervisor")
    assert free["error"]["code"] == "invalid_transition", "in warranty the work is free"
    assert (await client.command("repair_job", "resolve", {"work_done": "更换主板"}, aggregate_id=job,
                                 role="supervisor"))["ok"]

    raised = {"priority": "urgent", "reason": "客户投诉到总部 (the customer called head office)"}
    assert refused_by_nats(await client.command("repair_job", "reprioritise", raised, aggregate_id=job,
                                                role="agent"))

    unrequested = await register_job(client)
    assert (await client.command("repair_job", "reprioritise", raised, aggregate_id=unrequested,
                                 role="supervisor"))["ok"]

    def priority() -> Any:
        with runtime.readmodels.connect() as conn:
            found = conn.execute(select(case_summary.c.priority)
                                 .where(case_summary.c.case_id == unrequested)).scalar()
        return found if found == "urgent" else None
    await wait_for(priority)
    assert (await client.command("repair_job", "approve_dispatch", {}, aggregate_id=unrequested,
                                 role="supervisor"))["error"]["code"] == "invalid_transition"
    assert (await client.command("repair_job", "cancel", {"reason": "客户已自行解决"}, aggregate_id=unrequested))["ok"]

    case_id = (await client.register_complaint())["aggregate_id"]
    generous = {"resolution": "赔偿", "first_contact": False, "compensation": "800.00"}
    assert (await client.command("complaint", "resolve", generous, aggregate_id=case_id,
                                 role="agent"))["error"]["code"] == "forbidden"
    assert (await client.command("complaint", "resolve", generous | {"compensation": "200.00"},
                                 aggregate_id=case_id, role="agent"))["ok"]
    other = (await client.command("complaint", "register", complaint_data()))["aggregate_id"]
    assert (await client.command("complaint", "resolve", generous, aggregate_id=other, role="supervisor"))["ok"]
