"""What the product's alert raisers share (the SLA monitor, the
dangerous-customer monitor): the JetStream stream alerts go to, publishing
an alert once under a key, and a timer that looks at a read model on an
injected clock once the read model has caught up with the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

import orjson
from eventsourcing.persistence import PersistenceError
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from contracts.alerts import ALERT_STREAM
from contracts.catalog import PREFIX, alert_subject
from infra.auth.signing import Signer
from infra.bus.streams import ensure_stream
from infra.common.part_state import PartState
from infra.runtime.clock import Clock
from projections.base import Fence, Fenced, marks_of
from projections.writing import written

log = logging.getLogger(__name__)

ALERT_NAMESPACE = UUID("5f0c8a3e-2b7d-4c1e-9e6a-8d3b1f4a7c20")
DUPLICATE_WINDOW_SECONDS = 24 * 3600.0
CATCH_UP_SECONDS = 2.0
"""The longest a tick waits for the read model to catch up before looking anyway."""
CATCH_UP_POLL_SECONDS = 0.05
"""How often a waiting tick asks the read model how far it is (each a read
in a thread: at 20 ms, under load, most of the monitors' CPU)."""


async def ensure_alert_stream(js: JetStreamContext, replicas: int = 1) -> None:
    await ensure_stream(js, StreamConfig(name=ALERT_STREAM, subjects=[f"{PREFIX}.alerts.>"],
                                         storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW_SECONDS,
                                         num_replicas=replicas))


def alert_id(key: str) -> UUID:
    """An alert's id, the same for every copy of it."""
    return uuid5(ALERT_NAMESPACE, key)


class AlertTimer:
    """Ticks every `tick_seconds`; each tick waits until the projection has
    applied everything the store held when it began, then runs `look(now)`
    with the clock's now. Subclasses say what to look at."""

    name = "alerts"

    def __init__(self, engine: Engine, js: JetStreamContext, clock: Clock, *, store_position: Callable[[], int],
                 projection: str, tick_seconds: float, signer: Signer) -> None:
        self.engine = engine
        self.js = js
        self.signer = signer
        """Signs every alert (a subscriber checks it with the public audit key: no one else can forge one)."""
        self.fence: Fence | None = None
        """Checked in every write of its ledger when the part runs under a lease (`infra.cluster`)."""
        self.fenced: Fenced | None = None
        self.clock = clock
        self.store_position = store_position
        self.projection = projection
        self.tick_seconds = tick_seconds
        self.raised = 0
        self.state = PartState()
        self.refused = False
        """Whether the last alert it published failed (the worker's status says so:
        serve restarts a JetStream whose alerts stream stays refusing)."""
        self._behind = False
        self._db_down = False
        self._stopping = asyncio.Event()
        self._ticking = asyncio.Lock()

    @property
    def durable(self) -> str:  # the name the worker's tasks go by
        return self.name

    def stop(self) -> None:
        self._stopping.set()

    async def prepare(self) -> None:
        """Before the projection's consumer starts."""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            began = loop.time()
            pause = self.tick_seconds
            try:
                await self.tick()
                if self._db_down:
                    self._db_down = False
                    log.warning("%s: the database is back", self.name)
            except Fenced as fenced:  # another holds the lease now: its ledger is not ours to write
                log.warning("%s: %s; stopping", self.name, fenced)
                self.fenced = fenced
                return
            except (DBAPIError, PersistenceError) as error:  # a database away (read models or store): said once
                cause = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
                if not self._db_down:
                    self._db_down = True
                    log.warning("%s: the database is away (%s); ticking on until it is back", self.name, cause)
                self.state.failed(f"database: {cause}")
                pause = max(pause, 1.0)
            except Exception as error:  # noqa: BLE001 - a bad tick must not stop the timer
                self.state.failed(error)
                log.exception("%s: tick failed; trying again", self.name)
                pause = max(pause, 1.0)
            # Ticks begin `tick_seconds` apart (a tick that waited for the read
            # model to catch up under load is followed at once, not a whole
            # pause later: alerts came in bursts every half second then).
            with contextlib.suppress(TimeoutError):  # the pause between ticks, cut short by stop()
                await asyncio.wait_for(self._stopping.wait(), max(0.0, began + pause - loop.time()))

    async def tick(self) -> int:
        """Raise what is due now; returns how many alerts were raised."""
        async with self._ticking:  # one tick at a time: a test may tick besides the loop
            now = self.clock()
            await self._caught_up()
            raised = await self.look(now)
            self.raised += raised
            return raised

    async def look(self, now: datetime) -> int:
        raise NotImplementedError

    async def _caught_up(self) -> None:
        target = await asyncio.to_thread(self.store_position)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + CATCH_UP_SECONDS
        while (await asyncio.to_thread(marks_of, self.engine, self.projection))[0] < target:
            if loop.time() > give_up:
                (log.debug if self._behind else log.warning)(
                    "%s: the read model is behind the store; looking anyway (said again once it caught up)",
                    self.name)
                self._behind = True
                return
            await asyncio.sleep(CATCH_UP_POLL_SECONDS)
        self._behind = False

    async def publish(self, alert: BaseModel, key: str) -> bool:
        """Into the alerts stream under `key` (a copy within the duplicate
        window is dropped); False when the bus is away or the stream refuses
        (said once until an alert goes out again, not per alert and tick)."""
        subject, payload = alert_subject(alert.type), orjson.dumps(alert.model_dump(mode="json"))  # type: ignore[attr-defined]
        try:
            await self.js.publish(subject, payload, stream=ALERT_STREAM,
                                  headers={"Nats-Msg-Id": key, **self.signer.headers(subject, payload)})
        except Exception as error:  # noqa: BLE001 - the bus is away: the next tick tries again
            self.state.failed(error)
            if not self.refused:
                log.warning("%s: publishing alert %s failed (%s: %s); trying again every tick", self.name, key,
                            type(error).__name__, error)
                self.refused = True
            return False
        if self.refused:
            log.warning("%s: alerts go out again", self.name)
            self.refused = False
        return True

    def read(self, query: Callable[..., Any], *args: Any) -> Any:
        with self.engine.connect() as conn:
            return query(conn, *args)

    def write(self, change: Callable[..., Any], *args: Any) -> Any:
        """`change` in a write transaction, fenced when the monitor runs under a lease."""
        def fenced(conn: Any) -> Any:
            if self.fence is not None:
                self.fence(conn)
            return change(conn, *args)
        return written(self.engine, fenced)
