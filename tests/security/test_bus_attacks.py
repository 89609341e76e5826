"""Attacks on the bus, replayed against a real nats-server with
authorization on, each with the credentials of a user of the role that
tried it from outside: a consumer's configuration, a pull request's reply
subject, a request's reply subject, the product's own consumer names,
forged alerts and anchors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from contracts.alerts import ALERT_STREAM
from contracts.catalog import AUDIT_STREAM, EVENT_STREAM, JS_DOMAIN, PROJECTIONS_CONSUMER, command_subject
from infra.auth.directory import DirectoryError
from infra.auth.signing import Signer
from infra.bootstrap import Runtime
from infra.bus.anchors import CHECKPOINT_SUBJECT, read_anchors
from infra.bus.nats_server import EmbeddedNats
from infra.bus.user_consumers import keep_user_consumers
from infra.settings import Settings
from infra.store.verify import verify
from projections.case_summary import case_summary
from tests.conftest import Client, Watched, add_user, connect_as, customer_data, wait_for

pytestmark = pytest.mark.anyio

KEEPERS = ("auditor", "service", "gateway")
STREAM_TARGETS = ("ticketing.v1.events.customer.flagged", "ticketing.v1.alerts.sla.breached",
                  "ticketing.v1.audit.checkpoint")


async def counts(js: Any) -> dict[str, int]:
    return {stream: (await js.stream_info(stream)).state.messages
            for stream in (EVENT_STREAM, ALERT_STREAM, AUDIT_STREAM)}


async def relayed(runtime: Runtime) -> None:
    head = runtime.store.max_position()

    async def all_out() -> bool:
        return bool((await runtime.js.stream_info(EVENT_STREAM)).state.messages >= head)
    await wait_for(all_out)


@pytest.mark.parametrize("role", KEEPERS)
async def test_a_user_cannot_make_change_or_delete_a_consumer(
        runtime: Runtime, nats_server: EmbeddedNats, role: str) -> None:
    """A push consumer of its own delivered wherever its maker said, with the
    server's rights: onto the alert and audit streams, into an agent's inbox."""
    name = f"{role}-1"
    await wait_for(lambda: _has_consumer(runtime, PROJECTIONS_CONSUMER))  # the runner's, made as it starts
    watched = await Watched().connect(nats_server, name)
    push = orjson.dumps({"stream_name": EVENT_STREAM, "config": {
        "durable_name": name, "deliver_subject": "ticketing.v1.alerts.sla.breached", "ack_policy": "none"}})
    tried = []
    try:
        for api in ("$JS.API", f"$JS.{JS_DOMAIN}.API"):
            for stream in (EVENT_STREAM, ALERT_STREAM):
                tried += [f"{api}.CONSUMER.CREATE.{stream}.{name}", f"{api}.CONSUMER.CREATE.{stream}.{name}.x",
                          f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{name}", f"{api}.CONSUMER.DELETE.{stream}.{name}",
                          f"{api}.CONSUMER.DELETE.{stream}.{PROJECTIONS_CONSUMER}"]
        for subject in tried:
            await watched.nc.publish(subject, push)
        await watched.settle()
        refused = [s for s in tried if watched.refused("publish", s)]
        assert refused == tried
    finally:
        await watched.nc.close()
    info = await runtime.js.consumer_info(EVENT_STREAM, name)
    assert info.config.deliver_subject is None, "still the pull consumer the product made"
    assert await runtime.js.consumer_info(EVENT_STREAM, PROJECTIONS_CONSUMER)


@pytest.mark.parametrize("role", KEEPERS)
async def test_a_pull_request_reply_lands_on_no_stream_and_in_no_one_elses_inbox(
        runtime: Runtime, client: Client, nats_server: EmbeddedNats, role: str) -> None:
    """A pull request's reply subject is where JetStream delivers; in the
    streams' account it appended events and alerts to the streams again."""
    await client.register_complaint()
    await relayed(runtime)
    before = await counts(runtime.js)
    stolen: list[Any] = []
    agent = await connect_as(nats_server.url, nats_server.directory.auth_dir, "agent-1")

    async def steal(msg: Any) -> None:
        stolen.append(msg)
    await agent.subscribe("_INBOX.agent-1.>", cb=steal)
    await agent.flush()
    name = f"{role}-1"
    watched = await Watched().connect(nats_server, name)
    try:
        for api in ("$JS.API", f"$JS.{JS_DOMAIN}.API"):
            for stream in (EVENT_STREAM, ALERT_STREAM):
                for reply in (*STREAM_TARGETS, "_INBOX.agent-1.stolen"):
                    await watched.nc.publish(f"{api}.CONSUMER.MSG.NEXT.{stream}.{name}",
                                             orjson.dumps({"batch": 50, "no_wait": True}), reply=reply)
        await watched.settle()
        await asyncio.sleep(0.5)
    finally:
        await watched.nc.close()
        await agent.close()
    assert await counts(runtime.js) == before
    assert stolen == []


