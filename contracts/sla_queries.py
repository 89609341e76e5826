"""The service-limit queries: `sla.open` (running limits, the most urgent
first), `sla.breaches` (breached in a period) and `sla.simulate` (a period
replayed against a candidate policy)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from contracts.envelope import AskedQuery
from contracts.types import CaseKind, Count, Instant, Metric, Priority, ShortText, Tier, Time


class PolicyInForce(BaseModel):
    digest: str
    """SHA-256 of the policy file's text."""
    adopted_at: Time | None
    """When the product began to run under it; None: before the first record."""


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
