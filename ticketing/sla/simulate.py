"""What-if: the real history of a period replayed against a candidate SLA
policy, beside what happened under the policies of then. Pure: it takes the
cases' happenings and returns the figures; nothing live is touched."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ticketing.sla.clock import CaseClocks
from ticketing.sla.timeline import Happening, PolicyTimeline, replay

DIMENSIONS = ("metric", "kind", "tier", "priority")


@dataclass
class CaseTrack:
    """One case of the period: what its limits are counted from."""

    case_id: str
    kind: str
    customer_id: str
    priority: str
    registered_at: datetime
    tier: str = "basic"
    """At registration; later changes are among the happenings."""
    happenings: list[Happening] = field(default_factory=list)

    def add_tiers(self, history: Iterable[tuple[datetime, str]], until: datetime) -> None:
        """The customer's tiers over time: the one at registration, and each change after it as a happening."""
        for at, tier in history:
            if at <= self.registered_at:
                self.tier = tier
            elif at <= until:
                self.happenings.append(Happening(at, "tier_changed", tier))

    def replay(self, timeline: PolicyTimeline, at: datetime) -> CaseClocks:
        return replay(self.kind, self.tier, self.priority, self.happenings, timeline, at)


@dataclass
class Tally:
    met: int = 0
    breached: int = 0

    @property
    def on_time(self) -> float | None:
        decided = self.met + self.breached
        return self.met / decided if decided else None


@dataclass(frozen=True)
class Change:
    case_id: str
    kind: str
    metric: str
    cycle: int
    then: str
    candidate: str
    """Outcomes: met, breached, ended, running, or none (no limit set)."""


@dataclass
class Comparison:
    cases: int = 0
    happenings: int = 0
    then: dict[tuple[str, str], Tally] = field(default_factory=dict)
    """(dimension, value) -> tally under the policies of then."""
    candidate: dict[tuple[str, str], Tally] = field(default_factory=dict)
    changed: list[Change] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, Tally, Tally]]:
        keys = sorted(set(self.then) | set(self.candidate), key=lambda k: (DIMENSIONS.index(k[0]), k[1]))
        return [(dimension, value, self.then.get((dimension, value), Tally()),
                 self.candidate.get((dimension, value), Tally())) for dimension, value in keys]


def outcomes(clocks: CaseClocks, at: datetime) -> dict[tuple[str, int], str]:
    """Each limit's outcome by `at`: met, breached (stopped late, or past its
    deadline and still running), ended (the case ended first) or running."""
    found = {}
    for result in clocks.results:
        found[(result.metric, result.cycle)] = "ended" if result.met is None else "met" if result.met else "breached"
    for running in clocks.running.values():
        found[(running.metric, running.cycle)] = "breached" if running.as_of(at).breached_at else "running"
    return found


def compare(tracks: Iterable[CaseTrack], then: PolicyTimeline, candidate: PolicyTimeline,
            until: datetime) -> Comparison:
    comparison = Comparison()
    for track in tracks:
        comparison.cases += 1
        comparison.happenings += len(track.happenings)
        before = outcomes(track.replay(then, until), until)
        after = outcomes(track.replay(candidate, until), until)
        for key in sorted(set(before) | set(after)):
            metric, cycle = key
            was, would = before.get(key, "none"), after.get(key, "none")
            for tallies, outcome in ((comparison.then, was), (comparison.candidate, would)):
                if outcome in ("met", "breached"):
                    for dimension, value in (("metric", metric), ("kind", track.kind), ("tier", track.tier),
                                             ("priority", track.priority)):
                        tally = tallies.setdefault((dimension, value), Tally())
                        setattr(tally, outcome, getattr(tally, outcome) + 1)
            if was != would:
                comparison.changed.append(Change(track.case_id, track.kind, metric, cycle, was, would))
    return comparison
