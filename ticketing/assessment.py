"""The monthly staff assessment (月度考核): each person's month, counted
from the events (projections/staff.py keeps the counts), becomes a score out
of 100, one of the grades, a rank in the team (the people of one role), and
the streaks the handbook acts on (first place N months running earns a
bonus; the failing grade N months running ends the post).

Who a figure belongs to: the person whose work the case is when it happens:
its assignee (or the technician sent); while nobody is assigned, the last
person who took a step on it (a step of the product itself, such as the
callback policy's revisit, leaves it with whoever had it). A case handled is
a resolution while it was theirs, so a supervisor who records a resolution
for an assigned agent does not take the agent's credit, and a case resolved
at first contact without an assignee counts for the agent who resolved it; a
case reopened and resolved again counts each resolution. What comes after a
resolution (the callback's score, a reopening, a follow-up case) counts for
whoever had the case at its last resolution. A service limit counts for the
person who had the case when it stopped, met or missed, in the month it
stopped (limits that never stop, or end with the case, are not counted).
Callbacks done and missed count for the person who made the (last) call; a
customer dispute for the member of staff the complaint names (`about_staff`).

The weights, deductions, grades and streaks come from a TOML file (the
shipped infra/assessment_rules.toml, or TICKETING_ASSESSMENT_RULES). Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ticketing import config
from ticketing.config import ConfigError, Lines

METRICS = ("first_response", "plan", "resolution", "callback", "loop")
COUNTS = ("handled_complaint", "handled_repair_job", "first_contact_known", "first_contact_yes", "revisits",
          "score_sum", "satisfied", "reopened", "follow_ups", "escalated", "disputes", "callbacks_done",
          "callbacks_missed")
"""What is counted per person and month; beside them `met.METRIC` and `missed.METRIC`."""
PARTS = ("handled", "on_time", "satisfaction", "first_contact", "callbacks")
DEDUCTIONS = ("disputes", "reopened", "follow_ups", "escalated")
ROLES = ("agent", "technician", "supervisor", "manager")

Figures = Mapping[str, int]
"""A person's counts in a period (absent: 0)."""


def handled(figures: Figures) -> int:
    return figures.get("handled_complaint", 0) + figures.get("handled_repair_job", 0)


def limits(figures: Figures) -> tuple[int, int]:
    """(met, missed) over every metric."""
    return (sum(figures.get(f"met.{m}", 0) for m in METRICS), sum(figures.get(f"missed.{m}", 0) for m in METRICS))


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def parts(figures: Figures, team_best: int) -> dict[str, float | None]:
    """Each part of the score as a share (0-1); None when there is nothing to count."""
    met, missed = limits(figures)
    revisits = figures.get("revisits", 0)
    return {
        "handled": share(handled(figures), team_best),
        "on_time": share(met, met + missed),
        "satisfaction": figures.get("score_sum", 0) / revisits / 100 if revisits else None,
        "first_contact": share(figures.get("first_contact_yes", 0), figures.get("first_contact_known", 0)),
        "callbacks": share(figures.get("callbacks_done", 0),
                            figures.get("callbacks_done", 0) + figures.get("callbacks_missed", 0)),
    }


@dataclass(frozen=True)
class Grade:
    name: str
    min: float
    meaning: str = ""


@dataclass(frozen=True)
class Card:
    person: str
    team: str
    figures: dict[str, int]
    parts: dict[str, float | None]
    deducted: float
    score: float
    grade: str
    rank: int
    team_size: int


@dataclass(frozen=True)
class Streaks:
    first_place_months: int
    failing_months: int
    bonus: bool
    """First place at least the rules' first_place months running."""
    post_at_risk: bool
    """In the failing grade at least the rules' failing months running."""


