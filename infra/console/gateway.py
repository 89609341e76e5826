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
    """Connected in the background (`connect`): the console answers at once,
    and says `unavailable` until NATS lets it in; a refusal is said once."""

    def __init__(self) -> None:
        self.nc: Nats | None = None
        self._listeners: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()
        self._subscriptions: list[Any] = []
        self._said: set[str] = set()

    async def connect(self, servers: list[str], options: dict[str, Any]) -> None:
        """Until connected; then the live feed is subscribed."""
        import nats

        async def said(error: Exception) -> None:
            text = f"{type(error).__name__}: {error}"
            if text not in self._said:  # once each, not at every retry
                self._said.add(text)
                log.warning("the web console's NATS connection (user `console`): %s", text)

        while True:
            try:
                nc = await nats.connect(servers, name="ticketing-console", max_reconnect_attempts=-1,
                                        reconnect_time_wait=1.0, error_cb=said, **options)
                break
            except Exception as error:  # noqa: BLE001 - said once, tried again
                await said(error)
                await asyncio.sleep(2)
        for subject in (EVENTS, ALERTS):
            self._subscriptions.append(await nc.subscribe(subject, cb=self._arrived))
        self.nc = nc
        if self._said:
            log.info("the web console reached NATS")
        self._said.clear()

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        if self.nc is not None:
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
        if self.nc is None:
            raise BusError("the console is not connected to NATS yet (its user `console` may be missing from the "
                           "server's configuration: `ticketing nats-config`)")
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
