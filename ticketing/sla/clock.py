"""The running limits of one case, as its events arrive: when each metric's
clock started, its deadline (counted on the limit's calendar, stopped while
the case waits on the customer), and each result once it stops. Pure: the
SLA monitor feeds it events and asks it what is due at an instant."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ticketing.sla.policy import SlaPolicy, Target

# kind -> metric -> (event that starts its clock, events that stop it). A step
# taken later in the loop stops the earlier clocks too: a complaint resolved
# at first contact has had its response and its plan.
CLOCKS: dict[str, dict[str, tuple[str, frozenset[str]]]] = {
    "complaint": {
        "first_response": ("registered", frozenset({"acknowledged", "analysed", "resolved"})),
        "plan": ("registered", frozenset({"analysed", "resolved"})),
        "resolution": ("registered", frozenset({"resolved"})),
        "callback": ("resolved", frozenset({"revisited"})),
        "loop": ("registered", frozenset({"revisited"})),
    },
    "repair_job": {
        "first_response": ("registered", frozenset({"dispatch_requested", "dispatched", "resolved"})),
        "plan": ("registered", frozenset({"analysed", "resolved"})),
        "resolution": ("registered", frozenset({"resolved"})),
        "callback": ("resolved", frozenset({"revisited"})),
    },
    "callback": {
        "first_response": ("scheduled", frozenset({"attempted", "completed"})),
        "resolution": ("scheduled", frozenset({"completed"})),
    },
}
CREATED = frozenset({"registered", "scheduled"})
ENDS = frozenset({"withdrawn", "cancelled", "closed", "missed"})
"""The case ends without the step: its clocks stop with no result."""
RESTARTED_BY_REOPEN = ("plan", "resolution", "loop")
"""Reopening starts a new cycle of these; the first response was given."""
ENDED_BY_REOPEN = ("callback",)
"""A callback still due on the reopened resolution is moot."""


@dataclass(frozen=True)
class Running:
    metric: str
    cycle: int
    started_at: datetime
    target: Target
    paused_at: datetime | None = None
    paused: timedelta = timedelta(0)
    """Counted time spent waiting on the customer so far (the calendar's time)."""
    breached_at: datetime | None = None
    """The deadline that passed, once an event after it showed it had (it
    stays when the clock is paused or regraded afterwards)."""

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

    def as_of(self, at: datetime) -> Running:
        """This clock with its breach noted, if its deadline had passed by `at`."""
        deadline = self.deadline
        if self.breached_at is None and deadline is not None and deadline < at:
            return replace(self, breached_at=deadline)
        return self


@dataclass(frozen=True)
class Result:
    metric: str
    cycle: int
    started_at: datetime
    stopped_at: datetime
    elapsed: timedelta
    limit: timedelta
    met: bool | None
    """None: the case ended (withdrawn, cancelled, closed, missed) without the step."""
    breached_at: datetime | None
    deadline: datetime | None
    """The deadline it counted against when it stopped."""
    calendar: str
    target: Target | None = None
    """What it counted against (the policy's hash and the limit's line with it)."""


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
            self.running = {m: r if r.paused_at else replace(r.as_of(at), paused_at=at)
                            for m, r in self.running.items()}
            return
        if event == "resumed":
            self.running = {m: self._resume(r, at) for m, r in self.running.items()}
            return
        if event in ENDS:
            for metric in list(self.running):
                self._stop(metric, at, reached=False)
            return
        if event == "reopened":
            self.cycle += 1
            for metric in (*ENDED_BY_REOPEN, *RESTARTED_BY_REOPEN):
                if metric in self.running:  # the old cycle's limit ends without its step
                    self._stop(metric, at, reached=False)
            for metric in RESTARTED_BY_REOPEN:
                self._start(metric, at, policy)
            return
        for metric, (starts, stops) in CLOCKS.get(self.kind, {}).items():
            if event in stops and metric in self.running:
                self._stop(metric, at, reached=True)
            if event == starts and (event not in CREATED or self.cycle == 1):
                self._start(metric, at, policy)

    def regrade(self, policy: SlaPolicy, at: datetime, *, tier: str | None = None,
                priority: str | None = None) -> None:
        """A tier or priority change at `at`: the running clocks count against
        the new limits from when they started (a breach already passed stays)."""
        self.tier = tier or self.tier
        self.priority = priority or self.priority
        for metric, running in list(self.running.items()):
            target = policy.target(self.kind, self.tier, self.priority, metric)
            if target is None:
                del self.running[metric]
            else:
                self.running[metric] = replace(running.as_of(at), target=target)

    def _start(self, metric: str, at: datetime, policy: SlaPolicy) -> None:
        if metric not in CLOCKS.get(self.kind, {}):
            return
        target = policy.target(self.kind, self.tier, self.priority, metric)
        if target is not None:
            self.running[metric] = Running(metric, self.cycle, at, target)

    def _stop(self, metric: str, at: datetime, *, reached: bool) -> None:
        running = self._resume(self.running.pop(metric), at).as_of(at)
        elapsed = running.elapsed(at)
        self.results.append(Result(metric, running.cycle, running.started_at, at, elapsed, running.target.limit,
                                   running.breached_at is None if reached else None, running.breached_at,
                                   running.deadline, running.target.calendar.name, running.target))

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
            if running.breached_at is not None or (running.deadline is not None and running.deadline <= now):
                found.append(("breached", running))
            elif running.warning is not None and running.warning <= now:
                found.append(("warning", running))
        return found
