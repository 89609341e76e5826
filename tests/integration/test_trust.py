"""Trust on the bus, against a real nats-server with authorization on: who
speaks is the connection's credentials, each role publishes and subscribes
only where the domain's tables let it, and a message the relay did not seal
changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import nats
import orjson
import pytest
from nats.errors import NoServersError
from sqlalchemy import func, select

from contracts.alerts import ALERT_STREAM
from contracts.catalog import EVENT_STREAM, JS_DOMAIN, command_subject, query_subject
from handlers.kinds import KINDS
from infra.bootstrap import Runtime
from infra.bus.nats_server import EmbeddedNats
from projections.case_summary import case_summary
from tests.conftest import (
    TEST_ROLES,
    Client,
    Watched,
    add_user,
    complaint_data,
    connect_as,
    customer_data,
    wait_for,
)
from ticketing.access import ALERT_READERS, CONSUMER_KEEPERS, EVENT_READERS, PEOPLE, QUERIES
from ticketing.values import Role

pytestmark = pytest.mark.anyio

SERVICE_MAY = {"complaint.register", "repair_job.register", "customer.register"}
"""What the test directory grants `service-1`: every command a service may be granted."""


def may_send(role: Role, command: str) -> bool:
    """Straight from the state tables: may this role ever run this command?"""
    aggregate, name = command.split(".", 1)
    lifecycle = KINDS[aggregate].aggregate.lifecycle
    roles = lifecycle.register_roles if name == KINDS[aggregate].creates else lifecycle.steps[name].roles
    if role is Role.GATEWAY:
        return bool(roles & PEOPLE)
    if role is Role.SERVICE:
        return command in SERVICE_MAY
    return role in roles


def may_query(role: Role, query: str) -> bool:
    if role is Role.GATEWAY:
        return bool(QUERIES[query] & PEOPLE)
    return role in QUERIES[query]


async def test_anonymous_connections_are_refused(nats_server: EmbeddedNats) -> None:
    with pytest.raises((nats.errors.Error, NoServersError)) as refused:
        await nats.connect(nats_server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)
    assert "authorization" in str(refused.value).lower() or isinstance(refused.value, NoServersError)


@pytest.mark.parametrize("role", TEST_ROLES)
async def test_each_role_publishes_only_where_the_role_tables_allow(
        runtime: Runtime, nats_server: EmbeddedNats, role: str) -> None:
    """Every command and query subject, derived from the tables, so a new
    command cannot slip through: allowed ones reach the product (an empty
    body is answered `validation_error` and records nothing), the rest are
    refused by the server itself."""
    watched = await Watched().connect(nats_server, f"{role}-1")
    try:
        commands = [f"{a}.{c}" for a, kind in KINDS.items()
                    for c in [kind.creates, *kind.aggregate.lifecycle.steps]]
        for command in commands:
            await watched.nc.publish(command_subject(*command.split(".", 1)), b"{}")
        for query in QUERIES:
            await watched.nc.publish(query_subject(query), b"{}")
        await watched.settle()
        for command in commands:
            subject = command_subject(*command.split(".", 1))
            assert watched.refused("publish", subject) != may_send(Role(role), command), (role, command)
        for query in QUERIES:
            assert watched.refused("publish", query_subject(query)) != may_query(Role(role), query), (role, query)
        allowed = next(c for c in commands if may_send(Role(role), c)) if role != "auditor" else None
        if allowed:
            reply = orjson.loads((await watched.nc.request(command_subject(*allowed.split(".", 1)), b"{}",
                                                           timeout=5)).data)
            assert reply["error"]["code"] == "validation_error"
        assert runtime.store.max_position() == 0
    finally:
        await watched.nc.close()


@pytest.mark.parametrize("role", TEST_ROLES)
async def test_each_role_subscribes_only_where_its_work_needs(nats_server: EmbeddedNats, role: str) -> None:
    watched = await Watched().connect(nats_server, f"{role}-1")
    others = [r for r in TEST_ROLES if r != role]
    subjects = {
        "ticketing.v1.events.>": Role(role) in EVENT_READERS,
        "ticketing.v1.alerts.>": Role(role) in ALERT_READERS,
        "ticketing.v1.commands.>": False,
        "ticketing.v1.commands.customer.register": False,
        "ticketing.v1.queries.>": False,
        "_INBOX.>": False,
        f"_INBOX.{others[0]}-1.>": False,
        f"_INBOX.{role}-1.>": True,
        ">": False,
    }
    try:
        for subject in subjects:
            await watched.nc.subscribe(subject)
        await watched.settle()
        for subject, allowed in subjects.items():
            assert watched.refused("subscription", subject) != allowed, (role, subject)
    finally:
        await watched.nc.close()


@pytest.mark.parametrize("role", TEST_ROLES)
async def test_only_the_product_touches_the_streams_and_a_reader_keeps_its_own_consumer(
        runtime: Runtime, nats_server: EmbeddedNats, role: str) -> None:
    watched = await Watched().connect(nats_server, f"{role}-1")
    name = f"{role}-1"
    try:
        for subject in (f"$JS.API.STREAM.PURGE.{EVENT_STREAM}", f"$JS.API.STREAM.DELETE.{EVENT_STREAM}",
                        f"$JS.API.STREAM.UPDATE.{ALERT_STREAM}", "$JS.API.STREAM.CREATE.MINE",
                        "$JS.API.STREAM.LIST", f"$JS.API.CONSUMER.DELETE.{EVENT_STREAM}.projection_case_summary",
                        f"$JS.API.CONSUMER.MSG.NEXT.{EVENT_STREAM}.projection_case_summary",
                        "ticketing.v1.events.customer.flagged", "ticketing.v1.alerts.sla.breached"):
            await watched.nc.publish(subject, b"{}")
        await watched.settle()
        for subject in ("PURGE", "DELETE", "UPDATE", "CREATE", "LIST"):
            assert any(f"$js.api.stream.{subject.lower()}" in e for e in watched.errors), (role, subject)
        assert watched.refused("publish", f"$JS.API.CONSUMER.DELETE.{EVENT_STREAM}.projection_case_summary")
        assert watched.refused("publish", f"$JS.API.CONSUMER.MSG.NEXT.{EVENT_STREAM}.projection_case_summary")
        assert watched.refused("publish", "ticketing.v1.events.customer.flagged")
        assert watched.refused("publish", "ticketing.v1.alerts.sla.breached")
        if Role(role) in CONSUMER_KEEPERS:
            js = watched.nc.jetstream(domain=JS_DOMAIN)
            sub = await js.pull_subscribe("ticketing.v1.events.>", durable=name, stream=EVENT_STREAM)
            assert (await js.consumer_info(EVENT_STREAM, name)).name == name
            await sub.unsubscribe()
    finally:
        await watched.nc.close()


async def test_the_recorded_actor_is_the_credentials_user_and_a_claimed_one_is_forbidden(
        runtime: Runtime, client: Client) -> None:
    customer = await client.command("customer", "register", customer_data())
    registered = await client.command("complaint", "register", complaint_data(customer_id=customer["aggregate_id"]))
    history = await client.query("case.history", {"case_id": registered["aggregate_id"]})
    assert history["events"][0]["actor"] == {"id": "agent-1", "role": "agent"}
    before = runtime.store.max_position()

    agent = await client.as_role("agent")
    for claimed in ({"id": "agent-1", "role": "supervisor"}, {"id": "mallory", "role": "agent"},
                    {"id": "system", "role": "system"}):
        body = {"command_id": str(uuid.uuid4()), "actor": claimed, "aggregate_id": registered["aggregate_id"],
                "data": {"reason": "beyond me", "to": "manager"}}
        reply = orjson.loads((await agent.request(command_subject("complaint", "escalate"), orjson.dumps(body),
                                                  timeout=5)).data)
        assert reply["error"]["code"] == "forbidden", claimed
    assert runtime.store.max_position() == before


async def test_a_request_info_header_set_by_the_client_is_not_believed(
        runtime: Runtime, client: Client, nats_server: EmbeddedNats) -> None:
    """The server replaces the header on the way through the import."""
    registered = await client.register_complaint()
    supervisor_key = nats_server.directory.get("supervisor-1").nkey  # type: ignore[union-attr]
    forged = orjson.dumps({"acc": "TICKETING", "user": supervisor_key, "name": "supervisor-1"}).decode()
    agent = await client.as_role("agent")
    body = {"command_id": str(uuid.uuid4()), "aggregate_id": registered["aggregate_id"],
            "data": {"reason": "legal threat", "to": "manager"}}
    reply = orjson.loads((await agent.request(command_subject("complaint", "escalate"), orjson.dumps(body),
                                              timeout=5, headers={"Nats-Request-Info": forged})).data)
    assert reply["error"]["code"] == "forbidden"
    as_supervisor = await client.command("complaint", "escalate", {"reason": "legal threat", "to": "manager"},
                                         aggregate_id=registered["aggregate_id"], role="supervisor")
    assert as_supervisor["ok"], "the same request from the supervisor's own connection is carried out"


async def test_a_gateway_acts_for_the_person_it_signed_in_and_both_are_recorded(
        runtime: Runtime, client: Client) -> None:
    customer = await client.command("customer", "register", customer_data())
    gateway = await client.as_role("gateway")
    body = {"command_id": str(uuid.uuid4()), "actor": {"id": "li.na", "role": "supervisor"},
            "data": {"tier": "vip", "reason": "年框协议"}, "aggregate_id": customer["aggregate_id"]}
    reply = orjson.loads((await gateway.request(command_subject("customer", "change_tier"), orjson.dumps(body),
                                                timeout=5)).data)
    assert reply["ok"], reply
    history = await client.query("case.history", {"case_id": customer["aggregate_id"]})
    assert history["events"][-1]["actor"] == {"id": "li.na", "role": "supervisor",
                                              "via": {"id": "gateway-1", "role": "gateway"}}
    for claimed in ({"id": "x", "role": "system"}, {"id": "x", "role": "auditor"}, None):
        body = {"command_id": str(uuid.uuid4()), "data": {"tier": "basic"},
                "aggregate_id": customer["aggregate_id"]} | ({"actor": claimed} if claimed else {})
        reply = orjson.loads((await gateway.request(command_subject("customer", "change_tier"),
                                                    orjson.dumps(body), timeout=5)).data)
        assert reply["error"]["code"] == "forbidden", claimed


async def test_a_removed_user_is_refused_at_once(runtime: Runtime, client: Client,
                                                 nats_server: EmbeddedNats) -> None:
    add_user(nats_server.directory, "temp-agent", "agent")
    nats_server.reload()

    async def connected() -> Any:
        try:
            return await connect_as(nats_server.url, nats_server.directory.auth_dir, "temp-agent",
                                    allow_reconnect=False, max_reconnect_attempts=0)
        except Exception:  # noqa: BLE001 - the reload is still under way
            return None
    nc = await wait_for(connected)
    body = orjson.dumps({"command_id": str(uuid.uuid4()), "data": customer_data()})
    assert orjson.loads((await nc.request(command_subject("customer", "register"), body, timeout=5)).data)["ok"]

    nats_server.directory.remove("temp-agent")
    nats_server.reload()
    again = orjson.dumps({"command_id": str(uuid.uuid4()), "data": customer_data()})

    async def refused() -> bool:
        try:
            reply = orjson.loads((await nc.request(command_subject("customer", "register"), again, timeout=1)).data)
        except Exception:  # noqa: BLE001 - cut off by the server: refused too
            return True
        return reply.get("error", {}).get("code") == "forbidden"
    assert await refused()
    with pytest.raises(Exception, match="(?i)authorization"):
        await connect_as(nats_server.url, nats_server.directory.auth_dir, "temp-agent", allow_reconnect=False,
                         max_reconnect_attempts=0)
    await nc.close()


async def test_a_forged_event_in_the_stream_changes_no_read_model(runtime: Runtime, client: Client) -> None:
    """Published with admin rights (the product's own credentials), so it
    reaches the stream; it carries no valid seal, so it is parked, not applied."""
    customer = (await client.command("customer", "register", customer_data()))["aggregate_id"]
    parked = await client.nc.subscribe("ticketing.v1.deadletter.projections.case_summary")
    forged_id = str(uuid.uuid4())
    forged = {"id": forged_id, "type": "complaint.registered", "schema_version": 1,
              "aggregate_type": "complaint", "aggregate_id": str(uuid.uuid4()), "aggregate_version": 1,
              "position": 1_000_000_000, "occurred_at": "2026-11-25T01:00:00.000000Z",
              "actor": {"id": "mallory", "role": "agent"}, "correlation_id": str(uuid.uuid4()),
              "causation_id": None, "data": complaint_data(customer_id=customer) | {"follows_case_id": None,
                                                                                      "occurred_at": None}}
    await client.nc.jetstream().publish("ticketing.v1.events.complaint.registered", orjson.dumps(forged),
                                        headers={"Nats-Msg-Id": forged_id})
    real = (await client.command("complaint", "register", complaint_data(customer_id=customer)))["aggregate_id"]

    def summary() -> Any:
        with runtime.readmodels.connect() as conn:
            cases = conn.execute(select(case_summary.c.case_id).where(case_summary.c.kind == "complaint")).all()
        return cases if cases else None
    assert [str(c[0]) for c in await wait_for(summary)] == [real]
    message = await parked.next_msg(timeout=10)
    assert orjson.loads(message.data)["id"] == forged_id
    assert "not sealed" in message.headers["Ticketing-Reason"]
    with runtime.readmodels.connect() as conn:
        assert conn.execute(select(func.count()).select_from(case_summary)).scalar() == 1


async def test_a_service_sends_only_the_commands_granted_to_it(runtime: Runtime, nats_server: EmbeddedNats,
                                                                tmp_path: Any) -> None:
    from click.testing import CliRunner

    from infra.cli import main

    add_user(nats_server.directory, "web-form", "service", ("complaint.register",))
    nats_server.reload()
    watched = await Watched().connect(nats_server, "web-form")
    try:
        await watched.nc.publish(command_subject("customer", "register"), b"{}")
        await watched.nc.publish(command_subject("complaint", "register"), b"{}")
        await watched.settle()
        assert watched.refused("publish", command_subject("customer", "register"))
        assert not watched.refused("publish", command_subject("complaint", "register"))
    finally:
        await watched.nc.close()
    ungrantable = CliRunner().invoke(main, ["users", "add", "crm", "--role", "service", "--grant", "complaint.close",
                                            "--out", str(tmp_path / "crm.nk")],
                                     env={"TICKETING_DATA_DIR": str(tmp_path / "cli-data")})
    assert ungrantable.exit_code == 1 and "cannot grant complaint.close" in ungrantable.output
    assert not (tmp_path / "crm.nk").exists()
