"""The health report: each part of the product, up or not, how far behind
the store's head it is (in events, and in seconds since the oldest event it
has not dealt with), what it parked and its last error.

The store, NATS and the read models' positions are read by the serving
process itself; what only the worker knows (the relay's position, each
part's last error, alerts raised) it says every second on an internal
subject, and a worker silent for longer than `WORKER_SILENT_SECONDS` is down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import Engine

from contracts.catalog import EVENT_STREAM, PREFIX, PROJECTIONS_CONSUMER
from contracts.health import HealthReply, Part
from infra.bus.projection_runner import DEADLETTER_STREAM
from infra.runtime.parts import PARTS
from infra.store.event_store import EventStore
from projections.base import marks_of

log = logging.getLogger(__name__)

STATUS_SUBJECT = "ticketing.internal.worker.status"
STATUS_EVERY_SECONDS = 1.0
WORKER_SILENT_SECONDS = 5.0


def worker_status(worker: Any) -> dict[str, Any]:
    """What the worker knows of its parts (see `infra.runtime.worker.Worker`):
    of those it runs here."""
    status: dict[str, Any] = {"parts": list(worker.parts)}
    if worker.relay is not None:
        status["relay"] = {"position": worker.relay.position, "published": worker.relay.published,
                           **worker.relay.state.as_dict()}
        status["anchors"] = {"refused": worker.anchoring.refused}
    if "monitors" in worker.parts:
        status["monitors"] = {m.name: {"raised": m.raised, "refused": m.refused, **m.state.as_dict()}
                              for m in worker.monitors}
        status["policies"] = {p.policy.name: {"handled": p.handled, "durable": p.durable, **p.state.as_dict()}
                              for p in worker.policies}
    if worker.projector is not None:
        projector = worker.projector
        status["projections"] = {name: {"applied": projector.applied[name], "parked": projector.parked[name],
                                        **projector.state[name].as_dict()} for name in projector.names}
    return status


async def say_status(nc: Nats, worker: Any, stop: asyncio.Event) -> None:
    """The worker's side: its status every second, until `stop`."""
    while not stop.is_set():
        with contextlib.suppress(Exception):  # NATS away: the silence says so
            await nc.publish(STATUS_SUBJECT, orjson.dumps(worker_status(worker)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATUS_EVERY_SECONDS)


class WorkerWord:
    """The serving process's side: what the worker's processes last said,
    together. The worker is up while every one of its parts (`PARTS`) has
    been heard from within `WORKER_SILENT_SECONDS`, whether one process
    runs them all or each its own; the health report names the silent."""

    def __init__(self, parts: tuple[str, ...] = PARTS, clock: Callable[[], float] = time.monotonic) -> None:
        self.parts = parts
        self.clock = clock
        self.heard: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = {}

    async def listen(self, nc: Nats) -> None:
        async def heard(msg: Any) -> None:
            self.hear(msg.data)
        await nc.subscribe(STATUS_SUBJECT, cb=heard)

    def hear(self, data: bytes) -> None:
        status = orjson.loads(data)
        self.heard[tuple(status.get("parts", self.parts))] = (self.clock(), status)

    def silent(self) -> list[str]:
        """The parts not heard from lately."""
        since = self.clock() - WORKER_SILENT_SECONDS
        heard = {part for parts, (at, _) in self.heard.items() if at >= since for part in parts}
        return [part for part in self.parts if part not in heard]

    def current(self) -> dict[str, Any] | None:
        """Together, what each part said last, and which parts are silent;
        None when none has been heard from lately."""
        silent = self.silent()
        if len(silent) == len(self.parts):
            return None
        since = self.clock() - WORKER_SILENT_SECONDS
        merged: dict[str, Any] = {}
        for at, status in self.heard.values():
            if at >= since:
                merged |= status
        return merged | {"parts": list(self.parts), "silent": silent}


class HealthCheck:
    def __init__(self, store: EventStore, readmodels: Engine, nc: Nats, js: JetStreamContext,
                 projections: list[str], worker: Callable[[], dict[str, Any] | None],
                 cluster: Callable[[], tuple[list[Any], list[Any]]] | None = None) -> None:
        self.cluster = cluster
        """(instances up, leases held), on PostgreSQL."""
        self.store = store
        self.readmodels = readmodels
        self.nc = nc
        self.js = js
        self.projections = projections
        self.worker = worker

    async def report(self) -> HealthReply:
        now = datetime.now(UTC)
        parts: list[Part] = []
        head = await self._head(parts)
        parts.append(Part(name="nats", up=self.nc.is_connected))
        status = self.worker()
        silent = list(PARTS) if status is None else status.get("silent", [])
        parts.append(Part(name="worker", up=not silent, last_error=None if not silent else
                          f"no word from the worker's {' and '.join(silent)} for {WORKER_SILENT_SECONDS:.0f}s"))
        status = status or {}
        relay = status.get("relay", {})
        parts.append(await self._behind("relay", status is not None and bool(relay), relay.get("position"), head,
                                        now, relay))
        parked = await self._parked()
        gone = await self._gone(PROJECTIONS_CONSUMER)
        for name in self.projections:
            own = status.get("projections", {}).get(name, {})
            position = await self._tracked(name)
            part = await self._behind(f"projection:{name}", bool(own) and not gone, position, head, now, own)
            part.parked = parked.get(f"{PREFIX}.deadletter.projections.{name}", 0)
            part.last_error = gone or part.last_error
            parts.append(part)
        for name, own in status.get("monitors", {}).items():
            parts.append(Part(name=f"monitor:{name}", up=True, last_error=own.get("last_error"),
                              last_error_at=own.get("last_error_at")))
        for name, own in status.get("policies", {}).items():
            gone = await self._gone(own.get("durable"))
            pending = await self._pending(own.get("durable"))
            parts.append(Part(name=f"policy:{name}", up=not gone, lag_events=pending,
                              last_error=gone or own.get("last_error"), last_error_at=own.get("last_error_at")))
        instances, leases = await self._cluster()
        return HealthReply(at=now, healthy=all(p.up for p in parts), head=head, parts=parts, instances=instances,
                           leases=leases)

    async def _cluster(self) -> tuple[list[Any], list[Any]]:
        if self.cluster is None:
            return [], []
        try:
            return await asyncio.to_thread(self.cluster)
        except Exception:  # noqa: BLE001 - the read models' database away: the store part says so
            return [], []

    async def _head(self, parts: list[Part]) -> int | None:
        try:
            head = await asyncio.wait_for(asyncio.to_thread(self.store.max_position), 3.0)
        except Exception as error:  # noqa: BLE001 - down is an answer too
            parts.append(Part(name="store", up=False, last_error=f"{type(error).__name__}: {error}"[:500]))
            return None
        parts.append(Part(name="store", up=True, position=head))
        return int(head)

    async def _behind(self, name: str, up: bool, position: int | None, head: int | None, now: datetime,
                      own: dict[str, Any]) -> Part:
        part = Part(name=name, up=up, position=position, last_error=own.get("last_error"),
                    last_error_at=own.get("last_error_at"))
        if position is not None and head is not None:
            part.lag_events = max(0, head - position)
            part.lag_seconds = await self._age_of(position + 1, now) if part.lag_events else 0.0
        return part

    async def _age_of(self, position: int, now: datetime) -> float | None:
        """Seconds since the event at `position` happened."""
        def occurred() -> datetime | None:
            found = self.store.notifications(position - 1, 1)
            return self.store.mapper.to_domain_event(found[0]).timestamp if found else None
        try:
            at = await asyncio.to_thread(occurred)
        except Exception:  # noqa: BLE001 - the store part says why
            return None
        return max(0.0, (now - at).total_seconds()) if at else None

    async def _tracked(self, name: str) -> int | None:
        try:
            return int((await asyncio.to_thread(marks_of, self.readmodels, name))[0])
        except Exception:  # noqa: BLE001 - the read model is away: position unknown
            return None

    async def _parked(self) -> dict[str, int]:
        try:
            info = await self.js.stream_info(DEADLETTER_STREAM, subjects_filter=f"{PREFIX}.deadletter.>")
        except Exception:  # noqa: BLE001 - NATS away: the nats part says so
            return {}
        return dict(info.state.subjects or {})

    async def _gone(self, durable: str | None) -> str | None:
        """Why a part is down when its consumer on the event stream is gone
        (its runner makes it again); None when it is there, or NATS is away."""
        if not durable:
            return None
        try:
            await self.js.consumer_info(EVENT_STREAM, durable)
        except NotFoundError:
            return f"its consumer {durable} on {EVENT_STREAM} is gone (being made again)"
        except Exception:  # noqa: BLE001 - NATS away: the nats part says so
            return None
        return None

    async def _pending(self, durable: str | None) -> int | None:
        if not durable:
            return None
        try:
            info = await self.js.consumer_info(EVENT_STREAM, durable)
        except Exception:  # noqa: BLE001 - NATS away: the nats part says so
            return None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
