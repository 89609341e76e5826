"""Callback commands (`ticketing.v1.commands.callback.<name>`) and events
(`ticketing.v1.events.callback.<name>`). Every event names the case it
follows (`case_id`, `case_type`)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import Field, StrictInt

from contracts import complaint
from contracts.types import AttemptOutcome, CaseType, Command, EventData, Flag, Instant, Score, Text, Time

MaxAttempts = Annotated[StrictInt, Field(ge=1, le=20)]

# ---- commands ---------------------------------------------------------------


class Schedule(Command):
    """Normally sent by the callback policy when a case is resolved."""

    case_id: UUID
    case_type: CaseType
    customer_id: UUID
    due_at: Instant
    max_attempts: MaxAttempts = 3


class Attempt(Command):
    """A call that did not reach the customer."""

    outcome: AttemptOutcome
    note: Text | None = None


class Complete(Command):
    satisfied: Flag
    score: Score
    comment: Text | None = None
    new_request: Text | None = None
    """Anything the customer asks for now: it opens a follow-up case."""


COMMANDS: dict[str, type[Command]] = {
    "schedule": Schedule,
    "attempt": Attempt,
    "complete": Complete,
    "record_sla_breach": complaint.RecordSlaBreach,
}

# ---- events -----------------------------------------------------------------


class CallbackEvent(EventData):
    case_id: UUID
    case_type: CaseType


class Scheduled(CallbackEvent):
    customer_id: UUID
    due_at: Time
    max_attempts: int


class Attempted(CallbackEvent):
    outcome: AttemptOutcome
    note: str | None = None
    attempt: int


class Missed(CallbackEvent):
    attempts: int


class Completed(CallbackEvent):
    satisfied: bool
    score: Score
    comment: str | None = None
    new_request: str | None = None


class CallbackSlaBreached(CallbackEvent, complaint.SlaBreached):
    pass


EVENTS: dict[str, type[EventData]] = {
    "scheduled": Scheduled,
    "attempted": Attempted,
    "missed": Missed,
    "completed": Completed,
    "sla_breached": CallbackSlaBreached,
}
