"""The dangerous-customer rules: entering, rising, ageing out, clearance,
marks, and the rules file's errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketing.config import ConfigError
from ticketing.danger import LEVELS, MARKS, SIGNALS, Fact, Facts, Rules

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
RULES = Rules.parse((Path(__file__).parents[2] / "infra" / "danger_rules.toml").read_text())


def complaints(*days: float) -> list[Fact]:
    return [Fact("complaint", T0 + timedelta(days=d), f"case-{d}") for d in days]


def test_three_complaints_in_thirty_days_put_a_customer_on_watch_and_five_raise_it() -> None:
    assert RULES.assess(complaints(0, 10), T0 + timedelta(days=11)) is None
    watch = RULES.assess(complaints(0, 10, 20), T0 + timedelta(days=21))
    assert watch is not None and (watch.level, watch.danger_type) == ("watch", "churn_risk")
    assert watch.since == T0 + timedelta(days=20) and watch.reasons[0].case_ids == ("case-0", "case-10", "case-20")
    assert "supervisor calls" in watch.counter_measure
    high = RULES.assess(complaints(0, 10, 20, 21, 22), T0 + timedelta(days=23))
    assert high is not None and high.level == "high"


def test_facts_age_out_of_their_window() -> None:
    facts = complaints(0, 10, 20)
    assert RULES.assess(facts, T0 + timedelta(days=29, hours=23)) is not None
    assert RULES.assess(facts, T0 + timedelta(days=30, minutes=1)) is None


def test_a_clearance_sets_aside_what_came_before_it() -> None:
    facts = complaints(0, 1, 2)
    assert RULES.assess(facts, T0 + timedelta(days=3), cleared_at=T0 + timedelta(days=2, hours=1)) is None
    again = facts + complaints(4, 5, 6)
    assert RULES.assess(again, T0 + timedelta(days=7), cleared_at=T0 + timedelta(days=2, hours=1)) is not None


def test_marks_count_while_they_stand_and_extortion_is_critical() -> None:
    flagged = [Fact("extortion_mark", T0)]
    found = RULES.assess(flagged, T0 + timedelta(days=400))
    assert found is not None and (found.level, found.danger_type) == ("critical", "extortion")
    assert RULES.assess([*flagged, Fact("extortion_mark", T0 + timedelta(days=1), lifted=True)],
                        T0 + timedelta(days=2)) is None


def test_a_customer_of_several_types_has_the_highest_level() -> None:
    facts = [*complaints(0, 1, 2), Fact("manager_escalation", T0, "a"), Fact("manager_escalation", T0, "b"),
             Fact("compensation", T0, "c", Decimal("2500.00")), Fact("compensation", T0, "d", Decimal("100"))]
    found = RULES.assess(facts, T0 + timedelta(days=3))
    assert found is not None
    assert found.types == {"churn_risk": "watch", "escalation_magnet": "high"}
    assert (found.level, found.danger_type) == ("high", "escalation_magnet")
    [compensation] = [r for r in found.reasons if r.rule == "compensation demanded"]
    assert compensation.case_ids == ("c",)


@pytest.mark.parametrize(("text", "line", "reason"), [
    ('[[rule]]\nsignal = "complaint"\ntype = "churn_risk"\nlevel = "severe"\nwithin_days = 3\n', 4, "level"),
    ('[[rule]]\nsignal = "gossip"\ntype = "churn_risk"\nlevel = "watch"\n', 2, "signal"),
    ('[[rule]]\nsignal = "complaint"\ntype = "churn_risk"\nlevel = "watch"\n', 2, "within_days"),
    ('[[rule]]\nsignal = "malicious_mark"\ntype = "extortion"\nlevel = "high"\nwithin_days = 9\n', 5, "mark"),
    ('[[rule]]\nsignal = "complaint"\ntype = "churn_risk"\nlevel = "watch"\nwithin_days = 0\n', 5, "at least 1"),
    ('[counter_measures]\nvip = "x"\n[[rule]]\nsignal = "extortion_mark"\ntype = "extortion"\nlevel = "high"\n',
     2, "danger type"),
])
def test_a_rules_file_with_an_error_names_the_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        Rules.parse(text)
    assert error.value.line == line and reason in error.value.reason


def by_definition(rules: Rules, facts: list[Fact], now: datetime, cleared_at: datetime | None) -> tuple | None:
    """What the rules file says, read the slow way: each rule over every
    fact; a rule holds with `at_least` of its facts in its window (a mark:
    the latest of its kind, not lifted); the level is the highest, the first
    such rule gives the type; the standing next changes when the earliest
    counted fact of a windowed rule ages out."""
    kept = sorted((f for f in facts if f.at <= now and (cleared_at is None or f.at > cleared_at)),
                  key=lambda f: f.at)

    def counted(rule: object) -> list[Fact]:
        if rule.signal in MARKS:
            marks = [f for f in kept if f.signal == rule.signal]
            return marks[-1:] if marks and not marks[-1].lifted else []
        return [f for f in kept if f.signal == rule.signal and f.at > now - timedelta(days=rule.within_days)
                and (rule.above is None or (f.amount is not None and f.amount > rule.above))]
    holding = [(rule, counted(rule)) for rule in rules.rules if len(counted(rule)) >= rule.at_least]
    if not holding:
        return None
    level = max((rule.level for rule, _ in holding), key=LEVELS.index)
    top = next(rule for rule, _ in holding if rule.level == level)
    since = min(found[rule.at_least - 1].at if rule.within_days else found[-1].at for rule, found in holding)
    ageing = [f.at + timedelta(days=rule.within_days) for rule in rules.rules if rule.within_days
              for f in counted(rule)]
    return (level, top.type, since, min(ageing, default=None),
            [(rule.name, len(found), list(dict.fromkeys(f.case_id for f in found if f.case_id)))
             for rule, found in holding])


fact_lists = st.lists(st.builds(
    Fact, signal=st.sampled_from([*SIGNALS, "tier_changed"]),
    at=st.integers(0, 400).map(lambda half_days: T0 + timedelta(hours=12 * half_days)),  # windows' edges met
    case_id=st.sampled_from(["a", "b", "c", None]),
    amount=st.sampled_from([None, Decimal("100.00"), Decimal("2500.00"), Decimal("9000.00")]),
    lifted=st.booleans()), max_size=40)


@settings(max_examples=300, deadline=None)
@given(facts=fact_lists, now_half_days=st.integers(0, 440), cleared_half_days=st.none() | st.integers(0, 400))
def test_the_assessment_is_what_the_rules_say(facts: list[Fact], now_half_days: int,
                                              cleared_half_days: int | None) -> None:
    now = T0 + timedelta(hours=12 * now_half_days)
    cleared_at = None if cleared_half_days is None else T0 + timedelta(hours=12 * cleared_half_days)
    found = RULES.assess(facts, now, cleared_at)
    expected = by_definition(RULES, facts, now, cleared_at)
    assert (found and (found.level, found.danger_type, found.since, found.next_change,
                       [(r.rule, int(r.text.split()[0]) if r.text[0].isdigit() else 1, list(r.case_ids))
                        for r in found.reasons])) == expected


@settings(max_examples=1000, deadline=None)
@given(facts=fact_lists,
       looks=st.lists(st.tuples(st.integers(0, 40), st.just(440) | st.integers(0, 440)), max_size=4),
       now_half_days=st.integers(0, 440))
def test_facts_kept_from_look_to_look_assess_as_every_fact_read_whole(
        facts: list[Fact], looks: list[tuple[int, int]], now_half_days: int) -> None:
    """What the monitor keeps: facts added one by one in the order they came
    (not time order), and at looks in between (at `now` or before it) what
    aged out of the longest window forgotten, marks excepted; assessed at
    `now`, as every fact read whole."""
    now = T0 + timedelta(hours=12 * now_half_days)
    kept = Facts()
    for n in range(len(facts) + 1):
        for _, half_days in (look for look in looks if look[0] % (len(facts) + 1) == n):
            kept.forget_until(min(now, T0 + timedelta(hours=12 * half_days)) - RULES.longest_window)
        if n < len(facts):
            kept.add(facts[n])
    assert RULES.assess(kept, now) == RULES.assess(facts, now)
