"""Which SLA policy was in force when: the policies adopted, in order, and
the replay of one case's limits as they stood at any instant under them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ticketing.sla.clock import CaseClocks
from ticketing.sla.policy import SlaPolicy


@dataclass(frozen=True)
class Adopted:
    at: datetime | None
    """None: the only policy known, in force since the beginning."""
    policy: SlaPolicy


@dataclass(frozen=True)
class PolicyTimeline:
    adopted: tuple[Adopted, ...]

    def in_force(self, at: datetime) -> Adopted:
        """The policy adopted last by `at` (the first one for any earlier
        instant: the store's history may begin before its first record)."""
        found = self.adopted[0]
        for adoption in self.adopted[1:]:
            if adoption.at is not None and adoption.at <= at:
                found = adoption
        return found


@dataclass(frozen=True)
class Happening:
    """One input of a case's limits, in time order: a case event by name
    (`registered`, `resolved`, ...), `priority_changed` or `tier_changed`
    with its new value."""

    at: datetime
    name: str
    value: str | None = None


def replay(kind: str, tier: str, priority: str, happenings: Iterable[Happening], timeline: PolicyTimeline,
           at: datetime) -> CaseClocks:
    """A case's limits at `at`: its happenings up to then applied in order,
    each under the policy in force when it happened; a policy adopted while
    a limit ran counts it from then on against the new target (as the live
    run does when it starts under a new file). Each limit's target names
    the policy (its hash) and the line of the rule that set it."""
    clocks = CaseClocks(kind, tier, priority)
    current: Adopted | None = None
    for happening in sorted((h for h in happenings if h.at <= at), key=lambda h: h.at):
        current = _under(clocks, current, timeline.in_force(happening.at), happening.at)
        if happening.name == "priority_changed":
            clocks.regrade(current.policy, happening.at, priority=happening.value)
        elif happening.name == "tier_changed":
            clocks.regrade(current.policy, happening.at, tier=happening.value)
        else:
            clocks.on(happening.name, happening.at, current.policy)
    _under(clocks, current, timeline.in_force(at), at)
    return clocks


def _under(clocks: CaseClocks, current: Adopted | None, adoption: Adopted, at: datetime) -> Adopted:
    """Regrade the running limits when the policy changed since the last happening."""
    if current is not None and adoption is not current:
        clocks.regrade(adoption.policy, adoption.at or at)
    return adoption
