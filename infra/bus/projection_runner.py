"""Feeds the projections from one JetStream durable consumer.

Messages are decoded once and applied to every projection in stream order, a
batch per transaction (all projections in the same one), and acked only after
that transaction commits; each projection's tracking row skips whatever it
has applied already (a redelivery, or what a rebuild of it covered).

A durable consumer alone does not keep order across a crash: the messages the
dead process had fetched come back only after `ack_wait`, while newer ones
are delivered at once, and applying a newer event first would make the older
one look already applied. So at start the runner re-anchors its durable
consumer on the earliest stream sequence its projections' tracking rows say
they consumed (each row is written in the same transaction as its read
model), dropping whatever a dead instance left pending; one instance runs. A
database outage is retried until it ends. When a batch fails, its messages
are applied one by one, to each projection apart: an event a projection
cannot apply (a bug, a malformed message) is retried a few times, then parked
on `ticketing.v1.deadletter.projections.<name>` with the reason, and that
projection moves on while the others apply it: it is never silently
dropped. A message the relay did not seal (`infra/auth/seal.py`) is not the
store's: it is parked at once (by each projection) and never applied."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from contracts.catalog import EVENT_STREAM, EVENT_SUBJECTS, PREFIX, PROJECTIONS_CONSUMER
from infra.auth.seal import Seal
from infra.bus.consuming import batches, made_again
from infra.common.part_state import PartState
from projections.base import Fence, Fenced, Projection, apply_batch, create_tables, marks_of, skip

log = logging.getLogger(__name__)

DEADLETTER_STREAM = "TICKETING_DEADLETTER"
DEADLETTER_SUBJECTS = f"{PREFIX}.deadletter.>"
MAX_ATTEMPTS = 5
ACK_WAIT_SECONDS = 30


class ProjectionRunner:
    def __init__(self, projections: Sequence[Projection], engine: Engine, js: JetStreamContext, seal: Seal, *,
                 batch: int = 256, linger: float = 0.0, durable: str = PROJECTIONS_CONSUMER) -> None:
        self.projections = list(projections)
        self.engine = engine
        self.js = js
        self.seal = seal
        self.batch = batch
        self.linger = linger
        self.durable = durable
        self.fence: Fence | None = None
        """Checked in every write's transaction when the part runs under a lease (`infra.cluster`)."""
        self.fenced: Fenced | None = None
        """Why it stopped, when a write of it was fenced (another holds its lease now)."""
        self._next: int | None = None
        """The stream sequence the next message should have (None: whatever comes first, after an anchor)."""
        self.applied = dict.fromkeys(self.names, 0)
        self.parked = dict.fromkeys(self.names, 0)
        self.state = {name: PartState() for name in self.names}
        self._stopping = False

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.projections]

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        for projection in self.projections:
            await asyncio.to_thread(create_tables, self.engine, projection)
        while not self._stopping:
            sub = await self._anchor()
            try:
                async for messages in batches(sub, self.batch, lambda: not self._stopping, self.durable,
                                                self.linger, self._revive):
                    self._in_order(messages)
                    await self._handle(messages)
                    self._next = _sequence(messages[-1]) + 1
                return
            except Skipped as skipped:  # taken by another reader of the consumer: read again from the marks
                log.warning("%s: %s; reading again from where the read models stand", self.durable, skipped)
            except Fenced as fenced:  # another holds the lease now: nothing was written, nothing acked
                log.warning("%s: %s; stopping", self.durable, fenced)
                self.fenced = fenced
                return

    def _in_order(self, messages: list[Any]) -> None:
        """The stream's messages come to one consumer in order, each once: a
        batch that begins past the next one expected means others went to
        another reader of the same consumer (a holder of the lease that
        stalled, and woke up to take a batch before its write was fenced).
        With acknowledgements that cover all before them, they would be
        passed over for good: so the consumer is made again from the marks."""
        first = _sequence(messages[0])
        if self._next is not None and first > self._next:
            raise Skipped(f"stream messages {self._next} to {first - 1} went to another reader")

    async def _revive(self) -> Any:
        """Its consumer made again from the read models' marks, when it was gone."""
        async def make() -> Any:
            for state in self.state.values():
                state.failed(f"its consumer {self.durable} on {EVENT_STREAM} was gone; made again")
            return await self._anchor()
        return await made_again(self.js, EVENT_STREAM, self.durable, make)

    async def _anchor(self) -> Any:
        """(Re)create the durable consumer to start right after the last stream
        message every projection consumed, and bind to it."""
        marks = [await asyncio.to_thread(marks_of, self.engine, name) for name in self.names]
        consumed = min(mark[1] for mark in marks)
        info = await self.js.stream_info(EVENT_STREAM)
        if max(mark[1] for mark in marks) > info.state.last_seq:
            # Not the stream we consumed (it was recreated): read it all; the
            # positions already applied are skipped.
            log.warning("%s: stream %s ends at %d, before the %d consumed: reading it from the start",
                        self.durable, EVENT_STREAM, info.state.last_seq, max(mark[1] for mark in marks))
            consumed = 0
        start = ({"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": consumed + 1}
                 if consumed else {"deliver_policy": DeliverPolicy.ALL})
        self._next = None
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(EVENT_STREAM, self.durable)
        await self.js.add_consumer(EVENT_STREAM, ConsumerConfig(
            durable_name=self.durable, filter_subject=EVENT_SUBJECTS, ack_policy=AckPolicy.ALL,
            ack_wait=ACK_WAIT_SECONDS, max_ack_pending=4 * self.batch, **start))
        return await self.js.pull_subscribe_bind(durable=self.durable, stream=EVENT_STREAM)

    async def _handle(self, messages: list[Any]) -> None:
        events = [_decode(m.data) if self.seal.holds(m.subject, m.data, m.headers) else UNSEALED
                  for m in messages]
        if all(e is not None and e is not UNSEALED for e in events):
            try:
                self._count(await asyncio.to_thread(apply_batch, self.engine, self.projections, events,
                                                    _sequence(messages[-1]), self.fence))
                await messages[-1].ack()  # AckPolicy.ALL: the batch's last ack covers the batch
                return
            except Fenced:
                raise
            except Exception as error:  # noqa: BLE001 - find the culprit one by one below
                for state in self.state.values():
                    state.failed(error)
                log.warning("%s: batch of %d failed (%s); applying one by one",
                            self.durable, len(messages), error)
        for message, event in zip(messages, events, strict=True):
            await self._handle_one(message, event)
            await message.ack()

    def _count(self, applied: dict[str, int]) -> None:
        for name, n in applied.items():
            self.applied[name] += n

    async def _handle_one(self, message: Any, event: dict[str, Any] | None) -> None:
        """Apply one message to each projection apart; what one of them still
        cannot apply after the retries is parked for that one. The retries
        are rounds over the projections that failed, so a message none can
        apply holds the stream up for one backoff, not one per projection."""
        if event is UNSEALED:
            for projection in self.projections:
                await self._park(projection, message, None,
                                 "not sealed by the product's relay: not an event of the store")
            return
        left, attempt = list(self.projections), 0
        while True:
            failed: dict[str, str] = {}
            outage = False
            for projection in left:
                if event is None:
                    failed[projection.name] = "not a v1 event envelope"
                    continue
                try:
                    self._count(await asyncio.to_thread(apply_batch, self.engine, [projection], [event],
                                                        _sequence(message), self.fence))
                except Fenced:
                    raise
                except (OperationalError, DBAPIError) as error:
                    if _is_outage(error):
                        self.state[projection.name].failed(error)
                        log.warning("%s: database unavailable (%s); retrying", self.durable, error)
                        outage = True
                    failed[projection.name] = f"{type(error).__name__}: {error}"
                except Exception as error:  # noqa: BLE001
                    failed[projection.name] = f"{type(error).__name__}: {error}"
            left = [projection for projection in left if projection.name in failed]
            if not left:
                return
            if outage:  # not the message's fault: retried until the database is back
                await message.in_progress()
                await asyncio.sleep(1.0)
                continue
            attempt += 1
            if attempt >= MAX_ATTEMPTS or event is None:
                for projection in left:
                    await self._park(projection, message, event, failed[projection.name])
                return
            await message.in_progress()
            await asyncio.sleep(0.2 * 2 ** attempt)

    async def _park(self, projection: Projection, message: Any, event: dict[str, Any] | None, reason: str) -> None:
        name, sequence = projection.name, message.metadata.sequence.stream
        self.parked[name] += 1
        self.state[name].failed(f"parked stream message {sequence}: {reason}")
        log.error("%s: %s parks stream message %s: %s", self.durable, name, sequence, reason)
        await self.js.publish(
            f"{PREFIX}.deadletter.projections.{name}", message.data,
            headers={"Ticketing-Reason": reason[:1000], "Ticketing-Stream-Sequence": str(sequence),
                     "Nats-Msg-Id": f"projection_{name}-{sequence}"},
        )
        await asyncio.to_thread(skip, self.engine, projection, _sequence(message), self.fence)


class Skipped(Exception):
    """Stream messages this consumer's reader never saw."""


UNSEALED: Any = {"type": "(unsealed)"}
"""Stands for a message that did not come from the relay."""


def _sequence(message: Any) -> int:
    return int(message.metadata.sequence.stream)


def _decode(data: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("position"), int) or "type" not in event:
        return None
    return event


def _is_outage(error: DBAPIError) -> bool:
    return bool(error.connection_invalidated) or "locked" in str(error) or "connect" in str(error).lower()
