"""The staff assessment (`staff.assessment`, `ticketing staff`, the report's
staff section): the period's cards from the per-person month counters of the
staff and SLA read models, scored by the assessment rules; the streaks from
the months before it, each scored the same way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from contracts.staff import GradeBand, LimitCount, StaffAssessmentReply, StaffCard, StaffFigures
from projections.sla_tables import sla_staff_month
from projections.staff import month_figures, people, staff_month
from ticketing.assessment import METRICS, AssessmentRules, Card, handled, share
from ticketing.periods import Period

LOOKBACK_MONTHS = 24
"""How far back the streaks are followed."""
STREAK_PAGE = 4
"""Months read at a time while following them."""


def months_back(last: str, count: int) -> list[str]:
    """`last` and the `count - 1` months before it, the latest first."""
    year, month = int(last[:4]), int(last[5:])
    found = []
    for _ in range(count):
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return found


def period_months(period: Period, zone: ZoneInfo) -> list[str]:
    """The months of a month or a quarter, in order."""
    first = period.start.astimezone(zone)
    return [f"{first.year + (first.month - 1 + i) // 12:04d}-{(first.month - 1 + i) % 12 + 1:02d}"
            for i in range(3 if "Q" in period.name else 1)]


def assessment(conn: Connection, rules: AssessmentRules, period: Period, zone: ZoneInfo,
               person: str | None = None) -> StaffAssessmentReply:
    """Every card of the period (or `person`'s: ranked in the whole team all the same)."""
    months = period_months(period, zone)
    tables = (staff_month, sla_staff_month)
    counted = month_figures(conn, tables, months)
    roles = people(conn)

    def cards(figures: Mapping[str, Counter[str]]) -> dict[str, Card]:
        return {c.person: c for c in rules.assess({p: (roles[p], f) for p, f in figures.items() if p in roles})}

    summed: dict[str, Counter[str]] = {}
    for month in months:
        for who, figures in counted[month].items():
            summed.setdefault(who, Counter()).update(figures)
    found = [card for card in cards(summed).values() if person in (None, card.person)]
    begun = [month for month in months if counted[month]] or months  # a quarter under way: its latest month
    monthly = _months_of_streaks(conn, tables, begun[-1], counted, cards, [c.person for c in found], rules)
    replies = []
    for card in found:
        streaks = rules.streaks(monthly, card.person)
        grade = next(g for g in rules.grades if g.name == card.grade)
        replies.append(StaffCard(
            person=card.person, team=card.team, rank=card.rank, team_size=card.team_size, score=card.score,
            grade=card.grade, grade_meaning=grade.meaning, parts=card.parts, deducted=card.deducted,
            figures=_figures(card.figures), first_place_months=streaks.first_place_months,
            failing_months=streaks.failing_months, bonus=streaks.bonus, post_at_risk=streaks.post_at_risk))
    replies.sort(key=lambda c: (rules.roles.index(c.team), c.rank, c.person))
    return StaffAssessmentReply(
        period=period.name, start=period.start, end=period.end, timezone=zone.key, months=months,
        rules=rules.digest, weights=rules.weights, deductions=rules.deductions,
        grades=[GradeBand(name=g.name, min=g.min, meaning=g.meaning) for g in rules.grades], cards=replies,
        unassessed=[p for p in rules.unassessed({p: (roles[p], f) for p, f in summed.items() if p in roles})
                    if person in (None, p)])


def _months_of_streaks(conn: Connection, tables: tuple[Any, ...], last: str, counted: dict[str, Any],
                       cards: Callable[[Mapping[str, Counter[str]]], dict[str, Card]], persons: list[str],
                       rules: AssessmentRules) -> list[dict[str, Card]]:
    """Each month's cards from `last` back, the latest first, as far as a
    streak of one of `persons` still runs (a few months, usually: at most
    LOOKBACK_MONTHS), read a few months at a time."""
    history = months_back(last, max(LOOKBACK_MONTHS, rules.first_place_months, rules.failing_months))
    monthly: list[dict[str, Card]] = []
    for start in range(0, len(history), STREAK_PAGE):
        page = history[start:start + STREAK_PAGE]
        missing = [month for month in page if month not in counted]
        counted = counted | (month_figures(conn, tables, missing) if missing else {})
        monthly += [cards(counted[month]) for month in page]
        if all(max(rules.streaks(monthly, p).first_place_months, rules.streaks(monthly, p).failing_months)
               < len(monthly) for p in persons):
            break
    return monthly


def _figures(f: Mapping[str, int]) -> StaffFigures:
    limits = {m: LimitCount(met=f.get(f"met.{m}", 0), missed=f.get(f"missed.{m}", 0)) for m in METRICS
              if f.get(f"met.{m}", 0) or f.get(f"missed.{m}", 0)}
    met, missed = sum(c.met for c in limits.values()), sum(c.missed for c in limits.values())
    revisits = f.get("revisits", 0)
    return StaffFigures(
        handled={"complaint": f.get("handled_complaint", 0), "repair_job": f.get("handled_repair_job", 0)},
        handled_total=handled(f), limits=limits, on_time=share(met, met + missed),
        callbacks_on_their_cases=revisits,
        average_score=f.get("score_sum", 0) / revisits if revisits else None,
        satisfied_share=share(f.get("satisfied", 0), revisits),
        first_contact=f.get("first_contact_yes", 0), first_contact_known=f.get("first_contact_known", 0),
        first_contact_share=share(f.get("first_contact_yes", 0), f.get("first_contact_known", 0)),
        reopened=f.get("reopened", 0), follow_ups=f.get("follow_ups", 0), escalated=f.get("escalated", 0),
        disputes=f.get("disputes", 0), callbacks_done=f.get("callbacks_done", 0),
        callbacks_missed=f.get("callbacks_missed", 0))
