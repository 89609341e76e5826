"""The figures' queries: `dashboard` (open work, today and this month) and
`report` (a month's or a quarter's quality report), with the figures both
share."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from contracts.envelope import AskedQuery
from contracts.types import PeriodName, Time


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
