"""Anchors: the hash chain's head published outside the database, signed
with the product's audit key, at most every `every` seconds and at every
stop, into the JetStream stream TICKETING_AUDIT
(`ticketing.v1.audit.checkpoint`). Each holds the position and hash of the
head, when, the position of the anchor before it (`after`), and the first
16 hex characters of the hash of every event in between (`digests`; at
most `MOST_EVENTS` of them an anchor, so a busy interval gets several).
Whoever rewrites the database and its chain consistently is still caught,
at the first event rewritten; whoever has no audit key cannot make an
anchor that counts. Each anchor is also kept in `<data dir>/anchors.jsonl`
(owner-only), so `audit verify` has them with serve stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from contracts.catalog import AUDIT_STREAM, AUDIT_SUBJECTS
from infra.auth.signing import Signer
from infra.bus.streams import ensure_stream
from infra.store.chain import Link
from infra.store.verify import DIGEST_CHARS, Anchor

log = logging.getLogger(__name__)

CHECKPOINT_SUBJECT = "ticketing.v1.audit.checkpoint"
ANCHOR_FILE = "anchors.jsonl"
"""In the data directory: every anchor this product published, one a line."""
MOST_EVENTS = 4096
"""Events an anchor covers at most (its digests: 64 KiB)."""


async def ensure_audit_stream(js: JetStreamContext, replicas: int = 1) -> None:
    await ensure_stream(js, StreamConfig(name=AUDIT_STREAM, subjects=[AUDIT_SUBJECTS], storage=StorageType.FILE,
                                         duplicate_window=3600, num_replicas=replicas))


async def read_anchors(js: JetStreamContext) -> list[Anchor]:
    """Every anchor the stream holds, signed or not (`verify.trusted` tells)."""
    info = await js.stream_info(AUDIT_STREAM)
    if not info.state.messages:
        return []
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(Exception):  # a deleted or unreadable message: the others still count
            found.append(Anchor.of(orjson.loads((await js.get_msg(AUDIT_STREAM, seq=seq)).data)))
    return found


def read_anchor_file(path: Path) -> list[Anchor]:
    """The anchors of a file of them (one JSON document a line); unreadable lines are passed over."""
    found = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(Exception):
            found.append(Anchor.of(orjson.loads(line)))
    return found


class Anchoring:
    def __init__(self, links: Callable[[int, int], dict[int, Link]], head: Callable[[], tuple[int, str]],
                 js: JetStreamContext, signer: Signer, every: float, kept: Path | None = None) -> None:
        self.links = links
        self.head = head
        self.js = js
        self.signer = signer
        self.every = every
        self.kept = kept
        self.published: int | None = None
        """The position of the last anchor out (None: not known yet; read from the stream)."""
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
            if self.published is None:
                self.published = await self._last_published()
            position, _ = await asyncio.to_thread(self.head)
            while position > self.published:
                await self._anchor(self.published, min(position, self.published + MOST_EVENTS))
        except Exception as error:  # noqa: BLE001 - the next one will do; the chain itself is in the store
            if not self.refused:  # said once until one goes out
                log.warning("anchors: cannot publish the chain's head yet (%s: %s); trying again every second",
                            type(error).__name__, error)
                self.refused = True
            return
        if self.refused:
            log.warning("anchors: the chain's head is published again")
            self.refused = False

    async def _anchor(self, after: int, position: int) -> None:
        links = await asyncio.to_thread(self.links, after, position - after)
        document = anchor_document(links, after, position, self.signer, datetime.now(UTC))
        payload = orjson.dumps(document)
        await self.js.publish(CHECKPOINT_SUBJECT, payload, stream=AUDIT_STREAM,
                              headers={"Nats-Msg-Id": f"anchor-{position}-{document['hash'][:16]}"})
        if self.kept is not None:
            await asyncio.to_thread(_append, self.kept, payload)
        self.published = position

    async def _last_published(self) -> int:
        """Where the anchors stand: the last one of ours on the stream (0: none yet)."""
        try:
            last = await self.js.get_last_msg(AUDIT_STREAM, CHECKPOINT_SUBJECT)
        except NotFoundError:
            return 0
        anchor = Anchor.of(orjson.loads(last.data))
        return anchor.position if anchor.signed_by(self.signer.public_key) else 0


def anchor_document(links: dict[int, Link], after: int, position: int, signer: Signer, at: datetime,
                    ) -> dict[str, Any]:
    """The signed anchor of the events in (after, position], from their links."""
    covered = [links[p].hash[:DIGEST_CHARS] for p in range(after + 1, position + 1)]
    return signer.signed({"position": position, "hash": links[position].hash, "at": at.isoformat(),
                          "after": after, "digests": "".join(covered)})


def _append(path: Path, line: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as file:
        file.write(line + b"\n")
