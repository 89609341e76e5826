"""Customers over the real bus: cases need a known customer; marks need a
supervisor and stay in history; tiers reach the case summary; contact data
is in no event, no read model, no log line, and not in clear in the store."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from infra.bootstrap import Runtime
from projections.case_summary import case_summary, customers
from tests.conftest import (
    Client,
    FakeClock,
    at_rest,
    complaint_data,
    customer_data,
    refused_by_nats,
    wait_for,
)

pytestmark = pytest.mark.anyio

NAME, PHONE, ADDRESS = "欧阳娜娜", "+86 139 1234 5678", "杭州市西湖区文三路 90 号 3 幢"


async def register_customer(client: Client, **overrides: Any) -> str:
    reply = await client.command("customer", "register",
                                 customer_data(name=NAME, phone=PHONE, address=ADDRESS) | overrides)
    assert reply["ok"], reply
    return str(reply["aggregate_id"])


async def test_a_case_for_an_unknown_customer_is_not_found(runtime: Runtime, client: Client) -> None:
    unknown = await client.command("complaint", "register", complaint_data(customer_id=str(uuid.uuid4())))
    assert unknown["error"]["code"] == "not_found"
    assert unknown["error"]["details"] == [{"field": "data.customer_id", "reason": "no such customer"}]
    case = await client.command("complaint", "register", complaint_data())
    # A case's id is no customer either.
    not_a_customer = await client.command("complaint", "register",
                                          complaint_data(customer_id=case["aggregate_id"]))
    assert not_a_customer["error"]["code"] == "not_found"


async def test_contact_data_only_for_the_roles_that_may_read_it(runtime: Runtime, client: Client) -> None:
    customer_id = await register_customer(client, tier="vip")
    for role in ("agent", "supervisor", "manager"):
        reply = await client.query("customer.get", {"customer_id": customer_id}, role=role)
        assert (reply["customer"]["name"], reply["customer"]["phone"]) == (NAME, PHONE), role
        assert reply["customer"]["tier"] == "vip"
    for role in ("system", "technician", "auditor", "service"):
        reply = await client.query("customer.get", {"customer_id": customer_id}, role=role)
        assert reply["ok"] and reply["customer"]["tier"] == "vip"
        assert not {"name", "phone", "address"} & set(reply["customer"]), role
    # Claiming a role in the body changes nothing: the credentials say who asks.
    claimed = await client.query("customer.get", {"customer_id": customer_id,
                                                  "actor": {"id": "technician-1", "role": "manager"}},
                                 role="technician")
    assert claimed["error"]["code"] == "forbidden"
    history = await client.query("case.history", {"case_id": customer_id})
    assert NAME not in orjson.dumps(history).decode() and PHONE not in orjson.dumps(history).decode()
    missing = await client.query("customer.get", {"customer_id": str(uuid.uuid4())}, role="agent")
    assert missing["error"]["code"] == "not_found"


async def test_marks_need_a_supervisor_and_stay_in_history(runtime: Runtime, client: Client,
                                                           clock: FakeClock) -> None:
    customer_id = await register_customer(client)
    case_id = (await client.command("complaint", "register", complaint_data(customer_id=customer_id)))["aggregate_id"]
    flag = {"mark": "extortion", "reason": "威胁曝光，索要十倍赔偿 (threatens the press, wants ten times)",
            "case_id": case_id}
    refused = await client.command("customer", "flag", flag, aggregate_id=customer_id, role="agent")
    assert refused_by_nats(refused)
    no_reason = await client.command("customer", "flag", {"mark": "malicious"}, aggregate_id=customer_id,
                                     role="supervisor")
    assert no_reason["error"]["code"] == "validation_error"
    assert (await client.command("customer", "flag", flag, aggregate_id=customer_id, role="supervisor"))["ok"]
    again = await client.command("customer", "flag", flag, aggregate_id=customer_id, role="supervisor")
    assert again["error"]["code"] == "invalid_transition"
    clock.advance(days=30)
    lifted = await client.command("customer", "unflag", {"mark": "extortion", "reason": "误会已澄清"},
                                  aggregate_id=customer_id, role="manager")
    assert lifted["ok"], lifted

    history = await client.query("case.history", {"case_id": customer_id})
    assert [e["type"] for e in history["events"]] == ["customer.registered", "customer.flagged",
                                                      "customer.unflagged"]
    assert history["events"][1]["data"] == {"mark": "extortion", "reason": flag["reason"], "case_id": case_id}
    assert history["state"]["marks"] == {}
    assert [m["flagged"] for m in history["state"]["mark_history"]] == [True, False]


async def test_tiers_reach_the_case_summary(runtime: Runtime, client: Client) -> None:
    customer_id = await register_customer(client, tier="basic")
    case_id = (await client.command("complaint", "register", complaint_data(customer_id=customer_id)))["aggregate_id"]
    assert refused_by_nats(await client.command("customer", "change_tier", {"tier": "strategic", "reason": "年框协议"},
                                                aggregate_id=customer_id, role="agent"))
    assert (await client.command("customer", "change_tier", {"tier": "strategic", "reason": "年框协议"},
                                 aggregate_id=customer_id, role="supervisor"))["ok"]

    def tiers() -> tuple[Any, Any] | None:
        with runtime.readmodels.connect() as conn:
            case = conn.execute(select(case_summary.c.tier).where(case_summary.c.case_id == case_id)).scalar()
            customer = conn.execute(select(customers.c.tier).where(customers.c.customer_id == customer_id)).scalar()
        return (case, customer) if case == customer == "strategic" else None
    await wait_for(tiers)


async def test_contact_data_is_not_published_logged_or_stored_in_clear(
        runtime: Runtime, client: Client, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[Any] = []

    async def collect(msg: Any) -> None:
        seen.append(msg)

    await client.nc.subscribe("ticketing.v1.>", cb=collect)
    customer_id = await register_customer(client)
    case_id = (await client.command("complaint", "register", complaint_data(customer_id=customer_id)))["aggregate_id"]
    for command, data in [("acknowledge", {}), ("resolve", {"resolution": "已解决", "first_contact": True})]:
        clock.advance(minutes=10)
        assert (await client.command("complaint", command, data, aggregate_id=case_id))["ok"]
    bad = await client.command("customer", "register", {"name": NAME, "phone": PHONE, "tier": "gold",
                                                         "region": "华东", "address": ADDRESS})
    assert bad["error"]["code"] == "validation_error"
    await wait_for(lambda: any(m.subject == "ticketing.v1.events.callback.scheduled" for m in seen))

    secrets = [NAME, PHONE, ADDRESS]
    # The register request carries them, as its sender chose; every other message must not.
    others = [m for m in seen if m.subject != "ticketing.v1.commands.customer.register"]
    assert any(m.subject == "ticketing.v1.events.customer.registered" for m in others)
    for message in others:
        for secret in secrets:
            assert secret.encode() not in message.data, (message.subject, secret)
    for secret in secrets:
        assert secret not in caplog.text

    raw = at_rest(runtime)
    for secret in secrets:
        assert secret.encode() not in raw
        assert orjson.dumps(secret).strip(b'"') not in raw
        assert secret.encode("unicode_escape") not in raw  # as the JSON transcoder escapes it


def test_a_store_with_events_but_no_key_is_refused(settings: Any) -> None:
    from infra.store.event_store import EventStore
    from infra.store.secrets import NoCipherKey, cipher_key
    from ticketing.case import Context
    from ticketing.complaint import Complaint, Registration
    from ticketing.values import Role

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = cipher_key(settings, create=True)
    assert settings.cipher_key_file.read_text().strip() == key
    assert oct(settings.cipher_key_file.stat().st_mode & 0o777) == "0o600"
    store = EventStore(settings.event_store_url, key)
    ctx = Context("a", Role.AGENT, datetime.now(UTC), uuid.uuid4())
    store.save(Complaint.register(uuid.uuid4(), Registration(uuid.uuid4(), "phone", "billing", "low", "x"), ctx))
    store.engine.dispose()
    settings.cipher_key_file.unlink()
    with pytest.raises(NoCipherKey, match="holds 1 events but there is no key"):
        cipher_key(settings, create=True)
