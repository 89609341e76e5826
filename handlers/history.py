"""A case as it was at any instant: its events up to then, its state rebuilt from
exactly those, and its service limits as they stood under the policy of then."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Notification

from contracts.queries import CaseHistoryReply, LimitAsOf
from contracts.sla_queries import PolicyInForce
from handlers.translate import envelope, names, state_json
from projections import sla_tables
from ticketing.sla.clock import CaseClocks
from ticketing.sla.simulate import CaseTrack
from ticketing.sla.timeline import Happening, PolicyTimeline


class HistoryStore(Protocol):
    repository: Any
    mapper: Any

    def case_notifications(self, case_id: UUID) -> list[Notification]: ...


def case_history(store: HistoryStore, case_id: UUID, at: datetime,
                 policies: Callable[[], PolicyTimeline] | None = None) -> CaseHistoryReply | None:
    """The events of a case up to `at`, its state rebuilt from exactly
    those, and its service limits as they stood then under the policy of then."""
    notifications = store.case_notifications(case_id)
    if not notifications:
        return None
    events = [(n.id, store.mapper.to_domain_event(n)) for n in notifications]
    upto = [(position, e) for position, e in events if e.timestamp <= at]
    aggregate_type = names(type(events[0][1]))[0]
    if not upto:
        state: dict[str, Any] = {}
        version = 0
    else:
        version = upto[-1][1].originator_version
        state = state_json(store.repository.get(case_id, version=version).state())
    limits, in_force = [], None
    if upto and aggregate_type != "customer" and policies is not None:
        timeline = policies()
        adopted = timeline.in_force(at)
        in_force = PolicyInForce(digest=adopted.policy.digest, adopted_at=adopted.at)
        clocks = replay_case(store, aggregate_type, [e for _, e in upto], timeline, at)
        limits = limits_as_of(clocks, timeline, at)
    return CaseHistoryReply(
        case_id=case_id, aggregate_type=aggregate_type, at=at, version=version, state=state,
        events=[envelope(e, position) for position, e in upto], sla=limits, sla_policy=in_force,
        began_at=events[0][1].timestamp,
    )


def replay_case(store: HistoryStore, kind: str, events: list[Any], timeline: PolicyTimeline,
                at: datetime) -> CaseClocks:
    """A case's limits at `at`, from its events and its customer's tier changes up to then."""
    first = events[0]
    customer_id = getattr(first, "customer_id", None)
    track = CaseTrack(str(first.originator_id), kind, str(customer_id),
                      getattr(first, "priority", None) or sla_tables.DEFAULT_PRIORITY, first.timestamp)
    track.happenings = [Happening(e.timestamp, name, getattr(e, "priority", None))
                        for e in events if (name := names(type(e))[1]) != "sla_breached"]
    if customer_id is not None:
        customer = (store.mapper.to_domain_event(n) for n in store.case_notifications(customer_id))
        track.add_tiers(((e.timestamp, e.tier) for e in customer if hasattr(e, "tier")), at)
    return track.replay(timeline, at)


def limits_as_of(clocks: CaseClocks, timeline: PolicyTimeline, at: datetime) -> list[LimitAsOf]:
    found = []
    for result in clocks.results:
        state = "ended" if result.met is None else "met" if result.met else "breached"
        found.append(LimitAsOf(
            metric=result.metric, cycle=result.cycle, state=state, started_at=result.started_at,
            stopped_at=result.stopped_at, deadline=result.deadline, time_left_seconds=None,
            elapsed_seconds=result.elapsed.total_seconds(), limit_seconds=int(result.limit.total_seconds()),
            calendar=result.calendar, policy=result.target.policy if result.target else "",
            rule_line=result.target.line if result.target else None))
    for running in clocks.running.values():
        running = running.as_of(at)
        deadline = running.deadline
        if running.breached_at is not None:
            state = "breached"
        else:
            state = "paused" if running.paused_at is not None else "running"
        left = running.target.calendar.elapsed(at, deadline) if deadline and deadline > at else None
        overdue = -running.target.calendar.elapsed(deadline, at).total_seconds() if deadline and deadline <= at \
            else None
        found.append(LimitAsOf(
            metric=running.metric, cycle=running.cycle, state=state, started_at=running.started_at,
            stopped_at=None, deadline=deadline,
            time_left_seconds=left.total_seconds() if left is not None else overdue,
            elapsed_seconds=running.elapsed(at).total_seconds(),
            limit_seconds=int(running.target.limit.total_seconds()), calendar=running.target.calendar.name,
            policy=running.target.policy, rule_line=running.target.line))
    return sorted(found, key=lambda limit: (limit.started_at, limit.cycle, limit.metric))
