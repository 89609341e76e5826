"""Wiring: the one place that builds the parts and hands each what it needs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import ThreadingHTTPServer
from typing import Any, Literal
from zoneinfo import ZoneInfo

import nats
from eventsourcing.persistence import Notification
from faststream.nats import NatsBroker
from faststream.security import BaseSecurity
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError
from sqlalchemy import Engine

from handlers.batch import CommandBatches
from handlers.bus import include_handlers
from handlers.commands import CommandService
from handlers.policies import CallbackPolicy
from handlers.queries import QueryService
from handlers.translate import message
from infra.alerts import ensure_alert_stream
from infra.auth.connect import product_directory, product_options
from infra.auth.directory import UserDirectory
from infra.auth.seal import Seal
from infra.clock import Clock, utc_now
from infra.config_files import load_danger_rules, load_sla_policy
from infra.connection_log import ConnectionLog
from infra.danger_monitor import DangerMonitor
from infra.database import make_engine
from infra.nats_server import EmbeddedNats
from infra.policy_runner import PolicyRunner
from infra.processes import spawn, terminate
from infra.projection_runner import DEADLETTER_STREAM, DEADLETTER_SUBJECTS, ProjectionRunner
from infra.rebuild import ensure_current
from infra.relay import Relay
from infra.runtime.health import HealthCheck, WorkerWord, say_status, worker_status
from infra.runtime.metrics import Metrics, keep_fresh, serve_http
from infra.secrets import cipher_key
from infra.settings import Settings
from infra.sla_monitor import SlaMonitor
from infra.store import EventStore
from infra.streams import ensure_event_stream
from infra.writer import GroupCommitWriter
from projections.activity import Activity
from projections.base import create_tables
from projections.case_summary import CaseSummary
from projections.danger import DangerousCustomers
from projections.sla import SlaLimits
from ticketing.errors import DomainError
from ticketing.sla.policy import SlaPolicy

log = logging.getLogger(__name__)


def projections(policy: SlaPolicy) -> list[Any]:
    return [CaseSummary(), SlaLimits(policy), Activity(), DangerousCustomers()]


async def connect_nats(url: str, settings: Settings, name: str = "ticketing") -> Nats:
    """The product's own connection (identity `system`)."""
    return await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.5, name=name,
                              **ConnectionLog(name).callbacks(), **product_options(settings))


async def ensure_streams(js: JetStreamContext) -> None:
    await ensure_event_stream(js)
    await ensure_alert_stream(js)
    with contextlib.suppress(BadRequestError):
        await js.add_stream(StreamConfig(name=DEADLETTER_STREAM, subjects=[DEADLETTER_SUBJECTS],
                                         storage=StorageType.FILE))


def notification_translator(store: EventStore) -> Callable[[Notification], tuple[str, str, bytes]]:
    def translate(notification: Notification) -> tuple[str, str, bytes]:
        return message(store.mapper.to_domain_event(notification), notification.id)
    return translate


JETSTREAM_PATIENCE_SECONDS = 15.0


class JetStreamWatch:
    """Whether the embedded server's JetStream is stuck while the connection
    is up: it stops answering, or it answers but the relay's publishes keep
    failing with the store ahead (nats-server leaves a stream that hit a full
    disk failing every write until it restarts, even once space is back)."""

    def __init__(self, js: JetStreamContext, head: Callable[[], int],
                 worker: Callable[[], dict[str, Any] | None], every: float = 2.0) -> None:
        self.js = js
        self.head = head
        self.worker = worker
        self.every = every
        self._asked = 0.0
        self._silent_since: float | None = None
        self._relay_at: tuple[int, float] | None = None

    async def trouble(self, connected: bool) -> str | None:
        """What is wrong, once it has lasted `JETSTREAM_PATIENCE_SECONDS`; None when all is well."""
        now = asyncio.get_running_loop().time()
        if not connected:
            self._silent_since = self._relay_at = None  # reconnecting: that is another story
            return None
        if now - self._asked < self.every:
            return None
        self._asked = now
        try:
            await asyncio.wait_for(self.js.account_info(), 2.0)
            self._silent_since = None
        except Exception:  # noqa: BLE001 - not answering, for whatever reason
            self._silent_since = self._silent_since or now
            if now - self._silent_since >= JETSTREAM_PATIENCE_SECONDS:
                return "has not answered"
        relay = (self.worker() or {}).get("relay")
        head = await asyncio.to_thread(self.head)
        if not relay or relay["position"] >= head or not relay.get("last_error"):
            self._relay_at = None
            return None
        if self._relay_at is None or self._relay_at[0] != relay["position"]:
            self._relay_at = (relay["position"], now)
            return None
        if now - self._relay_at[1] >= JETSTREAM_PATIENCE_SECONDS:
            return f"refused every event for the stream ({relay['last_error']})"
        return None


