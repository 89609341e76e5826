"""Wiring: the one place that builds the parts and hands each what it needs
(the worker's own wiring is `infra/runtime/worker.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from faststream.nats import NatsBroker
from faststream.security import BaseSecurity
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from contracts.health import AuditVerifyReply
from handlers.batch import CommandBatches
from handlers.bus import CommandResponders, include_handlers
from handlers.commands import CommandService
from handlers.queries import QueryService
from infra.auth.connect import product_directory, product_options
from infra.auth.directory import ensure_console
from infra.auth.seal import Seal
from infra.auth.signing import Signer
from infra.bus.anchors import ANCHOR_FILE, read_anchor_file, read_anchors
from infra.bus.connection import ConnectionLog, connect_nats, servers
from infra.bus.nats_server import EmbeddedNats
from infra.bus.user_consumers import UserConsumers
from infra.cluster.instances import Instances
from infra.cluster.leases import Leases
from infra.config_files import load_assessment_rules, load_danger_rules, load_sla_policy
from infra.console.server import case_bundle, start_console
from infra.runtime.clock import Clock, utc_now
from infra.runtime.health import HealthCheck, WorkerWord
from infra.runtime.instance import STOP_DRAIN_SECONDS, Runtime, sole_writer
from infra.runtime.metrics import keep_fresh, serve_http
from infra.runtime.worker import WAKE_SUBJECT, ensure_streams, projections, start_worker
from infra.settings import Settings
from infra.store.database import make_engine
from infra.store.event_store import EventStore
from infra.store.policies import adopt
from infra.store.policies import timeline as policy_timeline
from infra.store.scan import case_tracks
from infra.store.secrets import cipher_key
from infra.store.verify import verify
from infra.store.writer import GroupCommitWriter
from ticketing.errors import DomainError

log = logging.getLogger(__name__)


async def start(settings: Settings, clock: Clock = utc_now, *, worker: Literal["inline", "process"] = "inline",
                stop: asyncio.Event | None = None) -> Runtime:
    """Start the product. The command side (handlers and the group-commit
    writer) runs here; the worker (relay and projections) runs here too, or,
    with `worker="process"` as `serve` does, in a child process of its own
    (`ticketing worker`). They share nothing but the store, the bus and the
    read model database, so on a multi-core machine the worker no longer
    competes with command handling for one interpreter; a commit wakes the
    relay over the bus either way. A `stop` set meanwhile ends the wait for
    the worker process (the caller then stops what started)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.data_dir.chmod(0o700)  # the stores, the keys, the bus's files: the owner's only
    sla_policy = load_sla_policy(settings)  # a file with an error is refused before anything starts
    danger_rules = load_danger_rules(settings)
    assessment_rules = load_assessment_rules(settings)
    embedded = None
    nats_url = settings.nats_url
    only_instance = None if settings.database_url else sole_writer(settings.data_dir)
    try:
        directory = product_directory(settings)
        console_credentials = ensure_console(directory, settings.auth_dir) if settings.console_port else None
        signer = Signer.of_file(settings.audit_key_file)  # made here, before the worker's processes read it
        if not nats_url:
            # Started from this thread on purpose: the child's parent-death signal
            # is tied to the thread that forks it, and a pool thread may exit first.
            embedded = EmbeddedNats.start(settings.data_dir / "nats", directory, settings.nats_port,
                                          max_file_store=settings.nats_max_file_store)
            nats_url = embedded.url
        settings.nats_url_file.write_text(nats_url + "\n")
        key = await asyncio.to_thread(cipher_key, settings, create=True)
        store = await asyncio.to_thread(EventStore, settings.event_store_url, key, settings.sqlite_busy_timeout_ms)
        if sealed := await asyncio.to_thread(store.seal_unsealed):
            log.warning("customer keys: sealed the contact data of %d events stored before per-customer keys "
                        "existed (a one-time upgrade)", sealed)
        if chained := await asyncio.to_thread(store.chain_unchained):
            log.warning("hash chain: chained the %d events stored before the chain existed (a one-time upgrade; "
                        "`ticketing audit verify` checks it)", chained)
        if await asyncio.to_thread(adopt, store.engine, sla_policy.text, clock()):
            log.info("SLA policy %s... recorded as in force from now", sla_policy.digest[:12])
        readmodels = make_engine(settings.read_model_url, settings.sqlite_busy_timeout_ms)
        nc = await connect_nats(nats_url, settings)
        js = nc.jetstream()
        await ensure_streams(js, settings.stream_replicas)
        user_consumers = UserConsumers(js, directory)
        await user_consumers.keep()  # before anyone is answered: the consumers a user may read are there
        loop = asyncio.get_running_loop()

        def committed() -> None:  # on the writer's thread
            loop.call_soon_threadsafe(lambda: loop.create_task(_publish_quietly(nc, WAKE_SUBJECT)))

        writer: GroupCommitWriter[Any] = GroupCommitWriter(
            CommandBatches(store), expected_errors=(DomainError,), on_commit=committed,
            max_batch=settings.writer_batch)
        writer.start()
        # Our own logger, so the CLI's levels apply: FastStream's default one
        # sets its own level and logs every consumer task at INFO.
        # apply_types=False: handlers take the raw body and parse it themselves
        # (a `validation_error` detail per field), so FastStream's argument
        # injection would only cost time on every message.
        responder = product_options(settings, responder=True)
        tls = responder.pop("tls", None)
        responders_said = ConnectionLog("ticketing-responders")
        broker = NatsBroker(servers(nats_url), logger=logging.getLogger("ticketing.bus"), apply_types=False,
                            log_level=logging.DEBUG, max_reconnect_attempts=-1, name="ticketing-responders",
                            drain_timeout=STOP_DRAIN_SECONDS,
                            **responders_said.callbacks(),
                            security=BaseSecurity(ssl_context=tls) if tls else None, **responder)
        commands = CommandService(store, writer, clock, directory, compensation_limit=settings.compensation_limit)
        word = WorkerWord()
        runtime = Runtime(settings, nats_url, store, readmodels, nc, js, broker, writer, directory, Seal(key),
                          signer, embedded=embedded, worker_word=word, only_instance=only_instance)
        cluster = None
        if readmodels.dialect.name == "postgresql":  # several instances may share it
            instances = Instances(readmodels, settings.instance_name)
            leases = Leases(readmodels, settings.lease_seconds, create=False)
            runtime.tasks.append(asyncio.create_task(instances.run(), name="instances"))

            def cluster() -> tuple[list[Any], list[Any]]:
                return instances.up(), leases.holders()
        health = HealthCheck(store, readmodels, nc, js, [p.name for p in projections(sla_policy)],
                             runtime.worker_status, cluster)
        queries = QueryService(store, clock, readmodels, sla_policy, ZoneInfo(settings.timezone), danger_rules,
                               directory, health.report,
                               lambda: audit_report(store, js, signer.public_key, settings.data_dir),
                               lambda: policy_timeline(store.engine, sla_policy),
                               lambda since, until: case_tracks(store, since, until),
                               assessment_rules, signer.public_key)
        queries.max_reply = nc.max_payload - 4096
        runtime.queries = queries
        include_handlers(broker, queries)
        runtime.responders = CommandResponders(commands, runtime.metrics.observe_command)
        runtime.tasks.append(asyncio.create_task(keep_fresh(runtime.metrics, health.report, runtime.worker_status),
                                                 name="health"))
        runtime.tasks.append(asyncio.create_task(user_consumers.run(), name="users' consumers"))
        if settings.metrics_port:
            runtime.http = serve_http(runtime.metrics, settings.metrics_port)
        if embedded is not None:
            runtime.tasks.append(asyncio.create_task(runtime.supervise_nats(), name="nats-server"))
        if worker == "inline":
            runtime.worker = await start_worker(settings, store, readmodels, nc, js, clock, runtime.seal)
        else:
            await word.listen(nc)
            runtime.tasks.append(asyncio.create_task(runtime.supervise_worker(), name="worker"))
            # ready means relayed and projected, not only answered
            waits = [asyncio.ensure_future(event.wait()) for event in (runtime.worker_ready, stop) if event]
            done, _ = await asyncio.wait(waits, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
            if not done:
                log.warning("the worker process is not ready after 60s; going on without waiting")
        await broker.start()
        responders_said.connection = broker.connection
        await runtime.responders.start(broker.connection)
        # A round trip, so the server has every subscription before we say we
        # are ready (a request sent right after would otherwise get "no
        # responders"). Twice: measured here, nats-py's first flush on a new
        # connection sometimes returns before the server has read what
        # preceded it (about 1 start in 10); the second never did.
        for _ in range(2):
            await broker.connection.flush(timeout=10)
        if console_credentials is not None:
            runtime.console = await start_console(settings, nats_url, directory, console_credentials,
                                                  case_bundle(store, js, signer, settings.data_dir))
    except BaseException:
        if embedded is not None:
            embedded.stop()
        if only_instance is not None:
            only_instance.close()
        raise
    return runtime


async def audit_report(store: EventStore, js: JetStreamContext, key: str, data_dir: Path) -> AuditVerifyReply:
    """The `audit.verify` query: the whole chain, with the anchors NATS holds
    (or, when it cannot be read, those kept in the data directory)."""
    notes = []
    try:
        anchors = await read_anchors(js)
    except Exception as error:  # noqa: BLE001 - the chain is still worth checking
        anchors = read_anchor_file(data_dir / ANCHOR_FILE) if (data_dir / ANCHOR_FILE).exists() else []
        notes = [f"the anchors on the bus were not read ({type(error).__name__}); those kept in the data "
                 f"directory were"]
    verdict = await asyncio.to_thread(verify, store, anchors, key)
    return AuditVerifyReply.model_validate(verdict.as_dict() | {"notes": [*verdict.notes, *notes]})


async def _publish_quietly(nc: Nats, subject: str) -> None:
    with contextlib.suppress(Exception):  # a lost wake-up costs at most the relay's poll
        await nc.publish(subject, b"")
