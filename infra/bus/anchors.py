"""Anchors: the hash chain's head published outside the database, at most
every `every` seconds and at every stop, into the JetStream stream
TICKETING_AUDIT (`ticketing.v1.audit.checkpoint`: position, hash, time). Who
rewrites the database and its chain consistently is still caught: the
anchors hold the hashes of then."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from contracts.catalog import AUDIT_STREAM, AUDIT_SUBJECTS
from infra.store.verify import Anchor

log = logging.getLogger(__name__)

CHECKPOINT_SUBJECT = "ticketing.v1.audit.checkpoint"


async def ensure_audit_stream(js: JetStreamContext) -> None:
    with contextlib.suppress(BadRequestError):
        await js.add_stream(StreamConfig(name=AUDIT_STREAM, subjects=[AUDIT_SUBJECTS],
                                         storage=StorageType.FILE, duplicate_window=3600))


async def read_anchors(js: JetStreamContext) -> list[Anchor]:
    info = await js.stream_info(AUDIT_STREAM)
    if not info.state.messages:
        return []
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(Exception):  # a deleted message: the others still count
            data = orjson.loads((await js.get_msg(AUDIT_STREAM, seq=seq)).data)
            found.append(Anchor(int(data["position"]), str(data["hash"]), str(data["at"])))
    return found


class Anchoring:
    def __init__(self, head: Callable[[], tuple[int, str]], js: JetStreamContext, every: float) -> None:
        self.head = head
        self.js = js
        self.every = every
        self.published: tuple[int, str] | None = None
        self.refused = False
        """Whether the last anchor failed to go out (tried again every second
        until one does; the worker's status says so)."""
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(self.every, 1.0) if self.refused else self.every)
        await self.publish()  # at every stop

    async def publish(self) -> None:
        try:
            position, hash_ = await asyncio.to_thread(self.head)
            if not position or (position, hash_) == self.published:
                return
            body = {"position": position, "hash": hash_, "at": datetime.now(UTC).isoformat()}
            await self.js.publish(CHECKPOINT_SUBJECT, orjson.dumps(body), stream=AUDIT_STREAM,
                                  headers={"Nats-Msg-Id": f"anchor-{position}-{hash_[:16]}"})
            self.published = (position, hash_)
        except Exception as error:  # noqa: BLE001 - the next one will do; the chain itself is in the store
            if not self.refused:  # said once until one goes out
                log.warning("anchors: cannot publish the chain's head yet (%s: %s); trying again every second",
                            type(error).__name__, error)
                self.refused = True
            return
        if self.refused:
            log.warning("anchors: the chain's head is published again")
            self.refused = False