WORKER_READY_SUBJECT = "ticketing.internal.worker.ready"
WAKE_SUBJECT = "ticketing.internal.committed"
"""Published (empty, core NATS) after each group commit, to wake the relay
wherever it runs; not part of the public v1 interface."""


@dataclass
class Worker:
    """The relay, the projections, the policies and the SLA monitor:
    everything that reads the store or the stream after commands have
    committed."""

    relay: Relay
    runners: list[ProjectionRunner]
    policies: list[PolicyRunner]
    sla: SlaMonitor
    danger: DangerMonitor
    tasks: list[asyncio.Task[None]]
    wake: Any

    async def stop(self) -> None:
        self.relay.stop()
        for runner in [*self.runners, *self.policies, self.sla, self.danger]:
            runner.stop()
        with contextlib.suppress(Exception):
            await self.wake.unsubscribe()
        done, pending = await asyncio.wait(self.tasks, timeout=5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def start_worker(settings: Settings, store: EventStore, readmodels: Engine, nc: Nats,
                       js: JetStreamContext, clock: Clock, seal: Seal) -> Worker:
    relay = Relay(store, js, notification_translator(store), seal, batch=settings.relay_batch,
                  poll_seconds=settings.relay_poll_seconds)

    async def wake(_msg: Any) -> None:
        relay.wake()

    subscription = await nc.subscribe(WAKE_SUBJECT, cb=wake)
    sla_policy = load_sla_policy(settings)
    chosen = projections(sla_policy)
    for projection in chosen:
        await asyncio.to_thread(ensure_current, store, readmodels, projection)
        await asyncio.to_thread(create_tables, readmodels, projection)
    runners = [ProjectionRunner(p, readmodels, js, seal) for p in chosen]
    policies = [PolicyRunner(policy, nc, js, seal) for policy in policies_for(settings, store, sla_policy)]
    sla = SlaMonitor(readmodels, sla_policy, nc, js, clock, store_position=store.max_position,
                     tick_seconds=settings.sla_tick_seconds)
    danger = DangerMonitor(readmodels, load_danger_rules(settings), js, clock, store_position=store.max_position,
                           tick_seconds=settings.danger_tick_seconds)
    for timer in (sla, danger):
        await timer.prepare()  # before the projections' consumers start
    tasks = [asyncio.create_task(relay.run(), name="relay"),
             *(asyncio.create_task(task.run(), name=task.durable) for task in [*runners, *policies, sla, danger])]
    return Worker(relay, runners, policies, sla, danger, tasks, subscription)


def policies_for(settings: Settings, store: EventStore, sla_policy: SlaPolicy) -> list[Any]:
    return [CallbackPolicy(store.repository.get, delay=timedelta(hours=settings.callback_delay_hours),
                           max_attempts=settings.callback_max_attempts, sla=sla_policy)]


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """The worker alone, until `stop` is set: `ticketing worker`."""
    nats_url = settings.nats_url or settings.nats_url_file.read_text().strip()
    key = cipher_key(settings)
    store = await asyncio.to_thread(EventStore, settings.event_store_url, key, settings.sqlite_busy_timeout_ms)
    readmodels = make_engine(settings.read_model_url, settings.sqlite_busy_timeout_ms)
    nc = await connect_nats(nats_url, settings, "ticketing-worker")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        worker = await start_worker(settings, store, readmodels, nc, js, utc_now, Seal(key))
        await nc.publish(WORKER_READY_SUBJECT, b"")
        await say_status(nc, worker, stop)
        await worker.stop()
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
        readmodels.dispose()
        store.engine.dispose()


@dataclass
class Runtime:
    settings: Settings
    nats_url: str
    store: EventStore
    readmodels: Engine
    nc: Nats
    js: JetStreamContext
    broker: NatsBroker
    writer: GroupCommitWriter[Any]
    directory: UserDirectory
    seal: Seal
    embedded: EmbeddedNats | None = None
    worker: Worker | None = None
    """The relay and projections when they run in this process."""
    worker_process: subprocess.Popen[bytes] | None = None
    worker_ready: asyncio.Event = field(default_factory=asyncio.Event)
    worker_word: WorkerWord = field(default_factory=WorkerWord)
    """What the worker process last said of its parts."""
    metrics: Metrics = field(default_factory=Metrics)
    http: ThreadingHTTPServer | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def worker_status(self) -> dict[str, Any] | None:
        return worker_status(self.worker) if self.worker is not None else self.worker_word.current()

    @property
    def relay(self) -> Relay:
        assert self.worker is not None, "the relay runs in the worker process"
        return self.worker.relay

    @property
    def runners(self) -> list[ProjectionRunner]:
        return self.worker.runners if self.worker else []

    async def supervise_worker(self) -> None:
        """Run `ticketing worker` as a child, started again if it dies."""
        args = [sys.executable, "-m", "infra.cli", "worker"]
        env = os.environ | self.settings.as_env(nats_url=self.nats_url)

        async def ready(_msg: Any) -> None:
            self.worker_ready.set()

        await self.nc.subscribe(WORKER_READY_SUBJECT, cb=ready)
        await self.nc.flush()
        while True:
            self.worker_process = spawn(args, env=env)
            while (code := self.worker_process.poll()) is None:
                await asyncio.sleep(0.5)
            log.warning("the worker process exited with %s; starting it again", code)
            await asyncio.sleep(1.0)

    async def supervise_nats(self, every: float = 0.5) -> None:
        """Start the embedded nats-server again whenever it dies, on the same
        port (every client reconnects to the URL it holds); said once per
        change of state, not per failed attempt."""
        assert self.embedded is not None
        server = self.embedded
        jetstream = JetStreamWatch(self.js, self.store.max_position, self.worker_status)
        while True:
            await asyncio.sleep(every)
            trouble = await jetstream.trouble(self.nc.is_connected) if server.alive else None
            if server.alive and trouble is None:
                continue
            if server.alive:
                log.error("the embedded nats-server's JetStream %s for %.0fs (its store was full, say): restarting "
                          "the server on %s", trouble, JETSTREAM_PATIENCE_SECONDS, server.url)
                await asyncio.to_thread(server.stop)
            else:
                code = server.process.returncode if server.process else None
                log.error("the embedded nats-server died (exit %s): starting it again on %s", code, server.url)
            failed_before = False
            while True:
                try:
                    await server.revive()
                    break
                except (RuntimeError, OSError) as error:
                    if not failed_before:
                        log.error("the embedded nats-server does not start again (%s); retrying every 2s", error)
                        failed_before = True
                    await asyncio.sleep(2.0)
            log.warning("the embedded nats-server is back on %s", server.url)
            jetstream = JetStreamWatch(self.js, self.store.max_position, self.worker_status)

    async def stop(self) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        try:
            await self.broker.stop()
        except Exception as error:  # noqa: BLE001 - stopping while NATS is away: nothing left to drain
            log.info("the responders stopped without NATS (%s)", type(error).__name__)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.writer.stop()
        log.info("command writer: %d commands in %d transactions", self.writer.jobs, self.writer.batches)
        if self.worker is not None:
            await self.worker.stop()
        # close, not drain: a pending pull request makes drain wait out its
        # timeout, and nothing here is unacknowledged work we would lose.
        with contextlib.suppress(Exception):
            await self.nc.close()
        self.readmodels.dispose()
        self.store.engine.dispose()
        await asyncio.to_thread(terminate, self.worker_process)
        if self.embedded is not None:
            self.embedded.stop()
            self.settings.nats_url_file.unlink(missing_ok=True)  # nobody serves there any more


async def start(settings: Settings, clock: Clock = utc_now, *, worker: Literal["inline", "process"] = "inline",
                ) -> Runtime:
    """Start the product. The command side (handlers and the group-commit
    writer) runs here; the worker (relay and projections) runs here too, or,
    with `worker="process"` as `serve` does, in a child process of its own
    (`ticketing worker`). They share nothing but the store, the bus and the
    read model database, so on a multi-core machine the worker no longer
    competes with command handling for one interpreter; a commit wakes the
    relay over the bus either way."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    sla_policy = load_sla_policy(settings)  # a file with an error is refused before anything starts
    danger_rules = load_danger_rules(settings)
    embedded = None
    nats_url = settings.nats_url
    directory = product_directory(settings)
    if not nats_url:
        # Started from this thread on purpose: the child's parent-death signal
        # is tied to the thread that forks it, and a pool thread may exit first.
        embedded = EmbeddedNats.start(settings.data_dir / "nats", directory, settings.nats_port,
                                      max_file_store=settings.nats_max_file_store)
        nats_url = embedded.url
    settings.nats_url_file.write_text(nats_url + "\n")
    try:
        key = await asyncio.to_thread(cipher_key, settings, create=True)
        store = await asyncio.to_thread(EventStore, settings.event_store_url, key, settings.sqlite_busy_timeout_ms)
        readmodels = make_engine(settings.read_model_url, settings.sqlite_busy_timeout_ms)
        nc = await connect_nats(nats_url, settings)
        js = nc.jetstream()
        await ensure_streams(js)
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
        broker = NatsBroker(nats_url, logger=logging.getLogger("ticketing.bus"), apply_types=False,
                            log_level=logging.DEBUG, max_reconnect_attempts=-1, name="ticketing-responders",
                            **ConnectionLog("ticketing-responders").callbacks(),
                            security=BaseSecurity(ssl_context=tls) if tls else None, **responder)
        commands = CommandService(store, writer, clock, directory, compensation_limit=settings.compensation_limit)
        word = WorkerWord()
        runtime = Runtime(settings, nats_url, store, readmodels, nc, js, broker, writer, directory, Seal(key),
                          embedded, worker_word=word)
        health = HealthCheck(store, readmodels, nc, js, [p.name for p in projections(sla_policy)],
                             runtime.worker_status)
        include_handlers(broker, commands, QueryService(store, clock, readmodels, sla_policy,
                                                        ZoneInfo(settings.timezone), danger_rules, directory,
                                                        health.report),
                         observe=runtime.metrics.observe_command)
        runtime.tasks.append(asyncio.create_task(keep_fresh(runtime.metrics, health.report, runtime.worker_status),
                                                 name="health"))
        if settings.metrics_port:
            runtime.http = serve_http(runtime.metrics, settings.metrics_port)
        if embedded is not None:
            runtime.tasks.append(asyncio.create_task(runtime.supervise_nats(), name="nats-server"))
        if worker == "inline":
            runtime.worker = await start_worker(settings, store, readmodels, nc, js, clock, runtime.seal)
        else:
            await word.listen(nc)
            runtime.tasks.append(asyncio.create_task(runtime.supervise_worker(), name="worker"))
            try:  # ready means relayed and projected, not only answered
                await asyncio.wait_for(runtime.worker_ready.wait(), 60)
            except TimeoutError:
                log.warning("the worker process is not ready after 60s; going on without waiting")
        await broker.start()
        # A round trip, so the server has every subscription before we say we
        # are ready (a request sent right after would otherwise get "no
        # responders"). Twice: measured here, nats-py's first flush on a new
        # connection sometimes returns before the server has read what
        # preceded it (about 1 start in 10); the second never did.
        for _ in range(2):
            await broker.connection.flush(timeout=10)
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    return runtime


async def _publish_quietly(nc: Nats, subject: str) -> None:
    with contextlib.suppress(Exception):  # a lost wake-up costs at most the relay's poll
        await nc.publish(subject, b"")
