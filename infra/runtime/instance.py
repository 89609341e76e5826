"""A running instance: what `infra.bootstrap.start` hands back (the store, the
bus, the responders, the worker's processes, the console) and how it stops,
each part in the order nothing is lost; and the data directory's lock that
keeps a second instance off SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import subprocess
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from faststream.nats import NatsBroker
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from sqlalchemy import Engine

from handlers.bus import CommandResponders
from handlers.queries import QueryService
from infra.auth.directory import UserDirectory
from infra.auth.seal import Seal
from infra.auth.signing import Signer
from infra.bus.nats_server import EmbeddedNats
from infra.bus.projection_runner import ProjectionRunner
from infra.bus.relay import Relay
from infra.common.processes import terminate
from infra.console.server import Console
from infra.runtime.health import WorkerWord, worker_status
from infra.runtime.metrics import Metrics
from infra.runtime.supervision import keep_nats_running, keep_worker_running
from infra.runtime.tasks import end
from infra.runtime.worker import Worker
from infra.settings import Settings
from infra.store.event_store import EventStore
from infra.store.writer import GroupCommitWriter

log = logging.getLogger(__name__)

# At stop the responders finish the requests they hold (a command's reply
# waits for its commit: milliseconds). nats-py's default lets a drain wait
# 30s plus a 10s flush; CI once saw a stop after a revived nats-server
# outlast 30s. Past this, what is left is closed without waiting.
STOP_DRAIN_SECONDS = 5


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
    signer: Signer
    """The product's audit key: signs anchors, alerts and bundles."""
    embedded: EmbeddedNats | None = None
    worker: Worker | None = None
    """The relay and projections when they run in this process."""
    worker_processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    """The worker's processes, by part, when they run apart."""
    worker_ready: asyncio.Event = field(default_factory=asyncio.Event)
    worker_word: WorkerWord = field(default_factory=WorkerWord)
    """What the worker process last said of its parts."""
    metrics: Metrics = field(default_factory=Metrics)
    http: ThreadingHTTPServer | None = None
    console: Console | None = None
    """The web console, when it runs here."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    queries: QueryService | None = None
    responders: CommandResponders | None = None
    """The command subjects' (on the responders' connection, the broker's)."""
    only_instance: IO[bytes] | None = None
    """On SQLite: the data directory's lock, held while this instance runs (`sole_writer`)."""

    def worker_status(self) -> dict[str, Any] | None:
        return worker_status(self.worker) if self.worker is not None else self.worker_word.current()

    @property
    def relay(self) -> Relay:
        assert self.worker is not None and self.worker.relay is not None, "the relay runs in a worker process"
        return self.worker.relay

    @property
    def projector(self) -> ProjectionRunner:
        assert self.worker is not None and self.worker.projector is not None, \
            "the projections run in a worker process"
        return self.worker.projector

    async def supervise_worker(self) -> None:
        await keep_worker_running(self)

    async def supervise_nats(self) -> None:
        await keep_nats_running(self)

    async def stop(self) -> None:
        if self.console is not None:
            await self.console.stop()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        if self.responders is not None:  # the commands in hand answered before the connection goes
            await self.responders.stop(STOP_DRAIN_SECONDS)
        # A task, not wait_for: nats-py's drain swallows the cancellation
        # wait_for sends at its timeout, and wait_for then waits for ever.
        draining = asyncio.create_task(self.broker.stop(), name="responders")
        await end([draining], grace=STOP_DRAIN_SECONDS * 2)
        if draining.cancelled() or not draining.done() or draining.exception() is not None:
            # stopping while NATS is away: nothing left to drain
            log.info("the responders stopped without draining")
            with contextlib.suppress(Exception):  # not connected: nothing to close
                await asyncio.wait_for(self.broker.connection.close(), STOP_DRAIN_SECONDS)
        await end(self.tasks)
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
        await asyncio.gather(*(asyncio.to_thread(terminate, process) for process in self.worker_processes.values()))
        if self.embedded is not None:
            self.embedded.stop()
            self.settings.nats_url_file.unlink(missing_ok=True)  # nobody serves there any more
        if self.only_instance is not None:
            self.only_instance.close()


def sole_writer(data_dir: Path) -> IO[bytes]:
    """The data directory's instance lock (held until closed, or until the
    process ends): SQLite takes one writer, so a second instance on the same
    files is refused at start, in one line."""
    lock = (data_dir / "serve.lock").open("ab")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise SystemExit(f"another instance of the product runs on {data_dir} (SQLite takes one writer): stop it, "
                         f"or run several instances on PostgreSQL (TICKETING_DATABASE_URL)") from None
    return lock
