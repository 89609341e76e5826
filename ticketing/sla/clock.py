"""The running limits of one case, as its events arrive: when each metric's
clock started, its deadline (counted on the limit's calendar, stopped while
the case waits on the customer), and each result once it stops. Pure: the
SLA monitor feeds it events and asks it what is due at an instant."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ticketing.sla.policy import SlaPolicy, Target

# metric -> (event that starts its clock, event that stops it)
CLOCKS = {
    "first_response": ("registered", "acknowledged"),
    "plan": ("registered", "analysed"),
    "resolution": ("registered", "resolved"),
    "callback": ("resolved", "revisited"),
    "loop": ("registered", "revisited"),
}
RESTARTED_BY_REOPEN = ("plan", "resolution", "loop")
"""Reopening starts a new cycle of these; the first response was given."""


@dataclass(frozen=True)
class Running:
    metric: str
    cycle: int
    started_at: datetime
    target: Target
    paused_at: datetime | None = None
    paused: timedelta = timedelta(0)
    """Counted time spent waiting on the customer so far (the calendar's time)."""

    @property
    def deadline(self) -> datetime | None:
        """None while paused: the clock does not run."""
        if self.paused_at is not None:
            return None
        return self.target.calendar.add(self.started_at, self.target.limit + self.paused)

    @property
    def warning(self) -> datetime | None:
        if self.paused_at is not None:
            return None
        return self.target.calendar.add(self.started_at, self.target.limit * self.target.warning_at + self.paused)

    def elapsed(self, now: datetime) -> timedelta:
        """Counted time the clock has run by `now`."""
        until = self.paused_at or now
        return self.target.calendar.elapsed(self.started_at, until) - self.paused


@dataclass(frozen=True)
class Result:
    metric: str
    cycle: int
    started_at: datetime
    stopped_at: datetime
    elapsed: timedelta
    limit: timedelta
    met: bool


@dataclass
class CaseClocks:
    kind: str
    tier: str
    priority: str
    cycle: int = 1
    running: dict[str, Running] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)

    def on(self, event: str, at: datetime, policy: SlaPolicy) -> None:
        """Apply one of the case's events (by its name: `registered`,
        `acknowledged`, ..., `customer_awaited`, `resumed`, `reopened`)."""
        if event == "customer_awaited":
            self.running = {m: r if r.paused_at else replace(r, paused_at=at) for m, r in self.running.items()}
            return
        if event == "resumed":
            self.running = {m: self._resume(r, at) for m, r in self.running.items()}
            return
        if event == "reopened":
            self.cycle += 1
            for metric in RESTARTED_BY_REOPEN:
                self._start(metric, at, policy)
            return
        for metric, (starts, stops) in CLOCKS.items():
            if event == stops and metric in self.running:
                self._stop(metric, at)
            if event == starts and (event != "registered" or self.cycle == 1):
                self._start(metric, at, policy)

    def regrade(self, policy: SlaPolicy, *, tier: str | None = None, priority: str | None = None) -> None:
        """A tier or priority change: the running clocks count against the new
        limits from when they started."""
        self.tier = tier or self.tier
        self.priority = priority or self.priority
        for metric, running in list(self.running.items()):
            target = policy.target(self.kind, self.tier, self.priority, metric)
            if target is None:
                del self.running[metric]
            else:
                self.running[metric] = replace(running, target=target)

    def _start(self, metric: str, at: datetime, policy: SlaPolicy) -> None:
        target = policy.target(self.kind, self.tier, self.priority, metric)
        if target is not None:
            self.running[metric] = Running(metric, self.cycle, at, target)

    def _stop(self, metric: str, at: datetime) -> None:
        running = self.running.pop(metric)
        if running.paused_at is not None:
            running = self._resume(running, at)
        elapsed = running.elapsed(at)
        self.results.append(Result(metric, running.cycle, running.started_at, at, elapsed, running.target.limit,
                                   elapsed <= running.target.limit))

    @staticmethod
    def _resume(running: Running, at: datetime) -> Running:
        if running.paused_at is None:
            return running
        waited = running.target.calendar.elapsed(running.paused_at, at)
        return replace(running, paused_at=None, paused=running.paused + waited)

    def due(self, now: datetime) -> list[tuple[str, Running]]:
        """("warning" or "breached", limit) for every running limit whose
        warning or deadline has come by `now`."""
        found = []
        for running in self.running.values():
            if running.deadline is not None and running.deadline <= now:
                found.append(("breached", running))
            elif running.warning is not None and running.warning <= now:
                found.append(("warning", running))
        return found
