"""Commands in, replies out: parse and validate a request, run it on the
command writer inside one transaction with its idempotency record, and answer
in the v1 reply format. Nothing here raises to the bus: every failure is a
reply with an error code."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, PersistenceError
from pydantic import BaseModel, ValidationError

from contracts.catalog import COMMANDS
from contracts.envelope import CommandRequest, Error, ErrorDetail, ErrorReply, OkReply
from contracts.types import PERIOD_HINT, PERIOD_PATTERN
from handlers.batch import CommandBatch, Store, StoredReply
from handlers.identity import Directory, Identity, identify
from handlers.kinds import KINDS
from handlers.translate import case_id_for, event_id
from ticketing.access import acting
from ticketing.case import Case, Context
from ticketing.customer import Customer
from ticketing.errors import Conflict, DomainError, FieldProblem, NotFound, ValidationFailed
from ticketing.values import Role

log = logging.getLogger(__name__)

REQUEST_FIELDS = set(CommandRequest.model_fields)
CONFLICT_RETRIES = 5
"""How often a command without `expected_version` is run again on a case another writer just changed."""


class Writer(Protocol):
    async def run(self, work: Callable[[CommandBatch], Any], key: Any = None) -> Any: ...


def error_reply(code: str, message: str, details: list[ErrorDetail] | None = None) -> bytes:
    reply = ErrorReply(error=Error(code=code, message=message, details=details or []))  # type: ignore[arg-type]
    return orjson.dumps(reply.model_dump(mode="json"))


def problems_of(error: ValidationError, prefix: str = "") -> list[ErrorDetail]:
    return [ErrorDetail(field=prefix + ".".join(str(p) for p in e["loc"]) or "(body)", reason=_reason(e))
            for e in error.errors()]


def _reason(error: Any) -> str:
    """Pydantic's message, but in words where it would show a regular expression."""
    if error["type"] == "string_pattern_mismatch" and (error.get("ctx") or {}).get("pattern") == PERIOD_PATTERN:
        return f"{error['input']!r} is not {PERIOD_HINT}"
    return str(error["msg"])


