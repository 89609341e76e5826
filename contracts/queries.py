"""Queries (`ticketing.v1.queries.<name>`) and their replies."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from contracts.alerts import DangerousCustomer
from contracts.envelope import AskedQuery, EventEnvelope
from contracts.health import AuditKey, AuditKeyReply, AuditVerify, AuditVerifyReply, Health, HealthReply
from contracts.staff import StaffAssessment, StaffAssessmentReply
from contracts.types import Instant, Metric, PeriodName, Priority, ShortText, Tier, Time

CaseKind = Literal["complaint", "repair_job", "callback"]
Count = Annotated[StrictInt, Field(ge=1, le=1000)]


class CaseHistory(AskedQuery):
    model_config = ConfigDict(extra="forbid")

    case_id: UUID
    at: Instant | None = None


class LimitAsOf(BaseModel):
    """One service limit of the case as it stood at the history's instant."""

    metric: Metric
    cycle: int
    state: Literal["running", "paused", "met", "breached", "ended"]
    """breached: past its deadline by then (still running, paused after it,
    or stopped late); ended: the case ended without the step."""
    started_at: Time
    stopped_at: Time | None
    deadline: Time | None
    """None while paused."""
    time_left_seconds: float | None
    """Running or paused: until the deadline at that instant (negative once
    overdue); None once stopped or while paused."""
    elapsed_seconds: float
    """Counted on the limit's calendar by then, without the time waited on the customer."""
    limit_seconds: int
    calendar: str
    policy: str
    """SHA-256 of the SLA policy file that set the limit (see `sla_policy`)."""
    rule_line: int | None
    """The line of the `[[limit]]` in that file."""


class PolicyInForce(BaseModel):
    digest: str
    """SHA-256 of the policy file's text."""
    adopted_at: Time | None
    """When the product began to run under it; None: before the first record."""


class LinkedCase(BaseModel):
    """A case linked to the one asked about (as the read models know it now)."""

    case_id: UUID
    kind: str
    relation: Literal["callback", "follow_up", "follows", "callback_of", "case"]
    """`callback`, `follow_up`: made for this case; `follows`, `callback_of`: the case this one was made for;
    `case`: one of this customer's cases."""
    status: str


class CaseHistoryReply(BaseModel):
    ok: Literal[True] = True
    case_id: UUID
    aggregate_type: str
    at: Time
    version: int
    state: dict[str, Any]
    events: list[EventEnvelope]
    sla: list[LimitAsOf] = Field(default_factory=list)
    began_at: Time | None = None
    """When its first event happened (after `at`: the case did not exist yet then)."""
    linked: list[LinkedCase] = Field(default_factory=list)
    """Its callbacks and follow-ups, the case it follows, a customer's cases: ids and status now."""
    """The case's service limits as they stood at `at` (empty for a customer)."""
    sla_policy: PolicyInForce | None = None
    """The SLA policy in force at `at`."""


class CustomerGet(AskedQuery):
    """Contact data is in the reply only for the roles that may read it."""

    model_config = ConfigDict(extra="forbid")

    customer_id: UUID


class CustomerGetReply(BaseModel):
    ok: Literal[True] = True
    customer: dict[str, Any]


class SlaOpen(AskedQuery):
    """Running limits, the most urgent first; every filter is optional."""

    model_config = ConfigDict(extra="forbid")

    assignee: ShortText | None = None
    tier: Tier | None = None
    kind: CaseKind | None = None
    metric: Metric | None = None
    limit: Count = 100
    """A page of at most this many limits."""
    after: Annotated[StrictStr, Field(max_length=200)] | None = None
    """The `next` of the page before: the page after it."""


class CaseLimit(BaseModel):
    """One service limit of one case (a cycle of it), with the case's grade and owner."""

    case_id: UUID
    case_type: CaseKind
    customer_id: UUID
    metric: Metric
    cycle: int
    tier: Tier
    priority: Priority
    assignee: str | None


class SlaLimit(CaseLimit):
    state: Literal["running", "paused", "at_risk", "breached"]
    """paused: waiting on the customer; at_risk: past the warning instant."""
    started_at: Time
    deadline: Time | None
    """None while paused."""
    time_left_seconds: float | None
    """Until the deadline (negative once past it); None while paused."""
    elapsed_seconds: float
    """Counted on the limit's calendar, without the time spent waiting."""
    limit_seconds: int
    calendar: str


class SlaOpenReply(BaseModel):
    ok: Literal[True] = True
    at: Time
    limits: list[SlaLimit]
    next: str | None = None
    """Pass as `after` for the next page; None on the last."""


class SlaBreaches(AskedQuery):
    """Limits breached, the latest first: `since`/`until` bound the instant
    of the breach (its deadline)."""

    model_config = ConfigDict(extra="forbid")

    since: Instant | None = None
    until: Instant | None = None
    metric: Metric | None = None
    tier: Tier | None = None
    kind: CaseKind | None = None
    limit: Count = 1000
    """A page of at most this many breaches."""
    after: Annotated[StrictStr, Field(max_length=200)] | None = None
    """The `next` of the page before: the page after it."""


class SlaBreach(CaseLimit):
    state: Literal["running", "paused", "missed", "ended"]
    """Still running past its deadline, paused, stopped late, or the case ended."""
    started_at: Time
    breached_at: Time
    stopped_at: Time | None
    elapsed_seconds: float
    limit_seconds: int
    recorded: bool
    """The case's history has its `sla_breached` event."""


