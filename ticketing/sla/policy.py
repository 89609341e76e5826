"""The SLA policy: targets per case kind x customer tier x priority for each
metric, read from a TOML file that operations teams write (see the README
and infra/sla_policy.toml, the default). A file with an error is refused with
the line and the reason."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import date, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ticketing import config
from ticketing.config import ConfigError, Lines
from ticketing.sla.calendar import AROUND_THE_CLOCK, WEEKDAYS, Calendar
from ticketing.values import Metric

METRICS = tuple(m.value for m in Metric)
KINDS = ("complaint", "repair_job", "callback")
TIERS = ("basic", "vip", "strategic")
PRIORITIES = ("low", "normal", "high", "urgent")

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


PolicyError = ConfigError
"""A mistake in the policy file (line and reason)."""


def duration(text: str) -> timedelta:
    """`45s`, `30m`, `4h`, `2d`, or combined: `1h30m`."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration such as 45s, 30m, 4h, 2d or 1h30m")
    d, h, m, s = (int(g or 0) for g in match.groups())
    value = timedelta(days=d, hours=h, minutes=m, seconds=s)
    if not value:
        raise ValueError("a limit must be longer than zero")
    return value


def spelled(value: timedelta) -> str:
    """A duration as the policy file writes it: `1h30m`, `2d`, `45s`."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass(frozen=True)
class Limit:
    kind: str
    tier: str
    priority: str
    targets: dict[str, timedelta]
    calendar: str | None = None
    warning_at: float | None = None
    line: int | None = None
    """Of its `[[limit]]` in the policy file, so a replay can say which rule applied."""

    def matches(self, kind: str, tier: str, priority: str) -> bool:
        return all(mine in ("*", theirs) for mine, theirs in
                   ((self.kind, kind), (self.tier, tier), (self.priority, priority)))

    @property
    def specificity(self) -> int:
        return sum(value != "*" for value in (self.kind, self.tier, self.priority))


@dataclass(frozen=True)
class Target:
    """What one running limit counts against."""

    limit: timedelta
    calendar: Calendar
    warning_at: float
    line: int | None = None
    """The policy file's line of the `[[limit]]` that set it."""
    policy: str = ""
    """The policy file's SHA-256."""


@dataclass(frozen=True)
class SlaPolicy:
    limits: tuple[Limit, ...]
    calendars: dict[str, Calendar] = field(default_factory=dict)
    warning_at: float = 0.75
    calendar: str = "24x7"
    digest: str = ""
    """SHA-256 of the file's text: which policy this is, in a record of adoptions."""
    text: str = field(default="", compare=False, repr=False)
    _targets: dict[tuple[str, str, str, str], Target | None] = field(default_factory=dict, compare=False,
                                                                   repr=False)

    def target(self, kind: str, tier: str, priority: str, metric: str) -> Target | None:
        """The most specific matching limit that sets this metric (on a tie,
        the later one in the file); None when no limit applies."""
        key = (kind, tier, priority, metric)
        if key not in self._targets:
            self._targets[key] = self._find(*key)
        return self._targets[key]

    def _find(self, kind: str, tier: str, priority: str, metric: str) -> Target | None:
        best: Limit | None = None
        for limit in self.limits:
            if metric in limit.targets and limit.matches(kind, tier, priority):
                if best is None or limit.specificity >= best.specificity:
                    best = limit
        if best is None:
            return None
        calendar_name = best.calendar or self.calendar
        return Target(best.targets[metric], self.calendars.get(calendar_name, AROUND_THE_CLOCK),
                      best.warning_at if best.warning_at is not None else self.warning_at, best.line, self.digest)

    @classmethod
    def parse(cls, text: str) -> SlaPolicy:
        return replace(_Reader(text).policy(config.load(text)), digest=policy_digest(text), text=text)


