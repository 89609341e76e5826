"""The assessment rules: scores, grades, ranks and streaks from figures, and
a rules file's mistakes named with their line."""

from __future__ import annotations

from collections import Counter

import pytest

from infra.config_files import DEFAULT_ASSESSMENT_RULES
from ticketing.assessment import AssessmentRules
from ticketing.config import ConfigError

SHIPPED = DEFAULT_ASSESSMENT_RULES.read_text(encoding="utf-8")
RULES = AssessmentRules.parse(SHIPPED)


def test_a_part_with_nothing_to_count_is_left_out_and_the_others_weigh_in_its_place() -> None:
    # handled 10 of the best 10 (1.0), limits 3 of 4 (0.75); no callback, no first-contact answer
    figures = Counter({"handled_complaint": 10, "met.first_response": 3, "missed.plan": 1})
    parts, deducted, score = RULES.score(figures, team_best=10)
    assert parts["satisfaction"] is None and parts["callbacks"] is None and parts["first_contact"] is None
    assert deducted == 0
    assert score == round(100 * (30 * 1.0 + 25 * 0.75) / (30 + 25), 1)


def test_deductions_come_off_and_the_score_stays_within_0_and_100() -> None:
    figures = Counter({"handled_complaint": 1, "disputes": 30})
    assert RULES.score(figures, team_best=1)[2] == 0.0
    figures = Counter({"handled_complaint": 4, "revisits": 2, "score_sum": 180, "escalated": 2})
    parts, deducted, score = RULES.score(figures, team_best=8)
    assert deducted == 2 and score == round(100 * (30 * 0.5 + 20 * 0.9) / 50 - 2, 1)


def test_ranks_are_per_team_and_equal_scores_share_one() -> None:
    same = Counter({"handled_complaint": 5})
    cards = {c.person: c for c in RULES.assess({
        "a": ("agent", same), "b": ("agent", same), "c": ("agent", Counter({"handled_complaint": 1})),
        "t": ("technician", Counter({"handled_repair_job": 1})), "s": ("supervisor", same)})}
    assert (cards["a"].rank, cards["b"].rank, cards["c"].rank) == (1, 1, 3)
    assert cards["t"].rank == 1 and cards["t"].team_size == 1 and cards["t"].score == 100.0
    assert "s" not in cards, "supervisors are not assessed by the shipped rules"
    assert cards["c"].grade == "E" and cards["a"].grade == "A"


def test_someone_who_handled_no_case_is_not_graded_however_timely_their_one_acknowledgement() -> None:
    """An agent whose only act was an acknowledgement on time once scored
    100, grade A, "excellent: bonus pool", with nothing handled."""
    one_ack = Counter({"met.first_response": 1})
    people = {"busy": ("agent", Counter({"handled_complaint": 3})), "idle": ("agent", one_ack),
              "boss": ("supervisor", one_ack)}
    cards = {c.person: c for c in RULES.assess(people)}
    assert set(cards) == {"busy"} and cards["busy"].team_size == 1
    assert RULES.unassessed(people) == ["idle"], "supervisors are not assessed at all by the shipped rules"


def test_streaks_count_months_running_and_stop_at_a_gap() -> None:
    best, worst = Counter({"handled_complaint": 9}), Counter({"handled_complaint": 1})
    month = {p.person: p for p in RULES.assess({"a": ("agent", best), "b": ("agent", worst)})}
    b_only = {p.person: p for p in RULES.assess({"b": ("agent", best)})}
    streaks = RULES.streaks([month, month, month, b_only, month], "a")
    assert (streaks.first_place_months, streaks.bonus) == (3, True)
    streaks = RULES.streaks([month, month, month], "b")
    assert (streaks.failing_months, streaks.post_at_risk, streaks.first_place_months) == (3, True, 0)
    assert RULES.streaks([month, b_only, month], "b").failing_months == 1


@pytest.mark.parametrize(("change", "on", "reason"), [
    (("min = 70", "min = 85"), "min = 70", "not below the one before"),
    (("on_time = 25 ", "on_time = -1 "), "on_time = 25", "a number, 0 or more"),
    (("callbacks = 15", "callback = 15"), "callbacks = 15", "'callback' is not one of"),
    (('roles = ["agent", "technician"]', 'roles = ["agent", "janitor"]'), "roles =", "roles must list"),
    (("failing = 3 ", "failing = 0 "), "failing = 3", "at least 1"),
    (('name = "E"\nmin = 0', 'name = "E"\nmin = 10'), 'name = "E"\nmin', "its min must be 0"),
    (("[deductions]", "[deduction]"), "[deductions]", "unknown section or key 'deduction'"),
    (("disputes = 5 ", "disputes = 5 = 6"), "disputes = 5", ""),
])
def test_a_mistake_in_the_rules_file_is_named_with_its_line(change: tuple[str, str], on: str, reason: str) -> None:
    """`on`: the text that starts the line the error must name (its last line when it spans two)."""
    assert change[0] in SHIPPED
    line = SHIPPED[:SHIPPED.index(on) + len(on)].count("\n") + 1
    with pytest.raises(ConfigError) as error:
        AssessmentRules.parse(SHIPPED.replace(change[0], change[1], 1))
    assert error.value.line == line and reason in str(error.value), str(error.value)
