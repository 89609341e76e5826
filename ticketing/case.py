"""What every case kind shares: who acted and why (the command context), the
event base that records it, and the state table that says which command may
run in which status and by which roles."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from ticketing.errors import Forbidden, InvalidTransition
from ticketing.values import Checks, Metric, Priority, Role


@dataclass(frozen=True)
class Context:
    """Who issues a command, when, and in answer to what. The time is passed
    in, never read from a clock inside the domain."""

    actor_id: str
    role: Role
    at: datetime
    correlation_id: UUID
    causation_id: UUID | None = None
    compensation_limit: Decimal | None = None
    """The most compensation below a supervisor (None: no limit)."""
    via: str | None = None
    """The gateway that signed the actor in and acts on their behalf, if any."""

    def event_fields(self) -> dict[str, Any]:
        actor: dict[str, Any] = {"id": self.actor_id, "role": self.role.value}
        if self.via is not None:
            actor["via"] = {"id": self.via, "role": Role.GATEWAY.value}
        return {
            "timestamp": self.at,
            "actor": actor,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
        }


STAFF = frozenset({Role.AGENT, Role.SUPERVISOR, Role.MANAGER, Role.SYSTEM})
LEADS = frozenset({Role.SUPERVISOR, Role.MANAGER, Role.SYSTEM})
INTAKE = STAFF | {Role.SERVICE}
"""Who may register a case or a customer: the staff, and another system
(a web form, a CRM) when the command is granted to it."""


@dataclass(frozen=True)
class Step:
    """One row of a case kind's state table.

    `to` is the status after the step (None keeps it); `waiting` says whether the
    step may run while the case waits on the customer: False (not then), True
    (only then) or None (either way)."""

    allowed_from: frozenset[str]
    to: str | None
    roles: frozenset[Role] = STAFF
    waiting: bool | None = False


@dataclass(frozen=True)
class Lifecycle:
    kind: str
    steps: dict[str, Step] = field(default_factory=dict)
    register_roles: frozenset[Role] = STAFF

    def check_register(self, role: Role) -> None:
        if role not in self.register_roles:
            raise Forbidden(f"a {role.value} may not register a {self.kind}")

    def check(self, command: str, status: str, waiting: bool, role: Role) -> Step:
        step = self.steps[command]
        if role not in step.roles:
            raise Forbidden(f"a {role.value} may not {command} a {self.kind}")
        if status not in step.allowed_from:
            raise InvalidTransition(f"cannot {command} a {self.kind} that is {status}")
        if step.waiting is False and waiting:
            raise InvalidTransition(
                f"cannot {command} a {self.kind} while it waits on the customer; resume it first"
            )
        if step.waiting is True and not waiting:
            raise InvalidTransition(f"cannot {command} a {self.kind} that is not waiting on the customer")
        return step


class Case(Aggregate):
    """Base of the case aggregates: every event carries its actor and the
    correlation and causation ids of the command that caused it."""

    lifecycle: Lifecycle
    status: str
    waiting_on_customer: bool

    class Event(Aggregate.Event):
        actor: dict[str, Any]
        correlation_id: UUID
        causation_id: UUID | None

        step: ClassVar[str] = ""
        """The command of the state table whose target status this event sets."""
        confidential: ClassVar[bool] = False
        """Holds customer contact data: stored encrypted, never published as is."""
        sealed: ClassVar[tuple[str, ...]] = ()
        """The contact fields, sealed in the store with the customer's own key
        (destroyed when the customer is forgotten)."""
        sealed_for: ClassVar[str | None] = None
        """The attribute naming that customer; None: the event's own aggregate."""

        def apply(self, aggregate: Any) -> None:
            self.evolve(aggregate)
            if self.step:
                target = aggregate.lifecycle.steps[self.step].to
                if target is not None:
                    aggregate.status = target

        def evolve(self, aggregate: Any) -> None:
            """Apply this event's own data; the status follows the state table."""

    def _step(self, command: str, ctx: Context) -> Step:
        return self.lifecycle.check(command, self.status, self.waiting_on_customer, ctx.role)

    def _record(self, event_class: type[Aggregate.Event], ctx: Context, **data: Any) -> None:
        self.trigger_event(event_class, **ctx.event_fields(), **data)

    SlaBreached: type[Case.Event]
    sla_breaches: list[dict[str, Any]]

    def record_sla_breach(self, ctx: Context, metric: str, cycle: int, deadline: datetime,
                          limit_seconds: int) -> None:
        """Once per limit and cycle: the monitor's repeat of the same breach is refused."""
        self._step("record_sla_breach", ctx)
        checks = Checks()
        checks.choice("metric", metric, Metric)
        if isinstance(cycle, bool) or not isinstance(cycle, int) or cycle < 1:
            checks.fail("cycle", "must be a positive integer")
        if isinstance(limit_seconds, bool) or not isinstance(limit_seconds, int) or limit_seconds < 1:
            checks.fail("limit_seconds", "must be a positive integer")
        checks.done()
        if any(b["metric"] == metric and b["cycle"] == cycle for b in self.sla_breaches):
            raise InvalidTransition(f"the {metric} breach of cycle {cycle} is already recorded")
        self._record(self.SlaBreached, ctx, metric=metric, cycle=cycle, deadline=deadline,
                     limit_seconds=limit_seconds)

    contact_fields: ClassVar[tuple[str, ...]] = ()
    """Attributes holding customer contact data: kept out of `state()`."""

    def state(self) -> dict[str, Any]:
        """The case's public state, for audits: every attribute the events set
        but contact data."""
        public = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in self.contact_fields}
        return {"id": self.id, "version": self.version, "created_on": self.created_on,
                "modified_on": self.modified_on, **public}

