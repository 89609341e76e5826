"""The dangerous-customer list (危险客户统计表): which customers the department
must watch, why, how closely, and what to do about it.

What a customer did becomes facts (a complaint registered, a callback that
left them unsatisfied, a limit breached while they were VIP, an escalation to
a manager, a compensation, an unfounded complaint, a mark set or lifted); the
rules (a TOML file, infra/danger_rules.toml by default) say how many facts of
a kind within how many days put a customer on the list, as which type and at
which level. Facts age out of their window, and a supervisor's clearance
sets aside every fact before it. Pure: the projection keeps the facts, the
monitor asks for the assessment at an instant."""

from __future__ import annotations

from bisect import bisect_right, insort_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from ticketing import config
from ticketing.config import ConfigError, Lines

SIGNALS = ("complaint", "unsatisfied_callback", "vip_breach", "manager_escalation", "compensation", "unfounded",
           "malicious_mark", "extortion_mark")
"""complaint: a complaint registered; unsatisfied_callback: a case revisited
with the customer not satisfied; vip_breach: a service limit breached on a
case while the customer was VIP or strategic; manager_escalation: a complaint
escalated to a manager; compensation: a complaint resolved with compensation
(`above` sets the amount); unfounded: a complaint withdrawn, or analysed with
the customer responsible; malicious_mark / extortion_mark: the mark a
supervisor set (it counts while it stands, without a window)."""
MARKS = {"malicious_mark": "malicious", "extortion_mark": "extortion"}
TYPES = ("churn_risk", "malicious_complainant", "extortion", "escalation_magnet")
LEVELS = ("watch", "high", "critical")


@dataclass(frozen=True)
class Fact:
    signal: str
    at: datetime
    case_id: str | None = None
    amount: Decimal | None = None
    """compensation: how much; a mark: None when lifted (`lifted` below)."""
    lifted: bool = False
    """A mark lifted (unflagged) at `at`."""


class Facts:
    """One customer's facts by signal, each signal's in time order (facts at
    the same instant in the order added): what `Rules.assess` reads. The
    monitor keeps them from look to look, adding what is new and forgetting
    what aged out of every window."""

    def __init__(self, facts: Iterable[Fact] = ()) -> None:
        self.by_signal: dict[str, list[Fact]] = {}
        for fact in sorted(facts, key=_at):
            self.by_signal.setdefault(fact.signal, []).append(fact)

    def add(self, fact: Fact) -> None:
        insort_right(self.by_signal.setdefault(fact.signal, []), fact, key=_at)

    def forget_until(self, since: datetime) -> None:
        """Drop the facts at or before `since` (the start of the longest
        window), but not the marks: a mark counts while it stands."""
        for signal, facts in self.by_signal.items():
            if signal not in MARKS:
                del facts[:bisect_right(facts, since, key=_at)]


def _at(fact: Fact) -> datetime:
    return fact.at


@dataclass(frozen=True)
class Rule:
    name: str
    signal: str
    type: str
    level: str
    at_least: int = 1
    within_days: int | None = None
    above: Decimal | None = None


@dataclass(frozen=True)
class Reason:
    rule: str
    type: str
    level: str
    text: str
    case_ids: tuple[str, ...]
    since: datetime
    """When the rule came true: the fact that made the count."""


