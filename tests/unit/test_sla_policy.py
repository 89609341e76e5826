"""The SLA policy file and business calendars, in plain Python."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ticketing.sla.policy import PolicyError, SlaPolicy, duration

SHANGHAI = ZoneInfo("Asia/Shanghai")

POLICY = """\
[defaults]
warning_at = 0.75
calendar = "24x7"

[[limit]]
kind = "*"
first_response = "30m"
resolution = "24h"

[[limit]]
kind = "complaint"
tier = "vip"
first_response = "15m"
calendar = "office"

[[limit]]
kind = "complaint"
tier = "vip"
priority = "urgent"
first_response = "5m"
warning_at = 0.5

[calendar.office]
timezone = "Asia/Shanghai"
hours = { mon = "09:00-12:00, 13:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }
holidays = ["2027-01-01"]
"""


def test_the_most_specific_limit_wins() -> None:
    policy = SlaPolicy.parse(POLICY)
    basic = policy.target("repair_job", "basic", "normal", "first_response")
    assert basic is not None and basic.limit == timedelta(minutes=30) and basic.calendar.name == "24x7"
    vip = policy.target("complaint", "vip", "normal", "first_response")
    assert vip is not None and vip.limit == timedelta(minutes=15) and vip.calendar.name == "office"
    urgent = policy.target("complaint", "vip", "urgent", "first_response")
    assert urgent is not None and urgent.limit == timedelta(minutes=5) and urgent.warning_at == 0.5
    assert policy.target("complaint", "vip", "normal", "resolution").limit == timedelta(hours=24)  # type: ignore[union-attr]
    assert policy.target("complaint", "basic", "normal", "loop") is None


def test_business_hours_skip_the_night_the_weekend_and_holidays() -> None:
    office = SlaPolicy.parse(POLICY).calendars["office"]
    friday_evening = datetime(2026, 12, 4, 17, 30, tzinfo=SHANGHAI)
    # 30 min on Friday, then Monday from 09:00: 90 min more -> 10:30.
    assert office.add(friday_evening, timedelta(hours=2)) == datetime(2026, 12, 7, 10, 30, tzinfo=SHANGHAI)
    # The Monday lunch break does not count.
    assert office.add(datetime(2026, 12, 7, 11, 30, tzinfo=SHANGHAI), timedelta(hours=1)) == \
        datetime(2026, 12, 7, 13, 30, tzinfo=SHANGHAI)
    # New Year's Day 2027 is a Friday holiday: Thursday 17:00 + 2h -> Monday 10:00.
    assert office.add(datetime(2026, 12, 31, 17, 0, tzinfo=SHANGHAI), timedelta(hours=2)) == \
        datetime(2027, 1, 4, 10, 0, tzinfo=SHANGHAI)
    # Outside hours nothing elapses; the clock runs in another zone all the same.
    saturday = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    assert office.elapsed(saturday, saturday + timedelta(hours=20)) == timedelta(0)
    assert office.elapsed(friday_evening, datetime(2026, 12, 7, 10, 30, tzinfo=SHANGHAI)) == timedelta(hours=2)


def test_a_make_up_saturday_counts_and_a_holiday_week_does_not() -> None:
    """调休: a week off (Mon 2027-02-08 to Fri 02-12) made up on the Saturday
    before it (02-06), worked on the first working day's hours (Monday's
    here: 09:00-12:00 and 13:00-18:00, 8h)."""
    office = SlaPolicy.parse(POLICY.replace('holidays = ["2027-01-01"]', 'holidays = [2027-02-08, 2027-02-09, '
                                            '2027-02-10, 2027-02-11, 2027-02-12]\nworkdays = [2027-02-06]')
                             ).calendars["office"]
    friday = datetime(2027, 2, 5, 17, 0, tzinfo=SHANGHAI)
    # Friday 17:00-18:00 (1h), the make-up Saturday 09:00-12:00 (3h): 4h.
    assert office.add(friday, timedelta(hours=4)) == datetime(2027, 2, 6, 12, 0, tzinfo=SHANGHAI)
    # 12h: Friday 1h + Saturday 8h; no Sunday, no holiday week; Monday 02-15 09:00-12:00, the last 3h.
    assert office.add(friday, timedelta(hours=12)) == datetime(2027, 2, 15, 12, 0, tzinfo=SHANGHAI)
    assert office.elapsed(friday, datetime(2027, 2, 15, 12, 0, tzinfo=SHANGHAI)) == timedelta(hours=12)
    assert office.periods_of(datetime(2027, 2, 6).date()) == office.periods_of(datetime(2027, 2, 1).date())
    plain = SlaPolicy.parse(POLICY).calendars["office"]
    assert plain.add(friday, timedelta(hours=4)) == datetime(2027, 2, 8, 12, 0, tzinfo=SHANGHAI), \
        "without the make-up day, Saturday does not count"


def test_the_default_policy_ships_and_follows_the_handbooks() -> None:
    policy = SlaPolicy.parse((Path(__file__).parents[2] / "infra" / "sla_policy.toml").read_text())
    normal = policy.target("complaint", "basic", "normal", "first_response")
    assert normal is not None and normal.limit == timedelta(minutes=30)
    assert policy.target("complaint", "basic", "normal", "plan").limit == timedelta(hours=4)  # type: ignore[union-attr]
    assert policy.target("complaint", "basic", "normal", "resolution").limit == timedelta(hours=24)  # type: ignore[union-attr]
    assert policy.target("complaint", "basic", "normal", "loop").limit == timedelta(hours=24)  # type: ignore[union-attr]
    vip = policy.target("complaint", "vip", "normal", "first_response")
    low = policy.target("complaint", "basic", "low", "first_response")
    assert vip is not None and low is not None and vip.limit < normal.limit < low.limit


@pytest.mark.parametrize("text, line, words", [
    ("[[limit]]\nkind = \"complaint\"\nfirst_response = \"30 minutes\"\n", 3, "not a duration"),
    ("[[limit]]\nkind = \"invoice\"\nplan = \"4h\"\n", 2, "kind must be one of"),
    ("[[limit]]\nkind = \"complaint\"\nplan = \"4h\"\n\n[[limit]]\ntier = \"gold\"\nplan = \"2h\"\n", 6, "tier"),
    ("[defaults]\nwarning_at = 1.5\n[[limit]]\nplan = \"4h\"\n", 2, "warning_at"),
    ("[[limit]]\nplan = \"4h\"\ncalendar = \"office\"\n", 3, "no calendar 'office'"),
    ("[[limit]]\nplan = \"4h\"\nspeed = \"fast\"\n", 3, "unknown key 'speed'"),
    ("[[limit]]\nplan = \"4h\"\n[calendar.office]\ntimezone = \"Mars/Olympus\"\nhours = { mon = \"09:00-18:00\" }\n",
     4, "unknown time zone"),
    ("[[limit]]\nplan = \"4h\"\n[calendar.office]\nhours = { mon = \"18:00-09:00\" }\n", 4, "closes before"),
    ("[[limit]\nplan = \"4h\"\n", 1, ""),
    ("[[limit]]\nplan = \"4h\"\n[calendar.office]\nhours = { mon = \"09:00-18:00\" }\nholidays = [2027-02-06]\n"
     "workdays = [2027-02-06]\n", 6, "both a holiday and a make-up workday"),
    ("[[limit]]\nplan = \"4h\"\n[calendar.office]\nhours = { mon = \"09:00-18:00\" }\nworkday = [2027-02-06]\n",
     5, "unknown key 'workday'"),
    ("[[limit]]\nplan = \"4h\"\n[calendar.office]\nhours = { mon = \"09:00-18:00\" }\nworkdays = [\"6 Feb\"]\n",
     5, "not a date"),
])
def test_a_policy_with_an_error_is_refused_with_the_line_and_the_reason(text: str, line: int, words: str) -> None:
    with pytest.raises(PolicyError) as error:
        SlaPolicy.parse(text)
    assert error.value.line == line and words in error.value.reason


def test_durations() -> None:
    assert duration("45s") == timedelta(seconds=45) and duration("2d") == timedelta(days=2)
    assert duration("1h30m") == timedelta(minutes=90)
    for bad in ("", "0m", "30", "m30", "1.5h"):
        with pytest.raises(ValueError):
            duration(bad)


def test_the_cli_prints_a_years_working_days_with_the_make_up_days(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from infra.cli import main

    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.replace('holidays = ["2027-01-01"]', 'holidays = [2027-02-08, 2027-02-09, 2027-02-10, '
                                     '2027-02-11, 2027-02-12]\nworkdays = [2027-02-06]'))
    shown = CliRunner().invoke(main, ["sla", "calendar", "--year", "2027", "--name", "office"],
                               env={"TICKETING_SLA_POLICY": str(policy), "TICKETING_DATA_DIR": str(tmp_path),
                                    "COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    [february] = [line for line in shown.output.splitlines() if "2027-02" in line]
    weekdays = sum(1 for d in range(1, 29) if datetime(2027, 2, d).weekday() < 5)
    assert f"│ {weekdays - 5 + 1} " in february, february  # five days off, one made up
    assert "02-06 Sat" in february and "02-08 Mon" in february
    working = sum(1 for d in range(365) if (datetime(2027, 1, 1) + timedelta(days=d)).weekday() < 5) - 5 + 1
    assert f"{working} working days in 2027" in shown.output


def test_the_official_list_fills_a_calendar_with_the_holidays_and_make_up_workdays(tmp_path: Path) -> None:
    """China's 2026 Spring Festival as the State Council announced it (国办发明电〔2025〕7号):
    15-23 February off, Saturdays 14 and 28 February worked; National Day 1-7 October
    off, Sunday 20 September and Saturday 10 October worked."""
    from click.testing import CliRunner

    from infra.cli import main

    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = {"TICKETING_SLA_POLICY": str(policy), "TICKETING_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    filled = CliRunner().invoke(main, ["sla", "calendar", "--year", "2026", "--name", "office", "--official", "CN"],
                                env=env)
    assert filled.exit_code == 0, filled.output
    lines = [line for line in filled.output.splitlines() if not line.startswith("#")]
    assert len(lines) == 2 and lines[0].startswith("holidays = [") and lines[1].startswith("workdays = [")
    assert '"2027-01-01"' in lines[0], "the calendar's dates of other years are kept"
    policy.write_text(POLICY.replace('holidays = ["2027-01-01"]', "\n".join(lines)))

    shown = CliRunner().invoke(main, ["sla", "calendar", "--year", "2026", "--name", "office"], env=env)
    assert shown.exit_code == 0, shown.output
    months = {line.split("│")[1].strip(): line for line in shown.output.splitlines() if "│ 2026-" in line}
    off_in_february = {datetime(2026, 2, d) for d in range(15, 24)}
    february = sum(1 for d in range(1, 29) if (day := datetime(2026, 2, d)).weekday() < 5
                   and day not in off_in_february) + 2  # the two Saturdays worked
    assert f"│ {february} " in months["2026-02"], months["2026-02"]
    assert "02-14 Sat" in months["2026-02"] and "02-28 Sat" in months["2026-02"]
    off_in_october = {datetime(2026, 10, d) for d in range(1, 8)}
    october = sum(1 for d in range(1, 32) if (day := datetime(2026, 10, d)).weekday() < 5
                  and day not in off_in_october) + 1  # Saturday 10 October worked
    assert f"│ {october} " in months["2026-10"], months["2026-10"]
    assert "09-20 Sun" in months["2026-09"] and "10-10 Sat" in months["2026-10"]

    unknown = CliRunner().invoke(main, ["sla", "calendar", "--year", "2026", "--official", "XX"], env=env)
    assert unknown.exit_code != 0 and "XX" in unknown.output and "Traceback" not in unknown.output
