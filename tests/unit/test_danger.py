"""The dangerous-customer rules: entering, rising, ageing out, clearance,
marks, and the rules file's errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from ticketing.config import ConfigError
from ticketing.danger import Fact, Rules

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