@pytest.mark.parametrize("role", KEEPERS)
async def test_a_user_reads_its_own_consumer_through_the_documented_recipe(
        runtime: Runtime, client: Client, nats_server: EmbeddedNats, role: str) -> None:
    registered = await client.register_complaint()
    await relayed(runtime)
    nc = await connect_as(nats_server.url, nats_server.directory.auth_dir, f"{role}-1")
    try:
        js = nc.jetstream(domain=JS_DOMAIN)
        sub = await js.pull_subscribe("ticketing.v1.events.>", durable=f"{role}-1", stream=EVENT_STREAM)

        async def read() -> bool:
            try:
                batch = await sub.fetch(50, timeout=1)
            except nats.errors.TimeoutError:
                return False
            for message in batch:
                await message.ack()
                if orjson.loads(message.data)["aggregate_id"] == registered["aggregate_id"]:
                    return True
            return False
        await wait_for(read)
    finally:
        await nc.close()


async def test_a_reply_goes_only_to_the_askers_own_inbox(
        runtime: Runtime, client: Client, nats_server: EmbeddedNats) -> None:
    """An agent named a manager's inbox as its reply subject: the manager got
    the agent's customer.get reply."""
    customer = await client.known_customer()
    manager = await connect_as(nats_server.url, nats_server.directory.auth_dir, "manager-1")
    got: list[Any] = []

    async def collect(msg: Any) -> None:
        got.append(msg)
    await manager.subscribe("_INBOX.manager-1.>", cb=collect)
    await manager.flush()
    agent = await client.as_role("agent")
    for subject, body in (("ticketing.v1.queries.customer.get", {"customer_id": customer}),
                          (command_subject("customer", "register"),
                           {"command_id": str(uuid.uuid4()), "data": customer_data()})):
        await agent.publish(subject, orjson.dumps(body), reply="_INBOX.manager-1.stolen")
    await agent.flush()
    await asyncio.sleep(1.0)
    await manager.close()
    assert got == []


async def test_a_consumer_made_before_users_lost_the_right_is_replaced(
        runtime: Runtime, nats_server: EmbeddedNats) -> None:
    """What an older release let users make: a push consumer named after
    the user, delivering onto the alerts; and one no user is named after."""
    js = runtime.js
    await js.delete_consumer(EVENT_STREAM, "service-1")
    await js.add_consumer(EVENT_STREAM, ConsumerConfig(durable_name="service-1", ack_policy=AckPolicy.NONE,
                                                       deliver_subject="ticketing.v1.alerts.sla.breached"))
    await js.add_consumer(ALERT_STREAM, ConsumerConfig(durable_name="mallory", ack_policy=AckPolicy.EXPLICIT))
    changed = await keep_user_consumers(js, runtime.directory)
    assert any("service-1" in c for c in changed) and any("mallory" in c for c in changed)
    assert (await js.consumer_info(EVENT_STREAM, "service-1")).config.deliver_subject is None
    with pytest.raises(NotFoundError):
        await js.consumer_info(ALERT_STREAM, "mallory")
    assert await keep_user_consumers(js, runtime.directory) == [], "nothing left to change"


async def test_a_user_added_while_serve_runs_gets_its_consumer_and_a_removed_one_loses_it(
        runtime: Runtime, nats_server: EmbeddedNats) -> None:
    add_user(nats_server.directory, "crm", "service")
    nats_server.reload()
    await wait_for(lambda: _has_consumer(runtime, "crm"))
    nats_server.directory.remove("crm")
    nats_server.reload()
    await wait_for(lambda: _gone(runtime, "crm"))


