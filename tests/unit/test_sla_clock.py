"""The running limits of a case: met, breached, paused, regraded, reopened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ticketing.sla.clock import CaseClocks
from ticketing.sla.policy import SlaPolicy

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday
POLICY = SlaPolicy.parse((Path(__file__).parents[2] / "infra" / "sla_policy.toml").read_text())
OFFICE = SlaPolicy.parse("""
[[limit]]
first_response = "2h"
calendar = "office"
[calendar.office]
timezone = "Asia/Shanghai"
hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }
holidays = ["2027-01-01"]
""")


def complaint(policy: SlaPolicy = POLICY, tier: str = "basic", priority: str = "normal") -> CaseClocks:
    clocks = CaseClocks("complaint", tier, priority)
    clocks.on("registered", T0, policy)
    return clocks


def test_each_metric_is_met_or_breached() -> None:
    clocks = complaint()
    assert set(clocks.running) == {"first_response", "plan", "resolution", "loop"}
    clocks.on("acknowledged", T0 + timedelta(minutes=20), POLICY)
    clocks.on("analysed", T0 + timedelta(hours=5), POLICY)
    clocks.on("resolved", T0 + timedelta(hours=10), POLICY)
    assert set(clocks.running) == {"loop", "callback"}
    clocks.on("revisited", T0 + timedelta(hours=30), POLICY)
    assert {r.metric: r.met for r in clocks.results} == {
        "first_response": True, "plan": False, "resolution": True, "callback": True, "loop": False}
    assert clocks.running == {}


def test_warnings_then_breaches_fall_due_on_time() -> None:
    clocks = complaint()
    assert clocks.due(T0 + timedelta(minutes=22)) == []
    assert [(kind, r.metric) for kind, r in clocks.due(T0 + timedelta(minutes=23))] == [("warning", "first_response")]
    assert ("breached", "first_response") in [(k, r.metric) for k, r in clocks.due(T0 + timedelta(minutes=30))]


def test_waiting_on_the_customer_stops_the_clock() -> None:
    clocks = complaint()
    clocks.on("customer_awaited", T0 + timedelta(minutes=10), POLICY)
    assert clocks.due(T0 + timedelta(days=3)) == []
    clocks.on("resumed", T0 + timedelta(hours=5, minutes=10), POLICY)
    assert clocks.running["first_response"].deadline == T0 + timedelta(hours=5, minutes=30)
    clocks.on("acknowledged", T0 + timedelta(hours=5, minutes=25), POLICY)
    [result] = clocks.results
    assert result.met and result.elapsed == timedelta(minutes=25)


def test_a_tier_or_priority_change_regrades_the_running_clocks() -> None:
    clocks = complaint()
    clocks.regrade(POLICY, T0, tier="vip")
    assert clocks.running["first_response"].deadline == T0 + timedelta(minutes=15)
    clocks.regrade(POLICY, T0, priority="low")  # vip is the later rule in the default file: it still wins
    assert clocks.running["first_response"].deadline == T0 + timedelta(minutes=15)
    basic_low = complaint(priority="normal")
    basic_low.regrade(POLICY, T0, priority="low")
    assert basic_low.running["first_response"].deadline == T0 + timedelta(hours=1)


def test_reopening_starts_a_new_cycle_and_keeps_the_first() -> None:
    clocks = complaint()
    for event, hours in (("acknowledged", 0.1), ("analysed", 1), ("resolved", 2), ("revisited", 3)):
        clocks.on(event, T0 + timedelta(hours=hours), POLICY)
    first = list(clocks.results)
    clocks.on("reopened", T0 + timedelta(days=2), POLICY)
    assert set(clocks.running) == {"plan", "resolution", "loop"}
    assert all(r.cycle == 2 for r in clocks.running.values())
    clocks.on("resolved", T0 + timedelta(days=2, hours=30), POLICY)
    assert clocks.results[:len(first)] == first
    assert [(r.metric, r.cycle, r.met) for r in clocks.results[len(first):]] == [
        ("plan", 2, False), ("resolution", 2, False)]


def test_business_hours_across_a_weekend_and_a_holiday() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    thursday_late = datetime(2026, 12, 31, 17, 0, tzinfo=shanghai)  # Friday 2027-01-01 is a holiday
    clocks = CaseClocks("complaint", "basic", "normal")
    clocks.on("registered", thursday_late, OFFICE)
    assert clocks.running["first_response"].deadline == datetime(2027, 1, 4, 10, 0, tzinfo=shanghai)
    assert clocks.due(datetime(2027, 1, 3, 23, 0, tzinfo=shanghai)) == [], "nothing counts over the weekend"
    # 75 % of 2 h: 60 min on Thursday, 30 on Monday.
    assert clocks.running["first_response"].warning == datetime(2027, 1, 4, 9, 30, tzinfo=shanghai)
    assert clocks.running["first_response"].elapsed(datetime(2027, 1, 4, 9, 30, tzinfo=shanghai)) == \
        timedelta(minutes=90)


def test_a_breach_stays_when_the_clock_is_paused_or_regraded_after_it() -> None:
    clocks = complaint()
    clocks.on("customer_awaited", T0 + timedelta(minutes=40), POLICY)
    paused = clocks.running["first_response"]
    assert paused.deadline is None and paused.breached_at == T0 + timedelta(minutes=30)
    assert ("breached", paused) in clocks.due(T0 + timedelta(minutes=41))
    clocks.on("resumed", T0 + timedelta(hours=1), POLICY)
    clocks.regrade(POLICY, T0 + timedelta(hours=1), priority="low")  # 1 h from 09:00, plus 20 min waited
    assert clocks.running["first_response"].deadline == T0 + timedelta(hours=1, minutes=20)
    clocks.on("acknowledged", T0 + timedelta(hours=1, minutes=5), POLICY)
    [result] = clocks.results
    assert result.met is False and result.breached_at == T0 + timedelta(minutes=30)


def test_a_case_that_ends_stops_its_clocks_without_a_result() -> None:
    clocks = complaint()
    clocks.on("withdrawn", T0 + timedelta(minutes=10), POLICY)
    assert clocks.running == {}
    assert {(r.metric, r.met) for r in clocks.results} == {
        ("first_response", None), ("plan", None), ("resolution", None), ("loop", None)}


def test_reopening_a_resolved_case_ends_its_callback_clock() -> None:
    clocks = complaint()
    clocks.on("resolved", T0 + timedelta(hours=1), POLICY)
    clocks.on("reopened", T0 + timedelta(hours=2), POLICY)
    assert "callback" not in clocks.running
    assert [r.met for r in clocks.results if r.metric == "callback"] == [None]


def test_repair_jobs_and_callbacks_run_their_own_clocks() -> None:
    job = CaseClocks("repair_job", "basic", "normal")
    job.on("registered", T0, POLICY)
    assert set(job.running) == {"first_response", "plan", "resolution"}, "no loop for repair jobs"
    job.on("dispatch_requested", T0 + timedelta(minutes=5), POLICY)
    assert [(r.metric, r.met) for r in job.results] == [("first_response", True)]
    assert job.running["resolution"].deadline == T0 + timedelta(hours=72)
    callback = CaseClocks("callback", "basic", "normal")
    callback.on("scheduled", T0, POLICY)
    assert set(callback.running) == {"first_response", "resolution"}
    callback.on("missed", T0 + timedelta(hours=1), POLICY)
    assert callback.running == {}
