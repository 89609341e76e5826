"""A gateway (the web console, a front-end) names the person it signed in:
what the person's role may not ask, the gateway may not ask for them. Before,
only `customer.get` and `staff.assessment` looked at the person: a gateway
asked `report` and `audit.verify` as an agent and was answered."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from contracts.catalog import query_subject
from infra.bootstrap import Runtime
from tests.conftest import Client

pytestmark = pytest.mark.anyio


async def ask(client: Client, name: str, body: dict[str, Any], actor: dict[str, str] | None) -> dict[str, Any]:
    gateway = await client.as_role("gateway")
    sent = body | ({"actor": actor} if actor else {})
    return dict(orjson.loads((await gateway.request(query_subject(name), orjson.dumps(sent), timeout=10)).data))


@pytest.mark.parametrize(("query", "body", "allowed", "refused"), [
    ("report", {"period": "2026-11"}, "supervisor", "agent"),
    ("audit.verify", {}, "auditor", "supervisor"),
    ("dashboard", {}, "agent", "technician"),
    ("sla.simulate", {"policy": "", "since": "2026-11-01T00:00:00Z"}, None, "agent"),
])
async def test_a_gateway_asks_only_what_the_person_it_names_may(
        runtime: Runtime, client: Client, query: str, body: dict[str, Any], allowed: str | None,
        refused: str) -> None:
    person = f"p-{uuid.uuid4().hex[:6]}"
    reply = await ask(client, query, body, {"id": person, "role": refused})
    assert reply["error"]["code"] == "forbidden" and f"a {refused} may not ask {query}" in reply["error"]["message"]
    if allowed:
        assert (await ask(client, query, body, {"id": person, "role": allowed}))["ok"]


async def test_a_gateway_names_no_service_no_system_and_no_made_up_role(runtime: Runtime, client: Client) -> None:
    for role in ("service", "system", "gateway", "boss"):
        reply = await ask(client, "dashboard", {}, {"id": "x", "role": role})
        assert reply["error"]["code"] in ("forbidden", "validation_error"), (role, reply)
        assert not reply.get("ok")
    # and a person's own connection may not name anyone else to ask as
    agent = await client.as_role("agent")
    sent = {"actor": {"id": "boss", "role": "manager"}}
    reply = orjson.loads((await agent.request(query_subject("dashboard"), orjson.dumps(sent), timeout=10)).data)
    assert reply["error"]["code"] == "forbidden"