def policy_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Reader(Lines):
    """Turns the parsed file into a policy, naming the line of any mistake."""

    def policy(self, data: dict[str, Any]) -> SlaPolicy:
        unknown = set(data) - {"defaults", "limit", "calendar"}
        if unknown:
            key = sorted(unknown)[0]
            raise PolicyError(self.line_of(key) or self.line_of(f"[{key}"), f"unknown section or key {key!r}")
        defaults = data.get("defaults", {})
        warning_at = self.share(defaults.get("warning_at", 0.75), "warning_at", "[defaults]")
        calendars = {name: self.calendar(name, spec) for name, spec in data.get("calendar", {}).items()}
        calendars.setdefault("24x7", AROUND_THE_CLOCK)
        default_calendar = defaults.get("calendar", "24x7")
        if default_calendar not in calendars:
            raise self.fail(f"no calendar {default_calendar!r}: define [calendar.{default_calendar}]",
                            "calendar", "[defaults]")
        limits = tuple(self.limit(i, spec, calendars) for i, spec in enumerate(data.get("limit", [])))
        if not limits:
            raise PolicyError(None, "the policy sets no [[limit]]")
        return SlaPolicy(limits, calendars, warning_at, default_calendar)

    def share(self, value: Any, key: str, section: str, nth: int = 0) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise self.fail(f"{key} must be a share between 0 and 1, such as 0.75", key, section, nth)
        return float(value)

    def limit(self, nth: int, spec: dict[str, Any], calendars: dict[str, Calendar]) -> Limit:
        section = "[[limit]]"
        allowed = {"kind", "tier", "priority", "calendar", "warning_at", *METRICS}
        for key in spec:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r} in a [[limit]]; metrics are {', '.join(METRICS)}",
                                key, section, nth)
        keys = {}
        for key, vocabulary in (("kind", KINDS), ("tier", TIERS), ("priority", PRIORITIES)):
            value = spec.get(key, "*")
            if value != "*" and value not in vocabulary:
                raise self.fail(f"{key} must be one of {', '.join(vocabulary)} or \"*\"", key, section, nth)
            keys[key] = value
        targets = {}
        for metric in METRICS:
            if metric in spec:
                try:
                    targets[metric] = duration(spec[metric])
                except ValueError as error:
                    raise self.fail(str(error), metric, section, nth) from None
        if not targets:
            raise self.fail("a [[limit]] sets no metric", "kind", section, nth)
        calendar = spec.get("calendar")
        if calendar is not None and calendar not in calendars:
            raise self.fail(f"no calendar {calendar!r}: define [calendar.{calendar}]", "calendar", section, nth)
        warning_at = self.share(spec["warning_at"], "warning_at", section, nth) if "warning_at" in spec else None
        return Limit(keys["kind"], keys["tier"], keys["priority"], targets, calendar, warning_at,
                     self.line_of(section, nth=nth))

    def calendar(self, name: str, spec: dict[str, Any]) -> Calendar:
        section = f"[calendar.{name}]"
        for key in spec:
            if key not in ("timezone", "hours", "holidays", "workdays", "workday_hours"):
                raise self.fail(f"unknown key {key!r} in a calendar; it takes timezone, hours, holidays, workdays "
                                f"and workday_hours", key, section)
        try:
            zone = ZoneInfo(spec.get("timezone", "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(f"unknown time zone {spec.get('timezone')!r}", "timezone", section) from None
        hours: dict[int, tuple[tuple[time, time], ...]] = {}
        for day, periods in spec.get("hours", {}).items():
            if day not in WEEKDAYS:
                raise self.fail(f"{day!r} is not a weekday ({', '.join(WEEKDAYS)})", "hours", section)
            try:
                hours[WEEKDAYS.index(day)] = tuple(_period(p) for p in str(periods).split(","))
            except ValueError as error:
                raise self.fail(f"{day}: {error}", "hours", section) from None
        if not hours:
            raise self.fail("a business calendar needs opening hours", "hours", section)
        holidays = self.dates(spec.get("holidays", []), "holidays", section)
        workdays = self.dates(spec.get("workdays", []), "workdays", section)
        if both := sorted(holidays & workdays):
            raise self.fail(f"{both[0]} is both a holiday and a make-up workday", "workdays", section)
        if "workday_hours" in spec:
            try:
                workday_hours = tuple(_period(p) for p in str(spec["workday_hours"]).split(","))
            except ValueError as error:
                raise self.fail(f"workday_hours: {error}", "workday_hours", section) from None
        else:  # a make-up day is worked like the first working day of the week
            workday_hours = hours[min(hours)]
        return Calendar(name, zone, hours, frozenset(holidays), frozenset(workdays), workday_hours)

    def dates(self, values: Any, key: str, section: str) -> set[date]:
        if not isinstance(values, list):
            raise self.fail(f"{key} must be a list of dates such as [2027-01-01]", key, section)
        found = set()
        for value in values:
            try:
                found.add(value if isinstance(value, date) else date.fromisoformat(str(value)))
            except ValueError:
                raise self.fail(f"{value!r} is not a date such as 2027-01-01", key, section) from None
        return found


def _period(text: str) -> tuple[time, time]:
    try:
        opens, closes = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a period such as 09:00-18:00") from None
    if closes <= opens:
        raise ValueError(f"{text.strip()!r} closes before it opens")
    return opens, closes
