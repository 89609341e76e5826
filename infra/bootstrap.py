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
from typing import Any, Literal

import nats
from eventsourcing.persistence import Notification
from faststream.nats import NatsBroker
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError
from sqlalchemy import Engine

from handlers.bus import include_handlers
from handlers.commands import CommandBatches, CommandService
from handlers.queries import QueryService
from handlers.translate import message
from infra.clock import Clock, utc_now
from infra.database import make_engine
from infra.nats_server import EmbeddedNats
from infra.processes import spawn, terminate
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
    projections_process: subprocess.Popen[bytes] | None = None

    async def supervise_projections(self) -> None:
        """Run `ticketing projections run` as a child, started again if it dies."""
        args = [sys.executable, "-m", "infra.cli", "projections", "run"]
        env = os.environ | self.settings.as_env(nats_url=self.nats_url)
        while True:
            self.projections_process = spawn(args, env=env)
            while (code := self.projections_process.poll()) is None:
                await asyncio.sleep(0.5)
            log.warning("the projections process exited with %s; starting it again", code)
            await asyncio.sleep(1.0)

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
        await asyncio.to_thread(terminate, self.projections_process)
        if self.embedded is not None:
            self.embedded.stop()


Projections = Literal["inline", "process", "off"]


async def start(settings: Settings, clock: Clock = utc_now, *, projections_in: Projections = "inline",
                ) -> Runtime:
    """Everything but (with `projections_in="process"`) the projections, which
    then run in a child process of their own (`ticketing projections run`):
    they share no state with the command side but the bus and their database,
    and on a multi-core machine they no longer compete with command handling
    for one interpreter."""
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
        writer = GroupCommitWriter(CommandBatches(store), expected_errors=(DomainError,),
                                   on_commit=relay.wake, max_batch=settings.writer_batch)
        writer.start()
        # Our own logger, so the CLI's levels apply: FastStream's default one
        # sets its own level and logs every consumer task at INFO.
        # apply_types=False: handlers take the raw body and parse it themselves
        # (a `validation_error` detail per field), so FastStream's argument
        # injection would only cost time on every message.
        broker = NatsBroker(nats_url, logger=logging.getLogger("ticketing.bus"), apply_types=False,
                            log_level=logging.DEBUG, max_reconnect_attempts=-1)
        include_handlers(broker, CommandService(store, writer, clock), QueryService(store, clock))
        runners = [ProjectionRunner(p, readmodels, js) for p in projections()] \
            if projections_in == "inline" else []
        runtime = Runtime(settings, nats_url, store, readmodels, nc, js, broker, writer, relay, runners,
                          embedded)
        runtime.tasks.append(asyncio.create_task(relay.run(), name="relay"))
        runtime.tasks.extend(start_runners(runners))
        if projections_in == "process":
            runtime.tasks.append(asyncio.create_task(runtime.supervise_projections(), name="projections"))
        await broker.start()
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    return runtime


def start_runners(runners: list[ProjectionRunner]) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(runner.run(), name=runner.durable) for runner in runners]


async def run_projections(settings: Settings, stop: asyncio.Event) -> None:
    """The projections alone, until `stop` is set: `ticketing projections run`."""
    nats_url = settings.nats_url or settings.nats_url_file.read_text().strip()
    readmodels = make_engine(settings.read_model_url, settings.sqlite_busy_timeout_ms)
    nc = await connect_nats(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        runners = [ProjectionRunner(p, readmodels, js) for p in projections()]
        tasks = start_runners(runners)
        await stop.wait()
        for runner in runners:
            runner.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
        readmodels.dispose()