@dataclass(frozen=True)
class AssessmentRules:
    roles: tuple[str, ...]
    weights: dict[str, float]
    deductions: dict[str, float]
    grades: tuple[Grade, ...]
    """The highest first; the last is failing."""
    first_place_months: int
    failing_months: int
    digest: str = ""

    def grade(self, score: float) -> Grade:
        return next((g for g in self.grades if score >= g.min), self.grades[-1])

    def score(self, figures: Figures, team_best: int) -> tuple[dict[str, float | None], float, float]:
        """(parts, points deducted, score): the weighted average of the parts
        there is something to count for, out of 100, less the deductions,
        kept within 0-100 and rounded to one decimal."""
        found = parts(figures, team_best)
        counted = {p: w for p, w in self.weights.items() if found[p] is not None and w > 0}
        average = 100 * sum(w * found[p] for p, w in counted.items()) / sum(counted.values()) if counted else 0.0
        deducted = sum(points * figures.get(name, 0) for name, points in self.deductions.items())
        return found, deducted, round(min(100.0, max(0.0, average - deducted)), 1)

    def assess(self, people: Mapping[str, tuple[str, Figures]]) -> list[Card]:
        """The cards of a period: `people` maps each person to (their role,
        their figures); those of the assessed roles are ranked within their
        role, the highest score first (equal scores share a rank). Someone
        who handled no case is not graded (`unassessed`): an acknowledgement
        on time alone is not a month's work worth an A."""
        cards: list[Card] = []
        for team in self.roles:
            members = {person: figures for person, (role, figures) in people.items()
                       if role == team and handled(figures) > 0}
            best = max((handled(f) for f in members.values()), default=0)
            scored = []
            for person, figures in members.items():
                found, deducted, score = self.score(figures, best)
                scored.append((person, figures, found, deducted, score))
            scored.sort(key=lambda s: (-s[4], s[0]))
            for person, figures, found, deducted, score in scored:
                rank = 1 + sum(1 for other in scored if other[4] > score)
                cards.append(Card(person, team, dict(figures), found, deducted, score, self.grade(score).name, rank,
                                  len(scored)))
        return cards

    def unassessed(self, people: Mapping[str, tuple[str, Figures]]) -> list[str]:
        """Those of the assessed roles who acted in the period but handled no case."""
        return sorted(person for person, (role, figures) in people.items()
                      if role in self.roles and handled(figures) == 0)

    def streaks(self, months: list[Mapping[str, Card]], person: str) -> Streaks:
        """The person's streaks as of the first of `months` (the latest
        month first, each month's cards by person): a month without their
        card ends a streak."""
        first = failing = 0
        for cards in months:
            if (card := cards.get(person)) is None or card.rank != 1:
                break
            first += 1
        for cards in months:
            if (card := cards.get(person)) is None or card.grade != self.grades[-1].name:
                break
            failing += 1
        return Streaks(first, failing, first >= self.first_place_months, failing >= self.failing_months)

    @classmethod
    def parse(cls, text: str) -> AssessmentRules:
        rules = _Reader(text).rules(config.load(text))
        return AssessmentRules(rules.roles, rules.weights, rules.deductions, rules.grades, rules.first_place_months,
                               rules.failing_months, hashlib.sha256(text.encode()).hexdigest())


class _Reader(Lines):
    def rules(self, data: dict[str, Any]) -> AssessmentRules:
        unknown = set(data) - {"roles", "weights", "deductions", "grade", "streaks"}
        if unknown:
            key = min(unknown)
            raise ConfigError(self.line_of(key) or self.line_of(f"[{key}"), f"unknown section or key {key!r}")
        roles = data.get("roles", ["agent", "technician"])
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise self.fail(f"roles must list some of {', '.join(ROLES)}", "roles")
        weights = self.numbers(data.get("weights"), "weights", PARTS)
        if not any(weights.values()):
            raise ConfigError(self.line_of("[weights]"), "[weights] must give some part a weight above 0")
        deductions = self.numbers(data.get("deductions", {}), "deductions", DEDUCTIONS)
        grades = tuple(self.grade(i, spec) for i, spec in enumerate(data.get("grade", [])))
        if len(grades) < 2:
            raise ConfigError(self.line_of("[[grade]]"), "the file needs at least two [[grade]] (the last is failing)")
        for i in range(1, len(grades)):
            if grades[i].min >= grades[i - 1].min:
                raise self.fail("grades go from the highest min down: this min is not below the one before",
                                "min", "[[grade]]", i)
            if grades[i].name in {g.name for g in grades[:i]}:
                raise self.fail(f"grade {grades[i].name!r} is named twice", "name", "[[grade]]", i)
        if grades[-1].min != 0:
            raise self.fail("the last grade takes every score left: its min must be 0", "min", "[[grade]]",
                            len(grades) - 1)
        streaks = data.get("streaks", {})
        for key in streaks:
            if key not in ("first_place", "failing"):
                raise self.fail(f"unknown key {key!r} in [streaks]", key, "[streaks]")
        months = {}
        for key in ("first_place", "failing"):
            value = streaks.get(key, 3)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise self.fail(f"{key} must be a whole number of months, at least 1", key, "[streaks]")
            months[key] = value
        return AssessmentRules(tuple(roles), weights, deductions, grades, months["first_place"], months["failing"])

    def numbers(self, table: Any, section: str, names: tuple[str, ...]) -> dict[str, float]:
        if not isinstance(table, dict):
            raise ConfigError(self.line_of(f"[{section}]"), f"the file needs a [{section}] table")
        for key, value in table.items():
            if key not in names:
                raise self.fail(f"{key!r} is not one of {', '.join(names)}", key, f"[{section}]")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise self.fail(f"{key} must be a number, 0 or more", key, f"[{section}]")
        return {name: float(table.get(name, 0)) for name in names}

    def grade(self, nth: int, spec: dict[str, Any]) -> Grade:
        for key in spec:
            if key not in ("name", "min", "meaning"):
                raise self.fail(f"unknown key {key!r} in a [[grade]]", key, "[[grade]]", nth)
        name, least = spec.get("name"), spec.get("min")
        if not isinstance(name, str) or not name:
            raise self.fail("a [[grade]] needs a name", "name", "[[grade]]", nth)
        if isinstance(least, bool) or not isinstance(least, int | float) or not 0 <= least <= 100:
            raise self.fail("min must be a score between 0 and 100", "min", "[[grade]]", nth)
        return Grade(name, float(least), str(spec.get("meaning", "")))