def parse(aggregate: str, command: str, raw: bytes) -> tuple[CommandRequest, BaseModel]:
    """Raise ValidationFailed-like details for anything that is not a well-formed request."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _Invalid("payload is not JSON", [ErrorDetail(field="(body)", reason=str(e))]) from None
    if not isinstance(body, dict):
        raise _Invalid("payload must be a JSON object", [ErrorDetail(field="(body)", reason="not an object")])
    details: list[ErrorDetail] = []
    request = data = None
    try:
        request = CommandRequest.model_validate(body)
    except ValidationError as e:
        details += problems_of(e)
    raw_data = body.get("data", {})
    if isinstance(raw_data, dict):
        try:
            data = COMMANDS[aggregate][command].model_validate(raw_data)
        except ValidationError as e:
            details += problems_of(e, "data.")
    if details or request is None or data is None:
        raise _Invalid(f"invalid {aggregate}.{command} command", details)
    creates = KINDS[aggregate].creates
    if command == creates and request.aggregate_id is not None:
        raise _Invalid(f"aggregate_id must be absent on {creates}; the reply gives it",
                       [ErrorDetail(field="aggregate_id", reason=f"must be absent on {creates}")])
    if command != creates and request.aggregate_id is None:
        raise _Invalid("aggregate_id is required", [ErrorDetail(field="aggregate_id", reason="is required")])
    return request, data


class _Invalid(Exception):
    def __init__(self, message: str, details: list[ErrorDetail]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def fingerprint(subject: str, raw_request: dict[str, Any]) -> str:
    """What a command asked for; a command id reused for something else is refused."""
    canonical = orjson.dumps({"subject": subject, "request": raw_request}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def unknown_sender() -> bytes:
    return error_reply("forbidden", "no authenticated sender: connect with your credentials "
                                    "(`ticketing users add`) through the product's NATS accounts")


@dataclass(frozen=True)
class Acting:
    """Who carries out a command: the actor the events record, and the
    authenticated user behind it (the same, but for a gateway's person)."""

    actor_id: str
    role: Role
    via: str | None
    sender: Identity


class CommandService:
    def __init__(self, store: Store, writer: Writer, clock: Callable[[], datetime], directory: Directory, *,
                 compensation_limit: Decimal | None = None) -> None:
        self.store = store
        self.writer = writer
        self.clock = clock
        self.directory = directory
        self.compensation_limit = compensation_limit
        self._store_down = False

    async def handle(self, aggregate: str, command: str, raw: bytes, request_info: str | None) -> bytes:
        sender = identify(self.directory, request_info)
        if sender is None:
            return unknown_sender()
        try:
            request, data = parse(aggregate, command, raw)
        except _Invalid as invalid:
            return error_reply("validation_error", invalid.message, invalid.details)
        if not sender.may_send(f"{aggregate}.{command}"):
            return error_reply("forbidden", f"{aggregate}.{command} is not granted to {sender.name}")
        try:
            claimed = request.actor
            who = Acting(*acting(sender.name, sender.role, claimed and claimed.id, claimed and claimed.role),
                         sender=sender)
            reply = await self._recorded(aggregate, command, request, data, who)
            if self._store_down:
                self._store_down = False
                log.warning("the event store is back: commands are recorded again")
            return reply
        except DomainError as error:
            details = [ErrorDetail(field=p.field if p.field in REQUEST_FIELDS else f"data.{p.field}",
                                   reason=p.reason) for p in error.problems]
            return error_reply(error.code, error.message, details)
        except IntegrityError:
            return error_reply("conflict", "the case was changed by another writer; reload and retry")
        except PersistenceError as error:
            if not self._store_down:  # said once per outage, not per command
                self._store_down = True
                log.warning("the event store is unavailable (%s: %s): commands are answered `unavailable`, "
                            "nothing recorded, until it is back", type(error).__name__, str(error)[:200])
            return error_reply("unavailable", "the event store is unavailable; nothing was recorded, retry")
        except Exception:  # noqa: BLE001 - a bug must still get an answer, and is logged without payload
            log.exception("command %s.%s failed", aggregate, command)
            return error_reply("unavailable", "the command could not be recorded; nothing was recorded, retry")

    async def _recorded(self, aggregate: str, command: str, request: CommandRequest, data: BaseModel,
                        who: Acting) -> bytes:
        """The command run and recorded. Another writer (an instance beside this
        one) may record an event of the same case, or this very command_id,
        between our read and our write: the store refuses the second write
        (IntegrityError). Without `expected_version` the command did not care
        which version it met, so it is read again and run on the new state
        (the same command_id then finds its first reply), a few times; with
        one, the version it expected is gone: `conflict`."""
        tries = 0
        while True:
            try:
                return await self.writer.run(  # type: ignore[no-any-return]
                    lambda batch: self._execute(batch, aggregate, command, request, data, who), request.command_id)
            except IntegrityError:
                tries += 1
                if request.expected_version is not None or tries > CONFLICT_RETRIES:
                    raise

    def _execute(self, batch: CommandBatch, aggregate: str, command: str, request: CommandRequest,
                 data: BaseModel, who: Acting) -> bytes:
        """Runs on the writer thread, inside the group's transaction. Raises
        before changing anything when the command cannot be carried out."""
        sent = request.model_dump(mode="json") | {"sender": [who.sender.name, who.actor_id, who.role.value]}
        subject_fp = fingerprint(f"{aggregate}.{command}", sent)
        stored = batch.stored_reply(request.command_id)
        if stored is not None:
            return _repeat(stored, subject_fp)
        try:
            return self._carry_out(batch, aggregate, command, request, data, subject_fp, who)
        except DomainError:
            stored = batch.look_up(request.command_id)
            if stored is not None:  # done before: it fails now only because it was
                return _repeat(stored, subject_fp)
            raise

    def _carry_out(self, batch: CommandBatch, aggregate: str, command: str, request: CommandRequest,
                   data: BaseModel, subject_fp: str, who: Acting) -> bytes:
        now = self.clock()
        ctx = Context(actor_id=who.actor_id, role=who.role, via=who.via, at=now,
                      correlation_id=request.correlation_id or request.command_id,
                      causation_id=request.causation_id or request.command_id,
                      compensation_limit=self.compensation_limit)
        kind = KINDS[aggregate]
        fields = data.model_dump()
        if command == kind.creates:
            case = kind.create(case_id_for(request.command_id), fields, ctx)
            if "customer_id" in fields and aggregate != "customer":
                self._customer(batch, fields["customer_id"])
            new_events = list(case.pending_events)
        else:
            case = self._load(batch, kind.aggregate, aggregate, request)
            already = len(case.pending_events)
            getattr(case, command)(ctx, **fields)
            new_events = case.pending_events[already:]
        reply = orjson.dumps(OkReply(
            aggregate_id=case.id, version=case.version,
            events=[event_id(e.originator_id, e.originator_version) for e in new_events],
        ).model_dump(mode="json"))
        batch.record(case, StoredReply(request.command_id, subject_fp, reply, now))
        return reply

    @staticmethod
    def _customer(batch: CommandBatch, customer_id: UUID) -> None:
        """A case is registered only for a customer the department knows."""
        try:
            found = batch.get(customer_id)
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, Customer):
            raise NotFound(f"no customer {customer_id}", (FieldProblem("customer_id", "no such customer"),))

    @staticmethod
    def _load(batch: CommandBatch, aggregate_class: type[Case], aggregate: str, request: CommandRequest) -> Case:
        try:
            case = batch.get(request.aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"no {aggregate} {request.aggregate_id}") from None
        if not isinstance(case, aggregate_class):
            raise NotFound(f"no {aggregate} {request.aggregate_id}")
        if request.expected_version is not None and case.version < request.expected_version:
            case = batch.get_fresh(request.aggregate_id)  # our copy may be older than another instance's write
        if request.expected_version is not None and case.version != request.expected_version:
            raise Conflict(f"expected version {request.expected_version}, the {aggregate} is at {case.version}")
        return case


def _repeat(stored: StoredReply, subject_fp: str) -> bytes:
    """The first reply again, if this is the same command."""
    if stored.fingerprint != subject_fp:
        raise ValidationFailed.of_message("command_id", "was already used for a different command")
    return stored.reply
