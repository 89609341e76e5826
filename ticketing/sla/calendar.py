"""Business calendars: a limit counts around the clock, or only in business
hours (a weekly schedule in a time zone, minus holidays)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Calendar:
    name: str
    timezone: ZoneInfo | None = None
    """None: around the clock (24x7)."""
    hours: dict[int, tuple[tuple[time, time], ...]] = field(default_factory=dict)
    """Open periods by weekday (0 = Monday)."""
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    """Make-up working days (调休): days off in the weekly schedule (a
    Saturday, say) worked to make up for a holiday, on `workday_hours`."""
    workday_hours: tuple[tuple[time, time], ...] = ()

    def periods_of(self, day: date) -> tuple[tuple[time, time], ...]:
        """The day's open hours: none on a holiday, the make-up hours on a make-up day."""
        if day in self.holidays:
            return ()
        if day in self.workdays:
            return self.workday_hours
        return self.hours.get(day.weekday(), ())

    def _open_periods(self, day: date) -> list[tuple[datetime, datetime]]:
        if self.timezone is None:
            return []
        return [(datetime.combine(day, start, self.timezone), datetime.combine(day, end, self.timezone))
                for start, end in self.periods_of(day)]

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant `duration` of counted time after `start`."""
        if self.timezone is None:
            return start + duration
        left = duration
        day = start.astimezone(self.timezone).date()
        for _ in range(366 * 10):  # a schedule with no open hour at all is refused when parsed
            for opens, closes in self._open_periods(day):
                begin = max(opens, start)
                if begin >= closes:
                    continue
                if begin + left <= closes:
                    return begin + left
                left -= closes - begin
            day += timedelta(days=1)
        raise ValueError(f"calendar {self.name} has no open hours within ten years")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Counted time between two instants."""
        if end <= start:
            return timedelta(0)
        if self.timezone is None:
            return end - start
        total = timedelta(0)
        day = start.astimezone(self.timezone).date()
        last = end.astimezone(self.timezone).date()
        while day <= last:
            for opens, closes in self._open_periods(day):
                begin, finish = max(opens, start), min(closes, end)
                if finish > begin:
                    total += finish - begin
            day += timedelta(days=1)
        return total


AROUND_THE_CLOCK = Calendar("24x7")
