"""Users' own consumers on the event and alert streams: made by the product,
one durable pull consumer per user who may keep one, named after the user,
with a configuration no user chooses.

A consumer's configuration is an instruction to the server: a push
consumer's `deliver_subject` makes JetStream publish there with the
server's rights, not its maker's (into another user's inbox, or back onto
a stream's subjects). So users get no right to create, change or delete a
consumer; the product keeps exactly one per user and stream, pull only,
and removes every other consumer it finds on these streams but its own
(`projections`, `policy_...`): one made before users lost that right, or
one a removed user left. `UserConsumers` keeps this true while `serve`
runs, at start and whenever the user directory changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts.catalog import EVENT_STREAM, POLICY_CONSUMER_PREFIX, PROJECTIONS_CONSUMER
from infra.auth.directory import UserDirectory
from infra.auth.server_config import CONSUMER_STREAMS
from ticketing.access import CONSUMER_KEEPERS

log = logging.getLogger(__name__)

ACK_WAIT_SECONDS = 30.0
MAX_ACK_PENDING = 1000
PAGE = 256
"""The server lists at most this many consumers an answer."""


def user_consumer(user: str) -> ConsumerConfig:
    return ConsumerConfig(durable_name=user, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                          ack_wait=ACK_WAIT_SECONDS, max_ack_pending=MAX_ACK_PENDING)


def products_own(stream: str, name: str) -> bool:
    return stream == EVENT_STREAM and (name == PROJECTIONS_CONSUMER or name.startswith(POLICY_CONSUMER_PREFIX))


def as_made(info: ConsumerInfo) -> bool:
    """Whether a user's consumer is still as the product made it (pull, no filter of anyone's choosing)."""
    config, wanted = info.config, user_consumer(info.name)
    return (not config.deliver_subject and config.ack_policy == wanted.ack_policy
            and not config.filter_subject and not config.filter_subjects)


async def consumers(js: JetStreamContext, stream: str) -> list[ConsumerInfo]:
    found: list[ConsumerInfo] = []
    while True:
        page = await js.consumers_info(stream, offset=len(found))
        found += page
        if len(page) < PAGE:
            return found


async def keep_user_consumers(js: JetStreamContext, directory: UserDirectory) -> list[str]:
    """One pull consumer per keeper and stream, as the product makes it, and
    no other but the product's own; what was changed, said for people."""
    keepers = {user.name for user in directory.users() if user.role in CONSUMER_KEEPERS}
    changed = []
    for stream in CONSUMER_STREAMS:
        kept = set()
        for info in await consumers(js, stream):
            if products_own(stream, info.name):
                continue
            if info.name in keepers and as_made(info):
                kept.add(info.name)
                continue
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(stream, info.name)
            why = "not as the product makes it" if info.name in keepers else "no user's"
            changed.append(f"removed consumer {info.name} of {stream} ({why})")
        for name in sorted(keepers - kept):
            await js.add_consumer(stream, user_consumer(name))
            changed.append(f"made consumer {name} of {stream}")
    return changed


class UserConsumers:
    """Keeps the users' consumers in line with the user directory: at start,
    and within `every` seconds of a change to it (a failure is said once and
    tried again)."""

    def __init__(self, js: JetStreamContext, directory: UserDirectory, every: float = 1.0,
                 stamp: Callable[[], tuple[int, int]] | None = None) -> None:
        self.js = js
        self.directory = directory
        self.every = every
        self._stamp = stamp or self._file_stamp
        self._seen: tuple[int, int] | None = None
        self._failing = False
        self._stopping = asyncio.Event()

    def _file_stamp(self) -> tuple[int, int]:
        try:
            stat = os.stat(self.directory.path)
        except FileNotFoundError:
            return (0, 0)
        return (stat.st_mtime_ns, stat.st_size)

    def stop(self) -> None:
        self._stopping.set()

    async def keep(self) -> None:
        stamp = self._stamp()
        if stamp == self._seen:
            return
        try:
            for change in await keep_user_consumers(self.js, self.directory):
                log.info("users' consumers: %s", change)
        except Exception as error:  # noqa: BLE001 - the bus is away: the next round tries again
            if not self._failing:
                log.warning("users' consumers: cannot bring them in line yet (%s: %s); trying again",
                            type(error).__name__, error)
                self._failing = True
            return
        self._seen, self._failing = stamp, False

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.keep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.every)
