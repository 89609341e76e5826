"""Feeds a projection from a JetStream durable consumer.

Messages are applied in stream order, a batch per transaction, and acked only
after that transaction commits; the projection's tracking row skips whatever
arrives again.

A durable consumer alone does not keep order across a crash: the messages the
dead process had fetched come back only after `ack_wait`, while newer ones
are delivered at once, and applying a newer event first would make the older
one look already applied. So at start the runner re-anchors its durable
consumer on the stream sequence its tracking row says it consumed last (the
row is written in the same transaction as the read model), dropping whatever
a dead instance left pending; one instance runs each projection. A database outage is retried until it ends. An event the
projection cannot apply (a bug, a malformed message) is retried a few times,
then parked on `ticketing.v1.deadletter.projections.<name>` with the reason,
and the projection moves on: it is never silently dropped. A message the
relay did not seal (`infra/auth/seal.py`) is not the store's: it is parked
at once and never applied."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from contracts.catalog import EVENT_STREAM, EVENT_SUBJECTS, PREFIX
from infra.auth.seal import Seal
from infra.bus.consuming import batches
from infra.runtime.parts import PartState
from projections.base import Projection, apply_batch, create_tables, marks_of, skip

log = logging.getLogger(__name__)

DEADLETTER_STREAM = "TICKETING_DEADLETTER"
DEADLETTER_SUBJECTS = f"{PREFIX}.deadletter.>"
MAX_ATTEMPTS = 5
ACK_WAIT_SECONDS = 30


class ProjectionRunner:
    def __init__(self, projection: Projection, engine: Engine, js: JetStreamContext, seal: Seal, *,
                 batch: int = 256) -> None:
        self.projection = projection
        self.engine = engine
        self.js = js
        self.seal = seal
        self.batch = batch
        self.applied = 0
        self.parked = 0
        self.state = PartState()
        self._stopping = False

    @property
    def durable(self) -> str:
        return f"projection_{self.projection.name}"

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        await asyncio.to_thread(create_tables, self.engine, self.projection)
        sub = await self._anchor()
        async for messages in batches(sub, self.batch, lambda: not self._stopping, self.durable):
            await self._handle(messages)

    async def _anchor(self) -> Any:
        """(Re)create the durable consumer to start right after the last stream
        message this projection consumed, and bind to it."""
        _, consumed = await asyncio.to_thread(marks_of, self.engine, self.projection.name)
        info = await self.js.stream_info(EVENT_STREAM)
        if consumed > info.state.last_seq:
            # Not the stream we consumed (it was recreated): read it all; the
            # positions already applied are skipped.
            log.warning("%s: stream %s ends at %d, before the %d consumed: reading it from the start",
                        self.durable, EVENT_STREAM, info.state.last_seq, consumed)
            consumed = 0
        start = ({"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": consumed + 1}
                 if consumed else {"deliver_policy": DeliverPolicy.ALL})
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
                self.applied += await asyncio.to_thread(apply_batch, self.engine, self.projection, events,
                                                        _sequence(messages[-1]))
                await messages[-1].ack()  # AckPolicy.ALL: the batch's last ack covers the batch
                return
            except Exception as error:  # noqa: BLE001 - find the culprit one by one below
                self.state.failed(error)
                log.warning("%s: batch of %d failed (%s); applying one by one",
                            self.durable, len(messages), error)
        for message, event in zip(messages, events, strict=True):
            await self._handle_one(message, event)

    async def _handle_one(self, message: Any, event: dict[str, Any] | None) -> None:
        if event is UNSEALED:
            await self._park(message, None, "not sealed by the product's relay: not an event of the store")
            return
        attempt = 0
        while True:
            reason = "not a v1 event envelope" if event is None else None
            if event is not None:
                try:
                    self.applied += await asyncio.to_thread(apply_batch, self.engine, self.projection, [event],
                                                            _sequence(message))
                    await message.ack()
                    return
                except (OperationalError, DBAPIError) as error:
                    if _is_outage(error):
                        self.state.failed(error)
                        log.warning("%s: database unavailable (%s); retrying", self.durable, error)
                        await message.in_progress()
                        await asyncio.sleep(1.0)
                        continue
                    reason = f"{type(error).__name__}: {error}"
                except Exception as error:  # noqa: BLE001
                    reason = f"{type(error).__name__}: {error}"
            attempt += 1
            if attempt >= MAX_ATTEMPTS or event is None:
                await self._park(message, event, reason or "unknown")
                return
            await message.in_progress()
            await asyncio.sleep(0.2 * 2 ** attempt)

    async def _park(self, message: Any, event: dict[str, Any] | None, reason: str) -> None:
        self.parked += 1
        self.state.failed(f"parked stream message {message.metadata.sequence.stream}: {reason}")
        log.error("%s: parking stream message %s: %s", self.durable, message.metadata.sequence.stream, reason)
        await self.js.publish(
            f"{PREFIX}.deadletter.projections.{self.projection.name}", message.data,
            headers={"Ticketing-Reason": reason[:1000],
                     "Ticketing-Stream-Sequence": str(message.metadata.sequence.stream),
                     "Nats-Msg-Id": f"{self.durable}-{message.metadata.sequence.stream}"},
        )
        await asyncio.to_thread(skip, self.engine, self.projection, _sequence(message))
        await message.ack()


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
