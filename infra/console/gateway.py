"""The console on the bus: its own `gateway` connection, naming the signed-in
person on every query and command (the responders check the person's role
as they would anyone's, and every event records both), and the live feed of
events and alerts behind `/stream`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

from infra.auth.permissions import ALERTS, EVENTS
from infra.console.sessions import Person

log = logging.getLogger(__name__)
QUEUE = 256
"""Live messages a slow page may fall behind by; past it the page reloads what it shows."""


class BusError(Exception):
    """The bus did not answer (the reply's own errors are replies, not this)."""


class Gateway:
    def __init__(self, nc: Nats) -> None:
        self.nc = nc
        self._listeners: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()
        self._subscriptions: list[Any] = []

    async def start(self) -> None:
        for subject in (EVENTS, ALERTS):
            self._subscriptions.append(await self.nc.subscribe(subject, cb=self._arrived))

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        with contextlib.suppress(Exception):
            await self.nc.close()

    async def ask(self, query: str, body: dict[str, Any], person: Person, timeout: float = 30.0) -> dict[str, Any]:
        return await self._request(f"ticketing.v1.queries.{query}", body | {"actor": person.actor}, timeout)

    async def send(self, aggregate: str, command: str, data: dict[str, Any], person: Person,
                   aggregate_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"command_id": str(uuid.uuid4()), "data": data, "actor": person.actor}
        if aggregate_id:
            body["aggregate_id"] = aggregate_id
        return await self._request(f"ticketing.v1.commands.{aggregate}.{command}", body, 10.0)

    async def _request(self, subject: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            reply = await self.nc.request(subject, orjson.dumps(body), timeout=timeout)
        except Exception as error:  # noqa: BLE001 - the page says it in one line
            raise BusError(f"no answer on {subject} ({type(error).__name__})") from None
        return dict(orjson.loads(reply.data))

    # -- live --------------------------------------------------------------

    async def _arrived(self, msg: Msg) -> None:
        kind = "alert" if msg.subject.startswith("ticketing.v1.alerts.") else "event"
        try:
            body = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            return
        said = {"type": body.get("type"), "id": body.get("id"),
                "aggregate_id": body.get("aggregate_id") or body.get("case_id") or body.get("customer_id")}
        for queue in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((kind, said))

    @contextlib.contextmanager
    def listening(self) -> Iterator[asyncio.Queue[tuple[str, dict[str, Any]]]]:
        """A queue of what arrives, (kind, what) with kind `event` or `alert`, while in the block."""
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(QUEUE)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)