@dataclass(frozen=True)
class Assessment:
    level: str
    danger_type: str
    types: dict[str, str]
    reasons: tuple[Reason, ...]
    since: datetime
    counter_measure: str
    next_change: datetime | None = None
    """The first instant a fact counted now ages out of its window (the
    standing may change then without anything new); None: only news changes it."""


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    counter_measures: dict[str, str] = field(default_factory=dict)

    @property
    def longest_window(self) -> timedelta:
        return timedelta(days=max((r.within_days or 0 for r in self.rules), default=0))

    def assess(self, facts: Facts | list[Fact], now: datetime, cleared_at: datetime | None = None
               ) -> Assessment | None:
        """Where the customer stands at `now` (None: not on the list). Each
        rule reads only its signal's facts, from the start of its window (the
        monitor assesses every customer with news each second, and keeps
        their `Facts` grouped and in order from look to look: a look costs
        the rules, not a sort of every fact)."""
        by_signal = (facts if isinstance(facts, Facts) else Facts(facts)).by_signal
        reasons, ageing = [], []
        for rule in self.rules:
            counted = by_signal.get(rule.signal, [])
            counted = counted[bisect_right(counted, cleared_at, key=_at) if cleared_at else 0:
                              bisect_right(counted, now, key=_at)]
            matching = self._matching(rule, counted, now)
            if rule.within_days and matching:  # the earliest is the first to age out
                ageing.append(matching[0].at + timedelta(days=rule.within_days))
            if len(matching) >= rule.at_least:
                reasons.append(Reason(rule.name, rule.type, rule.level, _text(rule, matching),
                                      tuple(dict.fromkeys(f.case_id for f in matching if f.case_id)),
                                      matching[rule.at_least - 1].at if rule.within_days else matching[-1].at))
        if not reasons:
            return None
        types: dict[str, str] = {}
        for reason in reasons:
            if reason.type not in types or LEVELS.index(reason.level) > LEVELS.index(types[reason.type]):
                types[reason.type] = reason.level
        top = max(reasons, key=lambda r: (LEVELS.index(r.level), -reasons.index(r)))
        return Assessment(top.level, top.type, types, tuple(reasons), min(r.since for r in reasons),
                          self.counter_measures.get(top.type, ""), min(ageing, default=None))

    @staticmethod
    def _matching(rule: Rule, facts: list[Fact], now: datetime) -> list[Fact]:
        """The facts the rule counts at `now`, of its signal's `facts` (in time order)."""
        if rule.signal in MARKS:  # the mark counts while it stands
            return facts[-1:] if facts and not facts[-1].lifted else []
        if rule.within_days:
            facts = facts[bisect_right(facts, now - timedelta(days=rule.within_days), key=_at):]
        return facts if rule.above is None else [f for f in facts if f.amount is not None and f.amount > rule.above]

    @classmethod
    def parse(cls, text: str) -> Rules:
        return _Reader(text).rules(config.load(text))


def _text(rule: Rule, matching: list[Fact]) -> str:
    what = {"complaint": "complaints", "unsatisfied_callback": "unsatisfied callbacks",
            "vip_breach": "service limits breached while VIP", "manager_escalation": "escalations to a manager",
            "compensation": f"compensations above {rule.above}", "unfounded": "unfounded or withdrawn complaints"}
    if rule.signal in MARKS:
        return f"marked {MARKS[rule.signal]} by a supervisor"
    window = f" in {rule.within_days} days" if rule.within_days else ""
    return f"{len(matching)} {what[rule.signal]}{window}"


class _Reader(Lines):
    def rules(self, data: dict[str, Any]) -> Rules:
        unknown = set(data) - {"rule", "counter_measures"}
        if unknown:
            key = min(unknown)
            raise ConfigError(self.line_of(key) or self.line_of(f"[{key}"), f"unknown section or key {key!r}")
        rules = tuple(self.rule(i, spec) for i, spec in enumerate(data.get("rule", [])))
        if not rules:
            raise ConfigError(None, "the file sets no [[rule]]")
        measures = data.get("counter_measures", {})
        for key in measures:
            if key not in TYPES:
                raise self.fail(f"{key!r} is not a danger type ({', '.join(TYPES)})", key, "[counter_measures]")
        return Rules(rules, {str(k): str(v) for k, v in measures.items()})

    def rule(self, nth: int, spec: dict[str, Any]) -> Rule:
        section = "[[rule]]"
        allowed = {"name", "signal", "type", "level", "at_least", "within_days", "above"}
        for key in spec:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r} in a [[rule]]", key, section, nth)
        for key, vocabulary in (("signal", SIGNALS), ("type", TYPES), ("level", LEVELS)):
            if spec.get(key) not in vocabulary:
                raise self.fail(f"{key} must be one of {', '.join(vocabulary)}", key, section, nth)
        for key in ("at_least", "within_days"):
            value = spec.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise self.fail(f"{key} must be a whole number of at least 1", key, section, nth)
        if spec["signal"] in MARKS and "within_days" in spec:
            raise self.fail("a mark counts while it stands: it takes no within_days", "within_days", section, nth)
        if spec["signal"] not in MARKS and "within_days" not in spec:
            raise self.fail("a rule needs within_days: the facts it counts age out", "signal", section, nth)
        above = None
        if "above" in spec:
            try:
                above = Decimal(str(spec["above"]))
            except InvalidOperation:
                raise self.fail("above must be an amount such as \"2000.00\"", "above", section, nth) from None
        name = spec.get("name") or f"rule {nth + 1}"
        return Rule(str(name), spec["signal"], spec["type"], spec["level"], spec.get("at_least", 1),
                    spec.get("within_days"), above)
