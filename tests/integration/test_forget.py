"""Forgetting a customer (crypto-shredding): their contact data is sealed
with a key of their own; `customer.forget` destroys it. Afterwards the
name, phone and addresses read as "(forgotten)" in every reply, history,
rebuilt read model and bundle, no copy of the key is left in any file,
and the store - every event byte, so the hash chain - is untouched."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from infra.bootstrap import Runtime
from infra.bus.anchors import read_anchors
from infra.store.bundle import export
from infra.store.keyring import customer_keys
from infra.store.rebuild import rebuild_projection
from infra.store.verify import verify
from projections.case_summary import CaseSummary
from tests.conftest import Client, at_rest, customer_data, wait_for

pytestmark = pytest.mark.anyio

NAME, PHONE, ADDRESS, SITE = "钱多多 Qian Duoduo", "+86 139 1234 5678", "杭州市西湖区文三路 77 号", "宁波市北仑区 港口路 9 号"


def every_file(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def contact_in(blob: bytes | str) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [value for value in (NAME, PHONE, ADDRESS, SITE) if value.encode() in data]


async def test_a_forgotten_customer_reads_as_forgotten_everywhere_and_the_chain_still_verifies(
        runtime: Runtime, client: Client, tmp_path: Path) -> None:
    customer_id = (await client.command("customer", "register", customer_data(
        name=NAME, phone=PHONE, address=ADDRESS)))["aggregate_id"]
    job = await client.command("repair_job", "register", {
        "customer_id": customer_id, "kind": "repair", "product_model": "M1", "fault_description": "offline",
        "priority": "normal", "in_warranty": True, "site_address": SITE})
    assert job["ok"], job
    shown = await client.query("customer.get", {"customer_id": customer_id}, role="agent")
    assert (shown["customer"]["name"], shown["customer"]["phone"]) == (NAME, PHONE)
    assert contact_in(at_rest(runtime)) == [], "sealed at rest, never plain"

    with runtime.store.engine.connect() as conn:
        wrapped = bytes(conn.execute(select(customer_keys.c.wrapped_key).where(
            customer_keys.c.customer_id == customer_id)).scalar_one())
    key = runtime.store.mapper.keyring.master.decrypt(wrapped)
    before = await stored_states(runtime)

    refused = await client.command("customer", "forget", {"reason": "客户要求删除 (asked to be erased)"},
                                   aggregate_id=customer_id, role="supervisor")
    assert refused.get("error", {}).get("code") == "forbidden" or "refused_by_nats" in refused, refused
    reasonless = await client.command("customer", "forget", {}, aggregate_id=customer_id, role="manager")
    assert reasonless["error"]["code"] == "validation_error"
    forgot = await client.command("customer", "forget", {"reason": "客户要求删除 (asked to be erased)"},
                                  aggregate_id=customer_id, role="manager")
    assert forgot["ok"], forgot
    again = await client.command("customer", "forget", {"reason": "twice"}, aggregate_id=customer_id,
                                 role="manager")
    assert again["error"]["code"] == "invalid_transition"

    shown = await client.query("customer.get", {"customer_id": customer_id}, role="manager")
    assert {shown["customer"][f] for f in ("name", "phone", "address")} == {"(forgotten)"}
    assert shown["customer"]["tier"] == "basic" and shown["customer"]["status"] == "forgotten"
    history = await client.query("case.history", {"case_id": customer_id}, role="auditor")
    assert [e["type"] for e in history["events"]][-1] == "customer.forgotten"
    replies = [shown, history, await client.query("case.history", {"case_id": job["aggregate_id"]}, role="auditor")]
    assert contact_in(orjson.dumps(replies)) == []
    old_job = runtime.store.repository.get(uuid.UUID(job["aggregate_id"]))
    assert old_job.site_address == "(forgotten)", "the job's site address was the customer's too"

    after = await stored_states(runtime)
    assert {position: after[position] for position in before} == before and len(after) == len(before) + 1, \
        "no stored event changed: only the forgotten event was added"
    verdict = verify(runtime.store, await read_anchors(runtime.js))
    assert verdict.intact, verdict.summary()

    rebuild_projection(runtime.store, runtime.readmodels, CaseSummary())
    assert runtime.worker is not None and runtime.worker.anchoring is not None
    await runtime.worker.anchoring.publish()
    bundle = export(runtime.store, uuid.UUID(job["aggregate_id"]), await read_anchors(runtime.js), runtime.signer)
    assert contact_in(orjson.dumps(bundle)) == []

    def no_copy_left() -> bool:
        blob = at_rest(runtime) + (every_file(tmp_path) if not runtime.settings.database_url else b"")
        return key not in blob and wrapped not in blob and contact_in(blob) == []
    await wait_for(no_copy_left, timeout=10)
    with runtime.store.engine.connect() as conn:
        row = conn.execute(select(customer_keys).where(customer_keys.c.customer_id == customer_id)).one()
    assert row.wrapped_key is None and row.forgotten_at is not None


async def stored_states(runtime: Runtime) -> dict[int, bytes]:
    table = runtime.store.events_table
    with runtime.store.engine.connect() as conn:
        return {row.id: bytes(row.state) for row in conn.execute(select(table.c.id, table.c.state))}


async def test_a_store_from_before_per_customer_keys_is_sealed_once_then_chained(
        runtime: Runtime, client: Client) -> None:
    customer_id = (await client.command("customer", "register", customer_data(name=NAME, phone=PHONE)))["aggregate_id"]
    store = runtime.store
    keyring, store.mapper.keyring = store.mapper.keyring, None  # write as the older product did
    try:
        older = (await client.command("customer", "register", customer_data(name=NAME + "2", phone=PHONE + "2")))
    finally:
        store.mapper.keyring = keyring
    assert older["ok"], older
    with store.engine.connect() as conn:  # the older product had no chain either
        from infra.store.chain import event_chain
        conn.execute(event_chain.delete())
        conn.commit()
    assert store.seal_unsealed() == 1, "only the older event is sealed; the sealed one is left alone"
    assert store.seal_unsealed() == 0
    assert store.chain_unchained() == store.max_position()
    assert verify(store, []).intact
    shown = await client.query("customer.get", {"customer_id": older["aggregate_id"]}, role="agent")
    assert shown["customer"]["name"] == NAME + "2"
    forgot = await client.command("customer", "forget", {"reason": "erase"}, aggregate_id=older["aggregate_id"],
                                  role="manager")
    assert forgot["ok"], forgot
    assert (await client.query("customer.get", {"customer_id": older["aggregate_id"]}, role="agent")
            )["customer"]["name"] == "(forgotten)"
    assert (await client.query("customer.get", {"customer_id": customer_id}, role="agent"))["customer"]["name"] == NAME
