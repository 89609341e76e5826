"""The relay: every recorded event, in store order, onto the JetStream stream.

Exactly once on the stream, even when the process dies between publishing and
saving its position:
- each message's `Nats-Msg-Id` is the event id, so a copy published again within
  the duplicate window is dropped by the stream;
- before it starts, and after any failed publish, the relay reads the stream's
  last message it sealed (`infra/auth/seal.py`: anything else in the stream is
  a stranger's, whatever position it claims) and continues after the position
  it carries, so a restart long after the window closed does not publish a
  copy either; a stream that never held a message (new, or recreated) gets
  the whole store;
- `Nats-Expected-Last-Msg-Id` makes the stream refuse a message whose
  predecessor is missing, so the stream's order is the store's order.

It is woken on every commit (`wake()`, safe from any thread), so new events
reach the bus in milliseconds; the poll is only a safety net. Its saved
position is a hint (the stream's tail is the truth), so it is written at most
once a second and when the relay stops, not after every batch: each save is a
write on the event store that commands would queue behind."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from eventsourcing.persistence import Notification
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.catalog import EVENT_STREAM
from infra.auth.seal import HEADER as SEAL_HEADER
from infra.auth.seal import Seal
from infra.common.part_state import PartState

log = logging.getLogger(__name__)

ACK_TIMEOUT_SECONDS = 5.0
SCAN_BACK = 1000
"""How far back from the stream's tail to look for the relay's own last event."""

Translate = Callable[[Notification, Any], tuple[str, str, bytes]]
"""(notification, its hash-chain link or None) -> (subject, Nats-Msg-Id, payload)."""


class Log(Protocol):
    def notifications(self, after: int, limit: int) -> list[Notification]: ...
    def links(self, after: int, limit: int) -> dict[int, Any]: ...
    def relay_position(self, name: str) -> int: ...
    def save_relay_position(self, name: str, position: int) -> None: ...


class Relay:
    name = "bus"

    def __init__(self, log_: Log, js: JetStreamContext, translate: Translate, seal: Seal, *, batch: int = 500,
                 poll_seconds: float = 1.0, save_every_seconds: float = 1.0) -> None:
        self.log = log_
        self.js = js
        self.seal = seal
        self.translate = translate
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.save_every_seconds = save_every_seconds
        self.position = 0
        self._saved = 0
        self._saved_at = float("-inf")
        self._saving: asyncio.Task[None] | None = None
        self._last_msg_id: str | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.published = 0
        self.caught_up = asyncio.Event()
        self.state = PartState()

    def wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        backoff = 0.1
        await self._reconcile()
        while not self._stopping:
            self._wake.clear()  # before reading, so a commit during the read still wakes us
            try:
                moved = await self.pump()
                if backoff > 0.1:
                    log.warning("relay: publishing again")
                backoff = 0.1
            except Exception as error:  # noqa: BLE001 - the relay must outlive bus and store outages
                self.state.failed(error)
                # Said when the trouble begins; the retries after it (backing
                # off to one every 5 s) only at DEBUG, so an outage is one line.
                (log.warning if backoff == 0.1 else log.debug)(
                    "relay: %s: %s; retrying, backing off to every 5s", type(error).__name__, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                await self._safe_reconcile()
                continue
            if not moved:
                self.caught_up.set()
                await self._safe_save()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                except TimeoutError:
                    pass
        await self._safe_save(now=True)

    async def pump(self) -> int:
        """Publish the next batch; returns how many events were published."""
        pending, chained = await asyncio.to_thread(self._read, self.position)
        if not pending:
            return 0
        self.caught_up.clear()
        acks: list[asyncio.Future[Any]] = []
        previous = self._last_msg_id
        for notification in pending:
            subject, msg_id, payload = self.translate(notification, chained.get(notification.id))
            headers = {"Nats-Msg-Id": msg_id, SEAL_HEADER: self.seal.of(subject, payload)}
            if previous is not None:
                headers["Nats-Expected-Last-Msg-Id"] = previous
            acks.append(await self.js.publish_async(subject, payload, headers=headers))
            previous = msg_id
        for ack, notification in zip(await self._all_acked(acks), pending, strict=True):
            if getattr(ack, "duplicate", False):
                await self._check_copy(ack.seq, notification.id)
        self.position = pending[-1].id
        self._last_msg_id = previous
        self.published += len(pending)
        await self._save()
        return len(pending)

    def _read(self, after: int) -> tuple[list[Notification], dict[int, Any]]:
        """The next batch and its chain links (one trip to a thread, not two)."""
        pending = self.log.notifications(after, self.batch)
        return pending, (self.log.links(after, len(pending)) if pending else {})

    async def _save(self, *, now: bool = False) -> None:
        """Save the position: at once when stopping; otherwise at most once a
        second and in the background, so publishing never waits on a write
        (and its fsync) to the event store."""
        if now:
            if self._saving is not None:
                await asyncio.gather(self._saving, return_exceptions=True)
            await self._write_position(self.position)
            return
        if self._saving is not None or time.monotonic() - self._saved_at < self.save_every_seconds:
            return
        self._saved_at = time.monotonic()
        self._saving = asyncio.create_task(self._save_in_background(self.position))

    async def _save_in_background(self, position: int) -> None:
        try:
            await self._write_position(position)
        except Exception as error:  # noqa: BLE001 - the position is a hint; the next save will do
            log.warning("relay: cannot save the position yet (%s)", error)
        finally:
            self._saving = None

    async def _write_position(self, position: int) -> None:
        if position > self._saved:
            await asyncio.to_thread(self.log.save_relay_position, self.name, position)
            self._saved = position

    async def _check_copy(self, seq: int, position: int) -> None:
        """A publish the stream dropped as a copy: of ours (a republish after a
        crash) as it should be, or of a stranger's message that took the
        event's id first, which only someone with admin rights can do. Then
        the stream lacks that event: said loudly (a rebuild from the store
        puts it back into the read models)."""
        try:
            held = await self.js.get_msg(EVENT_STREAM, seq=seq)
        except Exception:  # noqa: BLE001 - gone since: nothing to tell
            return
        if not self.seal.holds(held.subject or "", held.data or b"", held.headers):
            self.state.failed(f"the event at position {position} was dropped as a copy of a stranger's message")
            log.error("relay: the event at position %d was dropped by %s as a copy of stream message %d, which "
                      "the product did not publish: someone with admin rights published under the event's id. "
                      "The stream lacks it; rebuild the projections from the store (`ticketing projections "
                      "rebuild`) and find who holds admin credentials.", position, EVENT_STREAM, seq)

    async def _all_acked(self, acks: list[asyncio.Future[Any]]) -> list[Any]:
        """Wait for every ack. A rejected publish never completes its future in
        nats-py 2.16 (its error handler raises instead of setting the
        exception), so a batch not acked in time counts as failed, and its
        futures are cancelled to give back their in-flight slots."""
        try:
            return list(await asyncio.wait_for(asyncio.gather(*acks), ACK_TIMEOUT_SECONDS))
        except TimeoutError:
            for ack in acks:
                ack.cancel()
            raise TimeoutError(f"{sum(not a.done() or a.cancelled() for a in acks)} publishes not acknowledged "
                               f"in {ACK_TIMEOUT_SECONDS}s (rejected, or the server is away)") from None

    async def _safe_save(self, *, now: bool = False) -> None:
        try:
            await self._save(now=now)
        except Exception as error:  # noqa: BLE001 - the position is a hint; the next save will do
            log.warning("relay: cannot save the position yet (%s)", error)

    async def _safe_reconcile(self) -> None:
        try:
            await self._reconcile()
        except Exception as error:  # noqa: BLE001
            log.warning("relay: cannot read the stream yet (%s)", error)

    async def _reconcile(self) -> None:
        """Continue after whichever is further: our saved position or the last
        event the stream holds."""
        saved = await asyncio.to_thread(self.log.relay_position, self.name)
        on_stream, msg_id, fresh = await self._stream_tail()
        if fresh and saved:
            log.warning("relay: %s never held a message (new or recreated): publishing the store from the start",
                        EVENT_STREAM)
            saved = 0
        self.position = max(saved, on_stream)
        self._saved = saved
        self._last_msg_id = msg_id
        if on_stream > saved:
            log.info("relay: the stream was ahead of the saved position (%d > %d)", on_stream, saved)

    async def _stream_tail(self) -> tuple[int, str | None, bool]:
        """(position of the last event this relay published that the stream
        holds, Nats-Msg-Id of the stream's last message, whether the stream
        never held anything). The first two differ when someone else
        published into the stream's subjects after us: the next publish must
        expect that stranger as its predecessor, and must not republish what
        we had published before it."""
        info = await self.js.stream_info(EVENT_STREAM)
        if not info.state.messages:
            return 0, None, info.state.last_seq == 0
        tail_id: str | None = None
        for seq in range(info.state.last_seq, max(info.state.first_seq, info.state.last_seq - SCAN_BACK) - 1, -1):
            try:
                msg = await self.js.get_msg(EVENT_STREAM, seq=seq)
            except NotFoundError:
                continue
            msg_id = (msg.headers or {}).get("Nats-Msg-Id")
            if seq == info.state.last_seq:
                tail_id = msg_id
            position = self._own_position(msg.subject, msg.data, msg.headers, msg_id)
            if position is not None:
                if seq != info.state.last_seq:
                    log.warning("relay: %d message(s) in %s after our last event were not published by us",
                                info.state.last_seq - seq, EVENT_STREAM)
                return position, tail_id, False
        return 0, tail_id, False

    def _own_position(self, subject: str | None, data: bytes | None, headers: dict[str, str] | None,
                      msg_id: str | None) -> int | None:
        """The position of a message this relay published (sealed by us, an
        envelope whose id is its Nats-Msg-Id), else None."""
        if not subject or not self.seal.holds(subject, data or b"", headers):
            return None
        try:
            event = orjson.loads(data or b"{}")
        except orjson.JSONDecodeError:
            return None
        if not isinstance(event, dict) or event.get("id") != msg_id or not isinstance(event.get("position"), int):
            return None
        return int(event["position"])
