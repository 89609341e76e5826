"""The bus entry points, one subscription per command and query subject, in
a queue group so several instances share the load: the queries as FastStream
subscribers, the commands straight on nats-py (`CommandResponders`: measured,
FastStream's per-message machinery took a third of serve's time under load).
Each handler takes the raw message (our own parsing gives `validation_error`
replies with a detail per field) and answers with the reply bytes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage

from contracts.alerts import ALERTS
from contracts.catalog import COMMANDS, EVENTS, alert_subject, command_subject, event_subject, query_subject
from handlers.commands import CommandService
from handlers.identity import REQUEST_INFO
from handlers.queries import QueryService, answer

log = logging.getLogger(__name__)

QUEUE_GROUP = "ticketing"


Request = tuple[bytes, str | None]


async def raw_request(message: NatsMessage) -> Request:
    """The decoder of every handler here: the body as it came (parsed by us)
    and the server's word on who sent it."""
    return message.body, (message.headers or {}).get(REQUEST_INFO)


Observe = Callable[[str, bytes, float], None]
"""Told each command's name, reply and seconds taken (for metrics)."""


def _command_handler(service: CommandService, aggregate: str, command: str, observe: Observe | None,
                     ) -> Callable[[Request], Awaitable[bytes]]:
    # The request as a plain argument: asking for the message object instead
    # makes FastStream resolve it in a worker thread, a hop per command.
    name = f"{aggregate}.{command}"

    async def handle(request: Request) -> bytes:
        started = time.perf_counter()
        reply = await service.handle(aggregate, command, *request)
        if observe is not None:
            observe(name, reply, time.perf_counter() - started)
        return reply

    handle.__name__ = f"{aggregate}_{command}"
    return handle


def _query_handler(queries: QueryService, name: str, method: Any) -> Callable[[Request], Awaitable[bytes]]:
    async def handle(request: Request) -> bytes:
        return await answer(queries, name, method, *request)

    handle.__name__ = name.replace(".", "_")
    return handle


QUERY_HANDLERS: dict[str, tuple[Any, str]] = {
    "case.history": (QueryService.history, "A case's events and its state as of `at` (default now)."),
    "customer.get": (QueryService.customer, "A customer; contact data only for the roles that may read it."),
    "sla.open": (QueryService.sla_open, "Running limits with the time left, the most urgent first."),
    "sla.breaches": (QueryService.sla_breaches, "Limits breached in a period, the latest first."),
    "dashboard": (QueryService.dashboard, "Open work, today's and this month's figures, limits at risk."),
    "report": (QueryService.report, "The quality report of a month (2026-11) or a quarter (2026-Q4)."),
    "customers.dangerous": (QueryService.customers_dangerous, "The dangerous-customer list with reasons."),
    "health": (QueryService.health, "Each part: up or not, lag behind the store, parked messages, last error."),
    "audit.verify": (QueryService.audit_verify, "The store's hash chain and anchors checked; the first event "
                                                "altered, removed or inserted named."),
    "audit.key": (QueryService.audit_key, "The public half of the product's audit key (Ed25519, an nkey), which "
                                          "signs the chain's anchors, the alerts and case bundles."),
    "sla.simulate": (QueryService.sla_simulate, "What-if: a period's real history replayed against a candidate SLA "
                                                "policy, beside what happened."),
    "staff.assessment": (QueryService.staff_assessment, "The staff assessment of a month or a quarter: each "
                         "person's figures, score, grade, rank and streaks (an agent or technician: their own)."),
}