class SlaBreach(Case.Event):
    """A service limit passed its deadline before the step it waits for (the
    SLA monitor records it, so a replay of the case shows it)."""

    step = "record_sla_breach"
    metric: str
    cycle: int
    deadline: datetime
    limit_seconds: int

    def evolve(self, aggregate: Any) -> None:
        aggregate.sla_breaches = [*aggregate.sla_breaches, {
            "metric": self.metric, "cycle": self.cycle, "deadline": self.deadline,
            "limit_seconds": self.limit_seconds, "recorded_at": self.timestamp}]


def record_sla_breach_step(statuses: frozenset[str]) -> Step:
    """The state table row every kind has: the system records a breach in any status."""
    return Step(statuses, None, frozenset({Role.SYSTEM}), waiting=None)


class FollowUp(Case.Event):
    step = "link_follow_up"
    follow_up_case_id: UUID

    def evolve(self, aggregate: Any) -> None:
        aggregate.follow_up_case_ids = [*aggregate.follow_up_case_ids, self.follow_up_case_id]


class PriorityChange(Case.Event):
    step = "reprioritise"
    priority: str
    reason: str

    def evolve(self, aggregate: Any) -> None:
        aggregate.priority = self.priority


class LoopCase(Case):
    """A case that runs the closed loop to its end (complaints, repair jobs):
    revisited after a callback, reopened with a reason, followed up. Each kind
    declares its own `PriorityChanged`, `Revisited`, `Reopened` and
    `FollowUpOpened` events (how they change the case differs) and rows for
    these commands."""

    follow_up_case_ids: list[UUID]
    priority: str
    PriorityChanged: type[Case.Event]
    Revisited: type[Case.Event]
    Reopened: type[Case.Event]
    FollowUpOpened: type[Case.Event]

    def reprioritise(self, ctx: Context, priority: str, reason: str) -> None:
        """A supervisor changes a running case's priority (its service limits follow)."""
        self._step("reprioritise", ctx)
        checks = Checks()
        checks.choice("priority", priority, Priority)
        reason_ = checks.text("reason", reason)
        checks.done()
        if priority == self.priority:
            raise InvalidTransition(f"the {self.lifecycle.kind} is already {priority}")
        self._record(self.PriorityChanged, ctx, priority=priority, reason=reason_)

    def revisit(self, ctx: Context, satisfied: bool, score: int, comment: str | None = None) -> None:
        """The callback's verdict (回访)."""
        self._step("revisit", ctx)
        checks = Checks()
        checks.score("score", score)
        comment = checks.text("comment", comment, required=False)
        checks.done()
        self._record(self.Revisited, ctx, satisfied=satisfied, score=score, comment=comment)

    def reopen(self, ctx: Context, reason: str) -> None:
        self._step("reopen", ctx)
        checks = Checks()
        reason_ = checks.text("reason", reason)
        checks.done()
        self._record(self.Reopened, ctx, reason=reason_)

    def link_follow_up(self, ctx: Context, follow_up_case_id: UUID) -> None:
        """Record that a follow-up case was opened on this one (在原有个案基础上
        建立跟进个案); this case stays as it was."""
        self._step("link_follow_up", ctx)
        if follow_up_case_id == self.id:
            raise InvalidTransition(f"a {self.lifecycle.kind} cannot follow itself")
        if follow_up_case_id in self.follow_up_case_ids:
            raise InvalidTransition(f"follow-up {follow_up_case_id} is already linked")
        self._record(self.FollowUpOpened, ctx, follow_up_case_id=follow_up_case_id)
