"""Wiring: the one place that builds the parts and hands each what it needs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from eventsourcing.persistence import Notification
from faststream.nats import NatsBroker
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError
from sqlalchemy import Engine

from handlers.bus import include_handlers
from handlers.commands import CommandService
from handlers.queries import QueryService
from handlers.translate import message
from infra.clock import Clock, utc_now
from infra.database import make_engine
from infra.nats_server import EmbeddedNats
from infra.projection_runner import DEADLETTER_STREAM, DEADLETTER_SUBJECTS, ProjectionRunner
from infra.relay import Relay
from infra.settings import Settings
from infra.store import EventStore
from infra.streams import ensure_event_stream
from infra.writer import GroupCommitWriter
from projections.case_summary import CaseSummary
from ticketing.errors import DomainError

log = logging.getLogger(__name__)


def projections() -> list[Any]:
    return [CaseSummary()]


async def connect_nats(url: str) -> Nats:
    return await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                              name="ticketing")


async def ensure_streams(js: JetStreamContext) -> None:
    await ensure_event_stream(js)
    with contextlib.suppress(BadRequestError):
        await js.add_stream(StreamConfig(name=DEADLETTER_STREAM, subjects=[DEADLETTER_SUBJECTS],
                                         storage=StorageType.FILE))


def notification_translator(store: EventStore) -> Callable[[Notification], tuple[str, str, bytes]]:
    def translate(notification: Notification) -> tuple[str, str, bytes]:
        return message(store.mapper.to_domain_event(notification), notification.id)
    return translate


@dataclass
class Runtime:
    settings: Settings
    nats_url: str
    store: EventStore
    readmodels: Engine
    nc: Nats
    js: JetStreamContext
    broker: NatsBroker
    writer: GroupCommitWriter
    relay: Relay
    runners: list[ProjectionRunner]
    embedded: EmbeddedNats | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        self.relay.stop()
        for runner in self.runners:
            runner.stop()
        await self.broker.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.writer.stop()
        # close, not drain: a pending pull request makes drain wait out its
        # timeout, and nothing here is unacknowledged work we would lose.
        with contextlib.suppress(Exception):
            await self.nc.close()
        self.readmodels.dispose()
        self.store.engine.dispose()
        if self.embedded is not None:
            self.embedded.stop()


async def start(settings: Settings, clock: Clock = utc_now, *, run_projections: bool = True) -> Runtime:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedded = None
    nats_url = settings.nats_url
    if not nats_url:
        # Started from this thread on purpose: the child's parent-death signal
        # is tied to the thread that forks it, and a pool thread may exit first.
        embedded = EmbeddedNats.start(settings.data_dir / "nats", settings.nats_port)
        nats_url = embedded.url
    settings.nats_url_file.write_text(nats_url + "\n")
    try:
        store = await asyncio.to_thread(EventStore, settings.event_store_url, None,
                                        settings.sqlite_busy_timeout_ms)
        readmodels = make_engine(settings.read_model_url, settings.sqlite_busy_timeout_ms)
        nc = await connect_nats(nats_url)
        js = nc.jetstream()
        await ensure_streams(js)

        relay = Relay(store, js, notification_translator(store), batch=settings.relay_batch,
                      poll_seconds=settings.relay_poll_seconds)
        writer = GroupCommitWriter(store.transaction, expected_errors=(DomainError,),
                                   on_commit=relay.wake, max_batch=settings.writer_batch)
        writer.start()
        # Our own logger, so the CLI's levels apply: FastStream's default one
        # sets its own level and logs every consumer task at INFO.
        broker = NatsBroker(nats_url, logger=logging.getLogger("ticketing.bus"),
                            log_level=logging.DEBUG, max_reconnect_attempts=-1)
        include_handlers(broker, CommandService(store, writer, clock), QueryService(store, clock))
        runners = [ProjectionRunner(p, readmodels, js) for p in projections()] if run_projections else []
        runtime = Runtime(settings, nats_url, store, readmodels, nc, js, broker, writer, relay, runners,
                          embedded)
        runtime.tasks.append(asyncio.create_task(relay.run(), name="relay"))
        for runner in runners:
            runtime.tasks.append(asyncio.create_task(runner.run(), name=runner.durable))
        await broker.start()
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    return runtime

