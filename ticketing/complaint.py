"""Complaint / 客户投诉: registered -> analysed -> resolved -> revisited.

The state table below is the whole lifecycle; each command method validates
its input, checks the table, and records one event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ticketing.case import (
    INTAKE,
    LEADS,
    Case,
    Context,
    FollowUp,
    Lifecycle,
    LoopCase,
    PriorityChange,
    SlaBreach,
    Step,
    record_sla_breach_step,
)
from ticketing.errors import Forbidden, InvalidTransition
from ticketing.values import (
    Category,
    Channel,
    Checks,
    Department,
    EscalationLevel,
    Priority,
    ResponsibleParty,
    Severity,
)

REGISTERED = "registered"
ACKNOWLEDGED = "acknowledged"
ANALYSED = "analysed"
REOPENED = "reopened"
RESOLVED = "resolved"
REVISITED = "revisited"
CLOSED = "closed"
WITHDRAWN = "withdrawn"

OPEN = frozenset({REGISTERED, ACKNOWLEDGED, ANALYSED, REOPENED})

LIFECYCLE = Lifecycle(
    "complaint",
    {
        # command          allowed from                        to
        "acknowledge": Step(frozenset({REGISTERED}), ACKNOWLEDGED),
        "assign": Step(OPEN, None, waiting=None),
        "analyse": Step(OPEN, ANALYSED),
        "escalate": Step(OPEN, None, waiting=None),
        "await_customer": Step(OPEN, None),
        "resume": Step(OPEN, None, waiting=True),
        "resolve": Step(OPEN, RESOLVED),
        "revisit": Step(frozenset({RESOLVED}), REVISITED),
        "reopen": Step(frozenset({RESOLVED, REVISITED, CLOSED}), REOPENED),
        "withdraw": Step(OPEN, WITHDRAWN, waiting=None),
        "close": Step(frozenset({RESOLVED, REVISITED}), CLOSED),
        "link_follow_up": Step(OPEN | {RESOLVED, REVISITED, CLOSED, WITHDRAWN}, None, waiting=None),
        "reprioritise": Step(OPEN, None, LEADS, waiting=None),
        "record_sla_breach": record_sla_breach_step(OPEN | {RESOLVED, REVISITED, CLOSED, WITHDRAWN}),
    },
    register_roles=INTAKE,
)


@dataclass(frozen=True)
class Registration:
    customer_id: UUID
    channel: str
    category: str
    priority: str
    description: str
    product: str | None = None
    region: str | None = None
    occurred_at: datetime | None = None
    follows_case_id: UUID | None = None
    channel_detail: str | None = None
    about_staff: str | None = None


class Complaint(LoopCase):
    lifecycle = LIFECYCLE

    def __init__(self) -> None:
        self.status = REGISTERED
        self.waiting_on_customer = False
        self.assignee: str | None = None
        self.department: str | None = None
        self.escalation: str | None = None
        self.cycle = 1
        self.acknowledged_at: datetime | None = None
        self.analysed_at: datetime | None = None
        self.resolved_at: datetime | None = None
        self.revisited_at: datetime | None = None
        self.closed_at: datetime | None = None
        self.withdrawn_at: datetime | None = None
        self.analysis: dict[str, Any] | None = None
        self.resolution: dict[str, Any] | None = None
        self.compensated = Decimal("0.00")
        """Every compensation granted on this complaint, over all its resolves."""
        self.revisit_outcome: dict[str, Any] | None = None
        self.follow_up_case_ids: list[UUID] = []
        self.sla_breaches: list[dict[str, Any]] = []

    # ---- events -------------------------------------------------------------

    class Registered(Aggregate.Created, Case.Event):
        class_version = 3  # v2 adds channel_detail, v3 about_staff; earlier stored events are upcast on read
        customer_id: UUID
        channel: str
        category: str
        priority: str
        description: str
        product: str | None
        region: str | None
        occurred_at: datetime | None
        follows_case_id: UUID | None
        channel_detail: str | None
        about_staff: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["channel_detail"] = None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["about_staff"] = None

        def apply(self, aggregate: Any) -> None:
            for name in ("customer_id", "channel", "category", "priority", "description",
                         "product", "region", "occurred_at", "follows_case_id", "channel_detail",
                         "about_staff"):
                setattr(aggregate, name, getattr(self, name))
            aggregate.status = REGISTERED

    class Acknowledged(Case.Event):
        step = "acknowledge"
        note: str | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.acknowledged_at = self.timestamp

    class Assigned(Case.Event):
        step = "assign"
        assignee: str
        department: str | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.assignee = self.assignee
            aggregate.department = self.department or aggregate.department

    class Analysed(Case.Event):
        step = "analyse"
        root_cause: str
        responsible_party: str
        severity: str
        plan: str
        department: str | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.analysed_at = self.timestamp
            aggregate.analysis = {
                "root_cause": self.root_cause,
                "responsible_party": self.responsible_party,
                "severity": self.severity,
                "plan": self.plan,
                "department": self.department,
            }
            aggregate.department = self.department or aggregate.department

    class Escalated(Case.Event):
        step = "escalate"
        level: str
        reason: str

        def evolve(self, aggregate: Any) -> None:
            aggregate.escalation = self.level

    class CustomerAwaited(Case.Event):
        step = "await_customer"
        reason: str

        def evolve(self, aggregate: Any) -> None:
            aggregate.waiting_on_customer = True

    class Resumed(Case.Event):
        step = "resume"
        note: str | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.waiting_on_customer = False

    class Resolved(Case.Event):
        step = "resolve"
        resolution: str
        first_contact: bool
        compensation: Decimal | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.resolved_at = self.timestamp
            aggregate.resolution = {
                "resolution": self.resolution,
                "first_contact": self.first_contact,
                "compensation": self.compensation,
            }
            aggregate.compensated += self.compensation or 0

    class Revisited(Case.Event):
        step = "revisit"
        satisfied: bool
        score: int
        comment: str | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.revisited_at = self.timestamp
            aggregate.revisit_outcome = {
                "satisfied": self.satisfied,
                "score": self.score,
                "comment": self.comment,
            }

    class Reopened(Case.Event):
        step = "reopen"
        reason: str

        def evolve(self, aggregate: Any) -> None:
            aggregate.cycle += 1
            aggregate.resolved_at = aggregate.revisited_at = aggregate.closed_at = None
            aggregate.resolution = aggregate.revisit_outcome = None

    class Withdrawn(Case.Event):
        step = "withdraw"
        reason: str | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.withdrawn_at = self.timestamp
            aggregate.waiting_on_customer = False

    class Closed(Case.Event):
        step = "close"
        note: str | None

        def evolve(self, aggregate: Any) -> None:
            aggregate.closed_at = self.timestamp

    class FollowUpOpened(FollowUp):
        pass

    class SlaBreached(SlaBreach):
        pass

    class PriorityChanged(PriorityChange):
        pass

    # ---- commands -----------------------------------------------------------

    @classmethod
    def register(cls, case_id: UUID, registration: Registration, ctx: Context) -> Complaint:
        LIFECYCLE.check_register(ctx.role)
        checks = Checks()
        checks.choice("channel", registration.channel, Channel)
        checks.choice("category", registration.category, Category)
        checks.choice("priority", registration.priority, Priority)
        description = checks.text("description", registration.description)
        product = checks.text("product", registration.product, required=False, max_length=200)
        region = checks.text("region", registration.region, required=False, max_length=200)
        channel_detail = checks.text("channel_detail", registration.channel_detail, required=False, max_length=200)
        about_staff = checks.text("about_staff", registration.about_staff, required=False, max_length=200)
        if registration.occurred_at is not None and registration.occurred_at > ctx.at:
            checks.fail("occurred_at", "must not be in the future")
        checks.done()
        return cls._create(
            cls.Registered,
            id=case_id,
            **ctx.event_fields(),
            customer_id=registration.customer_id,
            channel=registration.channel,
            category=registration.category,
            priority=registration.priority,
            description=description,
            product=product,
            region=region,
            occurred_at=registration.occurred_at,
            follows_case_id=registration.follows_case_id,
            channel_detail=channel_detail,
            about_staff=about_staff,
        )

    def acknowledge(self, ctx: Context, note: str | None = None) -> None:
        self._step("acknowledge", ctx)
        checks = Checks()
        note = checks.text("note", note, required=False)
        checks.done()
        self._record(self.Acknowledged, ctx, note=note)

    def assign(self, ctx: Context, assignee: str, department: str | None = None) -> None:
        self._step("assign", ctx)
        checks = Checks()
        assignee_ = checks.text("assignee", assignee, max_length=200)
        checks.choice("department", department, Department, required=False)
        checks.done()
        self._record(self.Assigned, ctx, assignee=assignee_, department=department)

    def analyse(self, ctx: Context, root_cause: str, responsible_party: str, severity: str,
                plan: str, department: str | None = None) -> None:
        self._step("analyse", ctx)
        checks = Checks()
        root_cause_ = checks.text("root_cause", root_cause)
        checks.choice("responsible_party", responsible_party, ResponsibleParty)
        checks.choice("severity", severity, Severity)
        plan_ = checks.text("plan", plan)
        checks.choice("department", department, Department, required=False)
        checks.done()
        self._record(self.Analysed, ctx, root_cause=root_cause_, responsible_party=responsible_party,
                     severity=severity, plan=plan_, department=department)

    def escalate(self, ctx: Context, reason: str, to: str | None = None) -> None:
        """Agents escalate to a supervisor; only a supervisor or above hands a
        case on to a manager (未经上级确认，不得随意向客户承诺)."""
        self._step("escalate", ctx)
        checks = Checks()
        reason_ = checks.text("reason", reason)
        checks.choice("to", to, EscalationLevel, required=False)
        checks.done()
        level = to or (EscalationLevel.MANAGER if self.escalation else EscalationLevel.SUPERVISOR)
        if self.escalation == EscalationLevel.MANAGER or level == self.escalation:
            raise InvalidTransition(f"complaint is already escalated to {self.escalation}")
        if level == EscalationLevel.SUPERVISOR and self.escalation is not None:
            raise InvalidTransition("cannot escalate down from a manager to a supervisor")
        if level == EscalationLevel.MANAGER and ctx.role not in LEADS:
            raise Forbidden("only a supervisor or above may escalate to a manager")
        self._record(self.Escalated, ctx, level=str(level), reason=reason_)

    def await_customer(self, ctx: Context, reason: str) -> None:
        self._step("await_customer", ctx)
        checks = Checks()
        reason_ = checks.text("reason", reason)
        checks.done()
        self._record(self.CustomerAwaited, ctx, reason=reason_)

    def resume(self, ctx: Context, note: str | None = None) -> None:
        self._step("resume", ctx)
        checks = Checks()
        note = checks.text("note", note, required=False)
        checks.done()
        self._record(self.Resumed, ctx, note=note)

    def resolve(self, ctx: Context, resolution: str, first_contact: bool,
                compensation: str | Decimal | None = None) -> None:
        self._step("resolve", ctx)
        checks = Checks()
        resolution_ = checks.text("resolution", resolution)
        amount = checks.money("compensation", compensation)
        checks.done()
        limit = ctx.compensation_limit
        total = self.compensated + (amount or 0)
        if amount and limit is not None and total > limit and ctx.role not in LEADS:
            before = f" ({self.compensated} granted before)" if self.compensated else ""
            raise Forbidden(f"compensation on this complaint would come to {total}{before}, above {limit}: "
                            f"that needs a supervisor's approval")
        self._record(self.Resolved, ctx, resolution=resolution_, first_contact=first_contact,
                     compensation=amount)

    def withdraw(self, ctx: Context, reason: str | None = None) -> None:
        self._step("withdraw", ctx)
        checks = Checks()
        reason = checks.text("reason", reason, required=False)
        checks.done()
        self._record(self.Withdrawn, ctx, reason=reason)

    def close(self, ctx: Context, note: str | None = None) -> None:
        self._step("close", ctx)
        checks = Checks()
        note = checks.text("note", note, required=False)
        checks.done()
        if self.escalation is not None and ctx.role not in LEADS:
            raise Forbidden("only a supervisor or above may close an escalated complaint")
        self._record(self.Closed, ctx, note=note)
