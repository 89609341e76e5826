"""The worker: the relay, the projections, the policies and the monitors,
everything that reads the store or the stream after commands have
committed. `serve` runs it as a child process (`ticketing worker`), or, in
tests, in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from eventsourcing.persistence import Notification
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from sqlalchemy import Engine

from contracts.catalog import event_subject
from handlers.policies import CallbackPolicy
from infra.auth.seal import Seal
from infra.auth.signing import Signer
from infra.bus.anchors import ANCHOR_FILE, Anchoring, ensure_audit_stream
from infra.bus.connection import connect_nats
from infra.bus.projection_runner import DEADLETTER_STREAM, DEADLETTER_SUBJECTS, ProjectionRunner
from infra.bus.relay import Relay
from infra.bus.streams import ensure_event_stream, ensure_stream
from infra.cluster.leases import Keeper, Leases, cut_off_when_stalled
from infra.config_files import load_danger_rules, load_sla_policy
from infra.monitors.alerts import ensure_alert_stream
from infra.monitors.danger_monitor import DangerMonitor
from infra.monitors.policy_runner import PolicyRunner
from infra.monitors.sla_monitor import SlaMonitor
from infra.runtime import collector
from infra.runtime.clock import Clock, utc_now
from infra.runtime.health import say_status
from infra.runtime.parts import PARTS
from infra.runtime.tasks import end
from infra.settings import Settings
from infra.store.checkpoint import Checkpointer
from infra.store.database import make_engine
from infra.store.event_store import EventStore
from infra.store.fast_read import fast_envelope
from infra.store.rebuild import ensure_current
from infra.store.secrets import cipher_key
from projections.activity import Activity
from projections.base import UTC_ZONE, Fence
from projections.case_summary import CaseSummary
from projections.danger import DangerousCustomers
from projections.sla import SlaLimits
from projections.staff import StaffFigures
from projections.writing import written
from ticketing.sla.policy import SlaPolicy

log = logging.getLogger(__name__)


def projections(policy: SlaPolicy, zone: ZoneInfo = UTC_ZONE) -> list[Any]:
    """Every read model; the day counters kept in the department's time zone."""
    return [CaseSummary(), SlaLimits(policy, zone), Activity(zone), DangerousCustomers(), StaffFigures(zone)]


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Every stream of the product, with `replicas` copies (TICKETING_STREAM_REPLICAS: 3 on a cluster of
    three); a stream that exists with another count is brought to it."""
    await ensure_event_stream(js, replicas)
    await ensure_alert_stream(js, replicas)
    await ensure_audit_stream(js, replicas)
    await ensure_stream(js, StreamConfig(name=DEADLETTER_STREAM, subjects=[DEADLETTER_SUBJECTS],
                                         storage=StorageType.FILE, num_replicas=replicas))


def notification_translator(store: EventStore) -> Callable[[Notification, Any], tuple[str, str, bytes]]:
    """(subject, Nats-Msg-Id, payload) of a stored event, read straight from
    its stored JSON (`fast_envelope`: the domain path's output, held equal to
    it by a property test, at a third of its cost), with its chain link."""
    def translate(notification: Notification, link: Any) -> tuple[str, str, bytes]:
        env = fast_envelope(store, notification)
        if link:
            env["hash"], env["previous_hash"] = link.hash, link.previous_hash
        return event_subject(env["aggregate_type"], env["type"].split(".", 1)[1]), env["id"], orjson.dumps(env)
    return translate


WORKER_READY_SUBJECT = "ticketing.internal.worker.ready"
WAKE_SUBJECT = "ticketing.internal.committed"
"""Published (empty, core NATS) after each group commit, to wake the relay
wherever it runs; not part of the public v1 interface."""


@dataclass
class Worker:
    """What this process runs of the worker's parts (`PARTS`): the relay,
    the projections, the policies and the monitors, everything that reads
    the store or the stream after commands have committed."""

    parts: tuple[str, ...]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    projector: ProjectionRunner | None = None
    checkpointer: Checkpointer | None = None
    relay: Relay | None = None
    policies: list[PolicyRunner] = field(default_factory=list)
    sla: SlaMonitor | None = None
    danger: DangerMonitor | None = None
    anchoring: Anchoring | None = None
    wake: Any = None

    @property
    def monitors(self) -> list[SlaMonitor | DangerMonitor]:
        return [m for m in (self.sla, self.danger) if m is not None]

    def fenced(self) -> bool:
        """Whether a write of one of its parts was refused: another holds their lease now."""
        return any(runner.fenced is not None for runner in [*([self.projector] if self.projector else []),
                                                           *self.monitors])

    async def stop(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        for runner in [self.projector, *self.policies, *self.monitors, self.anchoring, self.checkpointer]:
            if runner is not None:
                runner.stop()
        if self.wake is not None:
            with contextlib.suppress(Exception):
                await self.wake.unsubscribe()
        await end(self.tasks, grace=5)


async def start_worker(settings: Settings, store: EventStore, readmodels: Engine, nc: Nats,
                       js: JetStreamContext, clock: Clock, seal: Seal, parts: tuple[str, ...] = PARTS,
                       fence: Fence | None = None) -> Worker:
    """Start the `parts` of the worker here. The projections' part first
    brings the read models up to date with the code and the SLA policy
    (before its consumer starts); `serve` starts the other parts once the
    projections' is ready, so the monitors never look at models not yet
    counted against the policy."""
    worker = Worker(tuple(parts))
    sla_policy = load_sla_policy(settings)
    if "projections" in parts:
        chosen = projections(sla_policy, ZoneInfo(settings.timezone))
        await asyncio.to_thread(ensure_current, store, readmodels, chosen)
        changed = await asyncio.to_thread(written, readmodels, SlaLimits(sla_policy).retarget)
        if changed:
            log.info("%d running SLA limits now count against the current policy", changed)
        worker.checkpointer = Checkpointer(readmodels)
        worker.projector = ProjectionRunner(chosen, readmodels, js, seal,
                                            linger=settings.projection_linger_seconds)
        worker.projector.fence = fence
    if "relay" in parts:
        relay = worker.relay = Relay(store, js, notification_translator(store), seal, batch=settings.relay_batch,
                                     poll_seconds=settings.relay_poll_seconds)

        async def wake(_msg: Any) -> None:
            relay.wake()

        worker.wake = await nc.subscribe(WAKE_SUBJECT, cb=wake)
        worker.anchoring = Anchoring(store.links, store.chain_head, js, Signer.of_file(settings.audit_key_file),
                                     settings.audit_anchor_seconds, kept=settings.data_dir / ANCHOR_FILE)
        worker.tasks += [asyncio.create_task(relay.run(), name="relay"),
                         asyncio.create_task(worker.anchoring.run(), name="anchors")]
    if "monitors" in parts:
        worker.policies = [PolicyRunner(policy, nc, js, seal) for policy in policies_for(settings, store, sla_policy)]
        signer = Signer.of_file(settings.audit_key_file)
        worker.sla = SlaMonitor(readmodels, sla_policy, nc, js, clock, store_position=store.max_position,
                                tick_seconds=settings.sla_tick_seconds, signer=signer)
        worker.danger = DangerMonitor(readmodels, load_danger_rules(settings), js, clock,
                                      store_position=store.max_position, tick_seconds=settings.danger_tick_seconds,
                                      signer=signer)
        for timer in worker.monitors:
            timer.fence = fence
            await timer.prepare()  # before the projections' consumers start (when they run here)
    if worker.checkpointer is not None:
        worker.tasks.append(asyncio.create_task(worker.checkpointer.run(), name="checkpoints"))
    worker.tasks += [asyncio.create_task(task.run(), name=task.durable)
                     for task in [*([worker.projector] if worker.projector else []), *worker.policies,
                                  *worker.monitors]]
    return worker


def policies_for(settings: Settings, store: EventStore, sla_policy: SlaPolicy) -> list[Any]:
    return [CallbackPolicy(store.repository.get, delay=timedelta(hours=settings.callback_delay_hours),
                           max_attempts=settings.callback_max_attempts, sla=sla_policy)]


async def run_worker(settings: Settings, stop: asyncio.Event, parts: tuple[str, ...] = PARTS) -> None:
    """The worker's `parts` alone, until `stop` is set: `ticketing worker`.
    On PostgreSQL, where several instances may run, only while this process
    holds the parts' lease (`infra.cluster`): standing by until it is free,
    every write fenced by its epoch, standing by again if it is lost."""
    nats_url = settings.nats_url or settings.nats_url_file.read_text().strip()
    key = cipher_key(settings)
    store = await asyncio.to_thread(EventStore, settings.event_store_url, key, settings.sqlite_busy_timeout_ms)
    readmodels = make_engine(settings.read_model_url, settings.sqlite_busy_timeout_ms)
    nc = await connect_nats(nats_url, settings, "ticketing-worker")
    try:
        js = nc.jetstream()
        await ensure_streams(js, settings.stream_replicas)
        collector.started()
        if readmodels.dialect.name != "postgresql":
            await _run_parts(settings, store, readmodels, nc, js, key, parts, stop)
            return
        name = "+".join(parts)
        cut_off_when_stalled(readmodels, settings.lease_seconds)
        keeper = Keeper(Leases(readmodels, settings.lease_seconds), name, f"{settings.instance_name}/{name}")
        await nc.publish(WORKER_READY_SUBJECT, orjson.dumps(parts))  # standing by is ready too
        while await keeper.hold(stop) is not None:
            await _run_parts(settings, store, readmodels, nc, js, key, parts, stop, keeper)
        keeper.release()
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
        readmodels.dispose()
        store.engine.dispose()


async def _run_parts(settings: Settings, store: EventStore, readmodels: Engine, nc: Nats, js: JetStreamContext,
                     key: str, parts: tuple[str, ...], stop: asyncio.Event, keeper: Keeper | None = None) -> None:
    """The parts, until `stop`, or until the lease `keeper` keeps is lost or
    one of their writes is fenced (then they stop, and the caller stands by)."""
    worker = await start_worker(settings, store, readmodels, nc, js, utc_now, Seal(key), parts,
                                fence=keeper.leases.fence(keeper.held) if keeper and keeper.held else None)
    await nc.publish(WORKER_READY_SUBJECT, orjson.dumps(worker.parts))
    ended = asyncio.Event()
    watchers = [asyncio.create_task(say_status(nc, worker, ended), name="status")]
    if keeper is not None:
        async def lost() -> None:
            await keeper.keep(ended)  # returns once the lease is lost, or the parts ended
            ended.set()
        async def fenced() -> None:
            while not ended.is_set() and not worker.fenced():
                await asyncio.sleep(0.2)
            ended.set()
        watchers += [asyncio.create_task(lost(), name="lease"), asyncio.create_task(fenced(), name="fenced")]
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([stopping, asyncio.create_task(ended.wait())], return_when=asyncio.FIRST_COMPLETED)
    ended.set()
    stopping.cancel()
    await worker.stop()
    await end(watchers, grace=2)
