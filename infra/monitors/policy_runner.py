"""Runs a policy: a JetStream durable consumer of the events it reacts to;
for each event, the policy's commands are sent over the bus one after the
other, and the event is acknowledged only when every one is answered. The
events of a batch are handled concurrently (at most `CONCURRENCY` at once),
but those of one aggregate one after the other, in stream order, so the
policy keeps up with the load it follows instead of a round trip at a time. A
command the domain refuses (say, the case was revisited by hand meanwhile)
is logged and passed over; when the command side does not answer, the event
is delivered again later, and the commands' ids make the repeat harmless."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import orjson
from nats.aio.client import Client as Nats
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError

from contracts.catalog import EVENT_STREAM, POLICY_CONSUMER_PREFIX
from infra.auth.seal import Seal
from infra.bus.consuming import batches, made_again
from infra.common.part_state import PartState

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
BATCH = 64
CONCURRENCY = 32


class Policy(Protocol):
    name: str
    subjects: list[str]

    def react(self, event: dict[str, Any]) -> list[Any]: ...


class CommandSideAway(Exception):
    """No answer from the command side (or the store unavailable): try again later."""


async def send_command(nc: Nats, subject: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """A command over the bus as any client sends it: the reply, ok or refused;
    CommandSideAway when nothing was recorded and a repeat may succeed."""
    try:
        reply = await nc.request(subject, orjson.dumps(body), timeout=timeout)
    except (NatsTimeout, TimeoutError, NoRespondersError) as error:
        raise CommandSideAway(f"{subject}: {type(error).__name__}") from error
    answer: dict[str, Any] = orjson.loads(reply.data)
    if not answer.get("ok") and answer.get("error", {}).get("code") == "unavailable":
        raise CommandSideAway(f"{subject}: the store is unavailable")
    return answer


class PolicyRunner:
    def __init__(self, policy: Policy, nc: Nats, js: JetStreamContext, seal: Seal, *,
                 timeout: float = 10.0) -> None:
        self.policy = policy
        self.nc = nc
        self.js = js
        self.seal = seal
        self.timeout = timeout
        self.handled = 0
        self.state = PartState()
        self._stopping = False
        self._away = False

    @property
    def durable(self) -> str:
        return f"{POLICY_CONSUMER_PREFIX}{self.policy.name}"

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        sub = await self._subscribe()
        slots = asyncio.Semaphore(CONCURRENCY)
        async for messages in batches(sub, BATCH, lambda: not self._stopping, self.durable, revive=self._revive):
            lines: dict[str, list[Any]] = {}
            for message in messages:  # one line per aggregate: its events stay in order
                lines.setdefault(_aggregate_of(message), []).append(message)
            await asyncio.gather(*(self._run_line(line, slots) for line in lines.values()))

    async def _run_line(self, line: list[Any], slots: asyncio.Semaphore) -> None:
        for index, message in enumerate(line):
            try:
                async with slots:
                    await self._handle(message)
            except CommandSideAway as away:
                if not self._away:  # said once per outage, not per event
                    log.warning("%s: %s; trying again every %.0fs", self.durable, away, RETRY_SECONDS)
                    self._away = True
                self.state.failed(away)
                for later in line[index:]:  # keep the order: the rest of this line comes back after it
                    await later.nak(delay=RETRY_SECONDS)
                return
            await message.ack()
            self.handled += 1
            if self._away:
                log.warning("%s: the command side answers again", self.durable)
                self._away = False

    async def _subscribe(self) -> Any:
        return await self.js.pull_subscribe_bind(durable=await self._consumer(), stream=EVENT_STREAM)

    async def _revive(self) -> Any:
        """Its consumer made again, when it was gone: from the first event
        (what the policy sends again is idempotent: its commands' ids come
        from the events)."""
        async def make() -> Any:
            self.state.failed(f"its consumer {self.durable} on {EVENT_STREAM} was gone; made again")
            return await self._subscribe()
        return await made_again(self.js, EVENT_STREAM, self.durable, make)

    async def _consumer(self) -> str:
        config = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=DeliverPolicy.ALL, filter_subjects=self.policy.subjects,
                                ack_wait=60, max_ack_pending=64)
        try:
            await self.js.add_consumer(EVENT_STREAM, config)
        except BadRequestError:  # it exists with another configuration (the policy changed)
            await self.js.update_consumer(EVENT_STREAM, config)
        return self.durable

    async def _handle(self, message: Any) -> None:
        if not self.seal.holds(message.subject, message.data, message.headers):
            log.error("%s: stream message %s was not sealed by the product's relay; not acted on", self.durable,
                      message.metadata.sequence.stream)
            return
        try:
            event = orjson.loads(message.data)
        except orjson.JSONDecodeError:
            log.error("%s: stream message %s is not JSON; passed over", self.durable,
                      message.metadata.sequence.stream)
            return
        for send in await asyncio.to_thread(self.policy.react, event):
            answer = await send_command(self.nc, send.subject, send.body, self.timeout)
            if answer.get("ok"):
                continue
            code = answer["error"].get("code")
            self.state.failed(f"{send.subject} for event {event.get('id')} refused: {code}")
            log.warning("%s: %s for event %s refused: %s (%s)", self.durable, send.subject, event.get("id"),
                        code, answer.get("error", {}).get("message"))


def _aggregate_of(message: Any) -> str:
    """The aggregate an event message is about (its own line when unreadable)."""
    try:
        return str(orjson.loads(message.data)["aggregate_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"unreadable:{id(message)}"
