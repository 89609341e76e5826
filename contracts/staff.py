"""The staff assessment query (`staff.assessment`): each person's card for
a month or a quarter. Who each figure counts for: ticketing/assessment.py."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import AskedQuery
from contracts.types import PeriodName, ShortText, Time


class StaffAssessment(AskedQuery):
    """A supervisor, manager or auditor sees every card (or `person`'s); an
    agent or technician sees only their own."""

    model_config = ConfigDict(extra="forbid")

    period: PeriodName
    """A month (2026-11) or a quarter (2026-Q4), in the department's time zone."""
    person: ShortText | None = None
    """One person's card (their user id)."""


class LimitCount(BaseModel):
    met: int
    missed: int


class StaffFigures(BaseModel):
    handled: dict[str, int]
    """Cases resolved while theirs, by kind (complaint, repair_job)."""
    handled_total: int
    limits: dict[str, LimitCount]
    """Service limits stopped on their cases in the period, by metric."""
    on_time: float | None
    """Met of met and missed (None: none stopped)."""
    callbacks_on_their_cases: int
    average_score: float | None
    """The callbacks' average score (0-100) on the cases they handled."""
    satisfied_share: float | None
    first_contact: int
    """Their resolutions at first contact ..."""
    first_contact_known: int
    """... of those that say whether they were."""
    first_contact_share: float | None
    reopened: int
    follow_ups: int
    escalated: int
    disputes: int
    """Complaints naming them (`about_staff`)."""
    callbacks_done: int
    callbacks_missed: int


class StaffCard(BaseModel):
    person: str
    team: str
    """The role they are assessed in (each role ranked on its own)."""
    rank: int
    """In the team (equal scores share a rank)."""
    team_size: int
    score: float
    """Out of 100: the weighted parts less the deductions."""
    grade: str
    grade_meaning: str
    parts: dict[str, float | None]
    """Each part of the score as a share (0-1); None: nothing to count, left out."""
    deducted: float
    figures: StaffFigures
    first_place_months: int
    """Months running (up to the period's last) in first place of the team."""
    failing_months: int
    """Months running in the failing grade."""
    bonus: bool
    """First place for the rules' number of months running."""
    post_at_risk: bool
    """The failing grade for the rules' number of months running."""


class GradeBand(BaseModel):
    name: str
    min: float
    meaning: str


class StaffAssessmentReply(BaseModel):
    ok: Literal[True] = True
    period: str
    start: Time
    end: Time
    timezone: str
    months: list[str]
    rules: str
    """The SHA-256 of the assessment rules file the scores come from."""
    weights: dict[str, float]
    deductions: dict[str, float]
    grades: list[GradeBand]
    cards: list[StaffCard]
    unassessed: list[str] = Field(default_factory=list)
    """People of an assessed role who acted in the period but handled no case: not graded."""
    """By team, then rank."""
