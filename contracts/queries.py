"""Queries (`ticketing.v1.queries.<name>`) and their replies."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from contracts.alerts import DangerousCustomer
from contracts.envelope import AskedQuery, EventEnvelope
from contracts.figures import Dashboard, DashboardReply, Report, ReportReply
from contracts.health import AuditKey, AuditKeyReply, AuditVerify, AuditVerifyReply, Health, HealthReply
from contracts.sla_queries import (
    PolicyInForce,
    SlaBreaches,
    SlaBreachesReply,
    SlaOpen,
    SlaOpenReply,
    SlaSimulate,
    SlaSimulateReply,
)
from contracts.staff import StaffAssessment, StaffAssessmentReply
from contracts.types import Count, Instant, Metric, Time


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