class SlaBreachesReply(BaseModel):
    ok: Literal[True] = True
    at: Time
    breaches: list[SlaBreach]
    next: str | None = None
    """Pass as `after` for the next page; None on the last."""


class Dashboard(AskedQuery):
    model_config = ConfigDict(extra="forbid")


class Figures(BaseModel):
    """What happened in a period (`registered` and `resolved` by case kind;
    rates are shares from 0 to 1, None when there was nothing to count)."""

    period: str
    start: Time
    end: Time
    registered: dict[str, int]
    resolved: dict[str, int]
    first_contact_rate: float | None
    first_response_on_time: float | None
    resolution_on_time: float | None
    callbacks_done: int
    callbacks_missed: int
    satisfaction: float | None
    """Average callback score (0-100) of the cases revisited in the period."""
    revisits: int


class DashboardReply(BaseModel):
    ok: Literal[True] = True
    at: Time
    timezone: str
    open_total: int
    open: dict[str, dict[str, int]]
    """Open cases by kind, status, priority, tier, category, region and assignee."""
    backlog: dict[str, int]
    """Open cases by age."""
    today: Figures
    month: Figures
    limits_at_risk: int
    limits_breached: int


class Report(AskedQuery):
    model_config = ConfigDict(extra="forbid")

    period: PeriodName


class Ranked(BaseModel):
    name: str
    count: int


class WeekScore(BaseModel):
    week: str
    start: Time
    end: Time
    average: float | None
    count: int


class OnTime(BaseModel):
    met: int
    missed: int
    rate: float | None


class TypicalCase(BaseModel):
    case_id: UUID
    kind: str
    category: str | None
    product: str | None
    region: str | None
    tier: str
    why: list[str]


class ReportReply(BaseModel):
    ok: Literal[True] = True
    period: str
    start: Time
    end: Time
    timezone: str
    figures: Figures
    previous: Figures
    complaint_rate: float | None
    """Complaints per 100 customers."""
    complaint_rate_previous: float | None
    complaint_rate_change: float | None
    """Relative change against the previous period (0.1 = 10 % more)."""
    satisfaction_trend: list[WeekScore]
    on_time: dict[str, OnTime]
    top: dict[str, list[Ranked]]
    typical_cases: list[TypicalCase]
    targets: dict[str, float]
    misses: list[str]


class CustomersDangerous(AskedQuery):
    """The dangerous-customer list, the most dangerous first; filters optional."""

    model_config = ConfigDict(extra="forbid")

    level: Literal["watch", "high", "critical"] | None = None
    """Only customers at this level or above."""
    danger_type: Literal["churn_risk", "malicious_complainant", "extortion", "escalation_magnet"] | None = None
    limit: Count = 100
    """A page of at most this many customers."""
    after: Annotated[StrictStr, Field(max_length=200)] | None = None
    """The `next` of the page before: the page after it."""


class CustomersDangerousReply(BaseModel):
    ok: Literal[True] = True
    at: Time
    customers: list[DangerousCustomer]
    total: int
    """Customers on the list (with the filters), in all pages."""
    next: str | None
    """Pass as `after` for the next page; None on the last."""


class SlaSimulate(AskedQuery):
    """What-if: the real history of the cases registered in [since, until)
    replayed against a candidate policy, beside what happened under the
    policies of then. Nothing live is touched; no alert is sent."""

    model_config = ConfigDict(extra="forbid")

    policy: Annotated[StrictStr, Field(min_length=1, max_length=200_000)]
    """The candidate policy file's text (TOML, as TICKETING_SLA_POLICY names)."""
    since: Instant
    until: Instant | None = None
    """Default: now."""
    kind: CaseKind | None = None
    """Cases of this kind only."""
    changed_limit: Annotated[StrictInt, Field(ge=0, le=10_000)] = 1000


class SimulatedFigure(BaseModel):
    dimension: Literal["metric", "kind", "tier", "priority"]
    value: str
    then_met: int
    then_breached: int
    then_on_time: float | None
    """met / (met + breached); None when no limit of the group was decided."""
    candidate_met: int
    candidate_breached: int
    candidate_on_time: float | None


class SimulatedChange(BaseModel):
    case_id: UUID
    case_type: CaseKind
    metric: Metric
    cycle: int
    then: Literal["met", "breached", "ended", "running", "none"]
    """none: the policy sets no such limit."""
    candidate: Literal["met", "breached", "ended", "running", "none"]


class SlaSimulateReply(BaseModel):
    ok: Literal[True] = True
    since: Time
    until: Time
    cases: int
    events_read: int
    candidate: str
    """SHA-256 of the candidate policy."""
    policies_then: list[PolicyInForce]
    figures: list[SimulatedFigure]
    changed_total: int
    changed: list[SimulatedChange]
    """The cases whose outcome would change (at most `changed_limit`)."""


QUERIES: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "case.history": (CaseHistory, CaseHistoryReply),
    "customer.get": (CustomerGet, CustomerGetReply),
    "sla.open": (SlaOpen, SlaOpenReply),
    "sla.breaches": (SlaBreaches, SlaBreachesReply),
    "dashboard": (Dashboard, DashboardReply),
    "report": (Report, ReportReply),
    "customers.dangerous": (CustomersDangerous, CustomersDangerousReply),
    "health": (Health, HealthReply),
    "audit.verify": (AuditVerify, AuditVerifyReply),
    "audit.key": (AuditKey, AuditKeyReply),
    "sla.simulate": (SlaSimulate, SlaSimulateReply),
    "staff.assessment": (StaffAssessment, StaffAssessmentReply),
}