async def _has_consumer(runtime: Runtime, name: str) -> bool:
    try:
        return bool(await runtime.js.consumer_info(EVENT_STREAM, name))
    except NotFoundError:
        return False


async def _gone(runtime: Runtime, name: str) -> bool:
    return not await _has_consumer(runtime, name)


@pytest.mark.parametrize("name", ["projections", "policy_callbacks", "system", "relay", "policy_anything"])
def test_the_products_own_names_are_no_users(nats_server: EmbeddedNats, name: str) -> None:
    with pytest.raises(DirectoryError, match="the product uses for itself"):
        nats_server.directory.add(name, "auditor")


def test_the_cli_refuses_a_products_name_in_one_line(settings: Settings, tmp_path: Path) -> None:
    env = {"TICKETING_DATA_DIR": str(settings.data_dir), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(Path(sys.executable).parent / "ticketing"), "users", "add", "projections", "--role",
                           "auditor", "--out", str(tmp_path / "p.nk")], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "the product uses for itself" in done.stderr and not (tmp_path / "p.nk").exists()


async def test_a_products_consumer_deleted_is_reported_down_then_made_again(
        runtime: Runtime, client: Client) -> None:
    """A user named `projections` deleted the product's consumer: the read
    models stopped while health still said up."""
    assert runtime.worker is not None and runtime.worker.projector is not None
    await wait_for(lambda: _has_consumer(runtime, PROJECTIONS_CONSUMER))  # the runner's, made as it starts
    runtime.worker.projector.stop()
    await asyncio.sleep(0.5)  # its fetch loop ends
    await runtime.js.delete_consumer(EVENT_STREAM, PROJECTIONS_CONSUMER)
    health = await client.query("health", {})
    down = [p for p in health["parts"] if p["name"].startswith("projection:")]
    assert down and all(not p["up"] and "gone" in p["last_error"] for p in down), down
    assert not health["healthy"]


async def test_a_products_consumer_deleted_under_a_running_worker_is_made_again(
        runtime: Runtime, client: Client) -> None:
    first = await client.register_complaint()

    def projected_first() -> bool:
        with runtime.readmodels.connect() as conn:
            return conn.execute(case_summary.select().where(
                case_summary.c.case_id == first["aggregate_id"])).first() is not None
    await wait_for(projected_first)
    await runtime.js.delete_consumer(EVENT_STREAM, PROJECTIONS_CONSUMER)
    after = await client.register_complaint()

    def projected() -> bool:
        with runtime.readmodels.connect() as conn:
            return conn.execute(case_summary.select().where(
                case_summary.c.case_id == after["aggregate_id"])).first() is not None
    await wait_for(projected, timeout=15)
    assert await _has_consumer(runtime, PROJECTIONS_CONSUMER)


async def test_a_forged_anchor_counts_for_nothing(runtime: Runtime, client: Client) -> None:
    """25 forged checkpoints went into the audit stream."""
    await client.register_complaint()
    assert runtime.worker is not None and runtime.worker.anchoring is not None
    await runtime.worker.anchoring.publish()
    head = runtime.store.max_position()
    other = Signer.of_file(runtime.settings.data_dir / "not-the-product.nk")
    for signer in (None, other):
        document = {"position": head + 100, "hash": "0" * 64, "at": "2026-11-25T00:00:00Z", "after": head,
                    "digests": "0" * 16 * 100}
        body = signer.signed(document) if signer else document
        await runtime.js.publish(CHECKPOINT_SUBJECT, orjson.dumps(body), stream=AUDIT_STREAM)
    verdict = verify(runtime.store, await read_anchors(runtime.js), runtime.signer.public_key)
    assert verdict.intact and verdict.anchors_refused == 2 and verdict.anchored_position == head, verdict
    reply = await client.query("audit.verify", {}, role="auditor")
    assert reply["intact"] and reply["anchors_refused"] == 2
    key = await client.query("audit.key", {}, role="service")
    assert key["key"] == runtime.signer.public_key
