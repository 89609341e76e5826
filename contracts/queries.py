"""Queries (`ticketing.v1.queries.<name>`) and their replies."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from contracts.envelope import Actor, EventEnvelope
from contracts.types import Metric, Priority, ShortText, Tier, Time

CaseKind = Literal["complaint", "repair_job", "callback"]
Count = Annotated[StrictInt, Field(ge=1, le=1000)]


class CaseHistory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_id: UUID
    at: Time | None = None


class CaseHistoryReply(BaseModel):
    ok: Literal[True] = True
    case_id: UUID
    aggregate_type: str
    at: Time
    version: int
    state: dict[str, Any]
    events: list[EventEnvelope]


class CustomerGet(BaseModel):
    """Contact data is in the reply only for the roles that may read it."""

    model_config = ConfigDict(extra="forbid")

    customer_id: UUID
    actor: Actor


class CustomerGetReply(BaseModel):
    ok: Literal[True] = True
    customer: dict[str, Any]


class SlaOpen(BaseModel):
    """Running limits, the most urgent first; every filter is optional."""

    model_config = ConfigDict(extra="forbid")

    assignee: ShortText | None = None
    tier: Tier | None = None
    kind: CaseKind | None = None
    metric: Metric | None = None
    limit: Count = 100


class SlaLimit(BaseModel):
    case_id: UUID
    case_type: CaseKind
    customer_id: UUID
    metric: Metric
    cycle: int
    tier: Tier
    priority: Priority
    assignee: str | None
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


class SlaBreaches(BaseModel):
    """Limits breached, the latest first: `since`/`until` bound the instant
    of the breach (its deadline)."""

    model_config = ConfigDict(extra="forbid")

    since: Time | None = None
    until: Time | None = None
    metric: Metric | None = None
    tier: Tier | None = None
    kind: CaseKind | None = None
    limit: Count = 1000


class SlaBreach(BaseModel):
    case_id: UUID
    case_type: CaseKind
    customer_id: UUID
    metric: Metric
    cycle: int
    tier: Tier
    priority: Priority
    assignee: str | None
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


QUERIES: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "case.history": (CaseHistory, CaseHistoryReply),
    "customer.get": (CustomerGet, CustomerGetReply),
    "sla.open": (SlaOpen, SlaOpenReply),
    "sla.breaches": (SlaBreaches, SlaBreachesReply),
}