class CommandResponders:
    """The command subjects, served on nats-py directly: each request handled
    in a task of its own, at most `concurrency` at once (they wait on the
    group commit together; order between commands on one case is the
    sender's, `expected_version`), the rest waiting in the subscription's
    queue. FastStream serves the queries; for the commands its per-message
    machinery (anyio task groups, scopes and semaphores, middlewares, a log
    context) was measured at a third of serve's CPU under 32 senders: on
    nats-py, 2,312-2,458 commands/s against 1,624-1,644 through FastStream,
    back to back (`benchmarks/bench.py`). What a command does is the same
    `CommandService.handle` either way."""

    def __init__(self, service: CommandService, observe: Observe | None = None, concurrency: int = 64) -> None:
        self.service = service
        self.handlers = {(aggregate, command): _command_handler(service, aggregate, command, observe)
                         for aggregate, models in COMMANDS.items() for command in models}
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._subscriptions: list[Any] = []
        self._running: set[asyncio.Task[None]] = set()

    async def start(self, nc: Any) -> None:
        """Subscribe, and return once the server has every subscription: a
        round trip, twice (nats-py's first flush on a connection sometimes
        returns before the server has read what preceded it)."""
        for (aggregate, command), handle in self.handlers.items():
            self._subscriptions.append(await nc.subscribe(command_subject(aggregate, command), queue=QUEUE_GROUP,
                                                          cb=self._receiver(handle)))
        for _ in range(2):
            await nc.flush(timeout=10)

    def _receiver(self, handle: Callable[[Request], Awaitable[bytes]]) -> Callable[[Any], Awaitable[None]]:
        async def receive(msg: Any) -> None:
            await self._slots.acquire()  # (nats-py awaits this before it hands over the subject's next one)
            task = asyncio.create_task(self._answer(handle, msg))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return receive

    async def _answer(self, handle: Callable[[Request], Awaitable[bytes]], msg: Any) -> None:
        try:
            reply = await handle((msg.data, (msg.headers or {}).get(REQUEST_INFO)))
            if msg.reply:
                await msg.respond(reply)
        except Exception as error:  # noqa: BLE001 - handle answers every failure; this is the bus going away
            log.warning("a command's reply could not be sent: %s", type(error).__name__)
        finally:
            self._slots.release()

    async def stop(self, grace: float) -> None:
        """Take no more commands (those already received are still run) and
        answer those in hand, waiting at most `grace` seconds for each step:
        a command waits for its commit, milliseconds. The subjects are
        drained together, as tasks (not `wait_for`: nats-py's drain can
        swallow the cancellation at its timeout; with NATS away its flush
        waits out its own), and what is still draining then is left."""
        subscriptions, self._subscriptions = self._subscriptions, []
        draining = {asyncio.create_task(_quietly(s.drain()), name="command-drain") for s in subscriptions}
        if draining:
            _, left = await asyncio.wait(draining, timeout=grace)
            for task in left:
                task.cancel()
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace)


async def _quietly(step: Awaitable[Any]) -> None:
    with contextlib.suppress(Exception):  # NATS away or closed: nothing more comes anyway
        await step


def include_handlers(broker: NatsBroker, queries: QueryService) -> None:
    """The query subscribers (the commands: `CommandResponders`)."""
    for name, (method, description) in QUERY_HANDLERS.items():
        broker.subscriber(query_subject(name), queue=QUEUE_GROUP, max_workers=8, decoder=raw_request, title=name,
                          description=description)(_query_handler(queries, name, method))


def describe_commands(broker: NatsBroker, commands: CommandService) -> None:
    """Declare the command subjects as FastStream subscribers, for the
    AsyncAPI document (they are served by `CommandResponders`)."""
    for aggregate, models in COMMANDS.items():
        for command, model in models.items():
            broker.subscriber(
                command_subject(aggregate, command), queue=QUEUE_GROUP, decoder=raw_request,
                title=f"{aggregate}.{command}",
                description=(f"Command request; `data` follows contracts/schemas/commands/"
                             f"{aggregate}.{command}.json. {(model.__doc__ or '').strip()}"),
            )(_command_handler(commands, aggregate, command, None))


def describe_events(broker: NatsBroker) -> None:
    """Declare the event subjects the relay publishes, so the AsyncAPI document
    lists every event with its `data` schema."""
    for aggregate, models in EVENTS.items():
        for name, model in models.items():
            broker.publisher(event_subject(aggregate, name), title=f"{aggregate}.{name}", schema=model,
                             description="Event envelope (contracts/schemas/envelope/event.json) whose "
                                         "`data` is this schema; Nats-Msg-Id is the event id.")
    for name, alert in ALERTS.items():
        broker.publisher(alert_subject(name), title=f"alert {name}", schema=alert,
                         description="An alert in the stream TICKETING_ALERTS, once per fact (Nats-Msg-Id is its "
                                     "key); signed with the product's audit key: headers Ticketing-Key (the "
                                     "public key, `ticketing audit key`) and Ticketing-Signature (Ed25519 of "
                                     "the subject, a line feed and the body, base64).")
