"""Service limits as the queries show them (running, breached, paged by
deadline) and the what-if replay of a candidate policy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from contracts.sla_queries import (
    PolicyInForce,
    SimulatedChange,
    SimulatedFigure,
    SlaBreach,
    SlaLimit,
    SlaSimulateReply,
)
from projections import sla, sla_tables
from projections.base import utc
from ticketing.sla.policy import SlaPolicy
from ticketing.sla.simulate import CaseTrack, compare
from ticketing.sla.timeline import Adopted, PolicyTimeline

Tracks = Callable[[datetime, datetime], tuple[list[CaseTrack], int]]
"""The cases registered in [since, until) with their happenings, and how many stored events were read."""


def simulate(tracks: Tracks, then: PolicyTimeline, candidate_text: str, since: datetime, until: datetime,
             changed_limit: int = 1000, kind: str | None = None) -> SlaSimulateReply:
    """The what-if (`sla.simulate`, `ticketing sla simulate`); a candidate
    policy with a mistake raises PolicyError naming its line."""
    candidate = SlaPolicy.parse(candidate_text)
    found, read = tracks(since, until)
    found = [track for track in found if kind in (None, track.kind)]
    comparison = compare(found, then, PolicyTimeline((Adopted(None, candidate),)), until)
    adopted = [a for a in then.adopted if a.at is None or a.at < until]
    return SlaSimulateReply(
        since=since, until=until, cases=comparison.cases, events_read=read, candidate=candidate.digest,
        policies_then=[PolicyInForce(digest=a.policy.digest, adopted_at=a.at) for a in adopted],
        figures=[SimulatedFigure(dimension=dimension, value=value, then_met=was.met, then_breached=was.breached,
                                 then_on_time=was.on_time, candidate_met=would.met,
                                 candidate_breached=would.breached, candidate_on_time=would.on_time)
                 for dimension, value, was, would in comparison.rows()],
        changed_total=len(comparison.changed),
        changed=[SimulatedChange(case_id=c.case_id, case_type=c.kind, metric=c.metric, cycle=c.cycle,
                                 then=c.then, candidate=c.candidate) for c in comparison.changed[:changed_limit]])


def limit_cursor(row: dict[str, Any]) -> str:
    deadline = utc(row["deadline"])
    return f"{deadline.isoformat() if deadline else ''}|{row['clock_id']}"


def parse_limit_cursor(text: str) -> tuple[datetime | None, str]:
    deadline, clock_id = text.split("|")
    at = datetime.fromisoformat(deadline) if deadline else None
    if (at is not None and at.tzinfo is None) or not clock_id or len(clock_id) > 120:
        raise ValueError(text)
    return at, clock_id


def shown_limit(row: dict[str, Any], now: datetime, policy: SlaPolicy) -> SlaLimit:
    running = sla.running_from(row, row, policy)
    deadline = row["deadline"]
    if row["state"] == "paused":
        state = "paused"
    elif row["breached_at"] is not None or (deadline is not None and deadline <= now):
        state = "breached"
    elif row["warning_at"] is not None and row["warning_at"] <= now:
        state = "at_risk"
    else:
        state = "running"
    return SlaLimit(
        case_id=row["case_id"], case_type=row["kind"], customer_id=row["customer_id"], metric=row["metric"],
        cycle=row["cycle"], tier=row["tier"], priority=row["priority"], assignee=row["assignee"], state=state,
        started_at=row["started_at"], deadline=deadline,
        time_left_seconds=(deadline - now).total_seconds() if deadline is not None else None,
        elapsed_seconds=running.elapsed(now).total_seconds() if running else 0.0,
        limit_seconds=row["limit_seconds"], calendar=row["calendar"])


def shown_breach(row: dict[str, Any], now: datetime, policy: SlaPolicy) -> SlaBreach:
    if row["state"] in sla_tables.RUNNING:
        running = sla.running_from(row, row, policy)
        elapsed = running.elapsed(now).total_seconds() if running else 0.0
    else:
        elapsed = row["elapsed_seconds"]
    return SlaBreach(
        case_id=row["case_id"], case_type=row["kind"], customer_id=row["customer_id"], metric=row["metric"],
        cycle=row["cycle"], tier=row["tier"], priority=row["priority"], assignee=row["assignee"],
        state=row["state"], started_at=row["started_at"], breached_at=row["breached_at"] or row["deadline"],
        stopped_at=row["stopped_at"], elapsed_seconds=elapsed, limit_seconds=row["limit_seconds"],
        recorded=row["recorded"])
