"""The product's own NATS connections: connected as the product's identity,
reconnecting for ever, and saying what happens to them once per change of
state (lost, back, a new kind of error), never once per reconnect attempt:
nats-py's default logs a traceback for every failed attempt, twice a second
per connection while the server is away."""

from __future__ import annotations

import logging
from typing import Any

import nats
from nats.aio.client import Client as Nats

from infra.auth.connect import product_options
from infra.settings import Settings

log = logging.getLogger("ticketing.nats")


class ConnectionLog:
    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self._said: str | None = None
        self.connection: Nats | None = None
        """Set once connected: a disconnection while it is closing is our own stop, not a loss."""

    async def error(self, error: Exception) -> None:
        text = str(error) or type(error).__name__
        if self.down or text == self._said:
            log.debug("%s: %s", self.name, text)
            return
        self._said = text
        log.warning("%s: %s", self.name, text)

    async def disconnected(self) -> None:
        if self.connection is not None and self.connection.is_closed:
            log.debug("%s: closed", self.name)
        elif not self.down:
            self.down = True
            log.warning("%s: lost NATS; reconnecting in the background (requests fail fast meanwhile)", self.name)

    async def reconnected(self) -> None:
        self.down, self._said = False, None
        log.warning("%s: NATS is back", self.name)

    def callbacks(self) -> dict[str, Any]:
        return {"error_cb": self.error, "disconnected_cb": self.disconnected, "reconnected_cb": self.reconnected}


def servers(url: str) -> list[str]:
    """The servers a NATS URL setting names: one, or several of a cluster,
    comma-separated (`nats://a:4222,nats://b:4222`); a client goes to
    another when one is lost."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect_nats(url: str, settings: Settings, name: str = "ticketing") -> Nats:
    """The product's own connection (identity `system`)."""
    said = ConnectionLog(name)
    said.connection = await nats.connect(servers(url), max_reconnect_attempts=-1, reconnect_time_wait=0.5, name=name,
                                         **said.callbacks(), **product_options(settings))
    return said.connection
