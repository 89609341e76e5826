"""Callback / 回访: the call after a case is resolved that asks the customer
whether they are satisfied. Scheduled when the case is resolved; each attempt
is recorded; after too many failed attempts it is missed; completed with the
customer's verdict. What follows from the verdict (the case revisited, a
follow-up case) is the callback policy's business, not this aggregate's."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ticketing.case import STAFF, Case, Context, Lifecycle, SlaBreach, Step, record_sla_breach_step
from ticketing.errors import ValidationFailed
from ticketing.values import AttemptOutcome, CaseType, Checks

SCHEDULED = "scheduled"
COMPLETED = "completed"
MISSED = "missed"

LIFECYCLE = Lifecycle(
    "callback",
    {
        # command      allowed from            to
        "attempt": Step(frozenset({SCHEDULED}), None),
        "complete": Step(frozenset({SCHEDULED}), COMPLETED),
        "record_sla_breach": record_sla_breach_step(frozenset({SCHEDULED, COMPLETED, MISSED})),
    },
    register_roles=STAFF,
)


class Callback(Case):
    lifecycle = LIFECYCLE

    def __init__(self) -> None:
        self.status = SCHEDULED
        self.waiting_on_customer = False
        self.attempts: list[dict[str, Any]] = []
        self.outcome: dict[str, Any] | None = None
        self.completed_at: datetime | None = None
        self.missed_at: datetime | None = None
        self.sla_breaches: list[dict[str, Any]] = []

    # ---- events: each carries the case it follows ----------------------------

    class Event(Case.Event):
        case_id: UUID
        case_type: str

    class Scheduled(Aggregate.Created, Event):
        customer_id: UUID
        due_at: datetime
        max_attempts: int

        def apply(self, aggregate: Any) -> None:
            aggregate.case_id = self.case_id
            aggregate.case_type = self.case_type
            aggregate.customer_id = self.customer_id
            aggregate.due_at = self.due_at
            aggregate.max_attempts = self.max_attempts
            aggregate.status = SCHEDULED

    class Attempted(Event):
        step = "attempt"
        outcome: str
        note: str | None
        attempt: int

        def evolve(self, aggregate: Any) -> None:
            aggregate.attempts.append({"at": self.timestamp, "outcome": self.outcome, "note": self.note})

    class Missed(Event):
        attempts: int

        def evolve(self, aggregate: Any) -> None:
            aggregate.status = MISSED
            aggregate.missed_at = self.timestamp

    class SlaBreached(Event, SlaBreach):
        pass

    class Completed(Event):
        step = "complete"
        satisfied: bool
        score: int
        comment: str | None
        new_request: str | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.completed_at = self.timestamp
            aggregate.outcome = {"satisfied": self.satisfied, "score": self.score, "comment": self.comment,
                                 "new_request": self.new_request}

    # ---- commands -------------------------------------------------------------

    @classmethod
    def schedule(cls, callback_id: UUID, ctx: Context, *, case_id: UUID, case_type: str, customer_id: UUID,
                 due_at: datetime, max_attempts: int = 3) -> Callback:
        LIFECYCLE.check_register(ctx.role)
        checks = Checks()
        checks.choice("case_type", case_type, CaseType)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 1 <= max_attempts <= 20:
            checks.fail("max_attempts", "must be an integer from 1 to 20")
        checks.done()
        return cls._create(cls.Scheduled, id=callback_id, **ctx.event_fields(), case_id=case_id,
                           case_type=case_type, customer_id=customer_id, due_at=due_at,
                           max_attempts=max_attempts)

    def _record(self, event_class: type[Aggregate.Event], ctx: Context, **data: Any) -> None:
        super()._record(event_class, ctx, case_id=self.case_id, case_type=self.case_type, **data)

    def attempt(self, ctx: Context, outcome: str, note: str | None = None) -> None:
        """A failed attempt; the last one allowed makes the callback missed."""
        self._step("attempt", ctx)
        checks = Checks()
        checks.choice("outcome", outcome, AttemptOutcome)
        note = checks.text("note", note, required=False)
        checks.done()
        number = len(self.attempts) + 1
        self._record(self.Attempted, ctx, outcome=outcome, note=note, attempt=number)
        if number >= self.max_attempts:
            self._record(self.Missed, ctx, attempts=number)

    def complete(self, ctx: Context, satisfied: bool, score: int, comment: str | None = None,
                 new_request: str | None = None) -> None:
        self._step("complete", ctx)
        checks = Checks()
        checks.score("score", score)
        comment = checks.text("comment", comment, required=False)
        new_request = checks.text("new_request", new_request, required=False)
        checks.done()
        if not isinstance(satisfied, bool):
            raise ValidationFailed.of_message("satisfied", "must be true or false")
        self._record(self.Completed, ctx, satisfied=satisfied, score=score, comment=comment,
                     new_request=new_request)
