"""The SLA read model: every service limit of every case, running or done,
with its deadline, kept in SQL so a timer can find what falls due (see
infra/sla_monitor.py) and supervisors can ask what runs and what was breached.

One row per case (kind, customer, tier, priority, assignee) and one per limit
and cycle (`case/metric/cycle`): while it runs, its start, pause and the
deadline and warning instant counted on its calendar; once done, when it
stopped, the counted time and whether it was met. The rows hold the clocks'
primitives; the targets come from the SLA policy, so the pure
`ticketing.sla.clock.CaseClocks` does all the counting, live and on rebuild
alike."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    select,
)

from projections.base import UTC_ZONE, Envelope, counted_elsewhere, empty, utc
from projections.case_summary import assignee_after
from projections.rows import Rows, add_up, insert_missing
from projections.sla_tables import (
    COUNTERS,
    DEFAULT_PRIORITY,
    DEFAULT_TIER,
    RUNNING,
    RUNNING_CLOCKS,
    ledger_metadata,
    metadata,
    sla_case,
    sla_clock,
    sla_counted_under,
    sla_customer,
    sla_on_time,
    sla_policy_counted,
    sla_staff_month,
)
from projections.staff import month_in, person_after
from ticketing.sla.clock import CaseClocks, Result, Running
from ticketing.sla.policy import SlaPolicy


def clock_id(case_id: str, metric: str, cycle: int) -> str:
    return f"{case_id}/{metric}/{cycle}"


def running_from(row: dict[str, Any], case: dict[str, Any], policy: SlaPolicy) -> Running | None:
    """A stored running limit, counting against the policy's target for the
    case as it is now (None when the policy no longer sets one)."""
    target = policy.target(case["kind"], case["tier"], case["priority"], row["metric"])
    if target is None:
        return None
    return Running(row["metric"], row["cycle"], utc(row["started_at"]), target, utc(row["paused_at"]),
                   timedelta(seconds=row["paused_seconds"]), utc(row["breached_at"]))


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    return {k: utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


def _running_row(case_id: str, running: Running) -> dict[str, Any]:
    return {
        "clock_id": clock_id(case_id, running.metric, running.cycle), "case_id": case_id,
        "metric": running.metric, "cycle": running.cycle,
        "state": "paused" if running.paused_at else "running", "started_at": utc(running.started_at),
        "paused_at": utc(running.paused_at), "paused_seconds": running.paused.total_seconds(),
        "limit_seconds": int(running.target.limit.total_seconds()), "calendar": running.target.calendar.name,
        "deadline": utc(running.deadline), "warning_at": utc(running.warning),
        "breached_at": utc(running.breached_at), "stopped_at": None, "elapsed_seconds": None,
    }


def _result_row(case_id: str, result: Result) -> dict[str, Any]:
    state = "ended" if result.met is None else "met" if result.met else "missed"
    return {
        "clock_id": clock_id(case_id, result.metric, result.cycle), "case_id": case_id,
        "metric": result.metric, "cycle": result.cycle, "state": state, "started_at": utc(result.started_at),
        "paused_at": None, "paused_seconds": 0.0, "limit_seconds": int(result.limit.total_seconds()),
        "calendar": result.calendar, "deadline": utc(result.deadline), "warning_at": None,
        "breached_at": utc(result.breached_at), "stopped_at": utc(result.stopped_at),
        "elapsed_seconds": result.elapsed.total_seconds(),
    }


@dataclass
class _Case:
    row: dict[str, Any]
    clocks: CaseClocks
    loaded: dict[str, Running]
    """The running limits as read (by metric): those still the same objects
    afterwards did not change and are not written again."""


class SlaLimits:
    """The projection. `policy` supplies the targets."""

    name = "sla"
    metadata = metadata

    def __init__(self, policy: SlaPolicy, zone: ZoneInfo = UTC_ZONE) -> None:
        self.policy = policy
        self.zone = zone

    def stale(self, conn: Connection) -> bool:
        """Its day counters were kept in another time zone."""
        kept = conn.execute(select(sla_counted_under.c.digest).where(sla_counted_under.c.name == COUNTERS)).scalar()
        return counted_elsewhere(conn, self.name, kept, self.zone)

    def apply(self, conn: Connection, events: list[Envelope]) -> None:
        case_events = [e for e in events if e["aggregate_type"] != "customer"]
        customer_events = [e for e in events if e["aggregate_type"] == "customer"]
        retiered = {e["aggregate_id"] for e in customer_events if e["type"] == "customer.tier_changed"}
        case_ids = {e["aggregate_id"] for e in case_events}
        if retiered:
            case_ids |= set(conn.execute(select(sla_case.c.case_id).where(
                sla_case.c.customer_id.in_(retiered))).scalars())
        customer_ids = {e["aggregate_id"] for e in customer_events}
        customer_ids |= {e["data"]["customer_id"] for e in case_events if "customer_id" in e["data"]}
        customers = Rows(conn, sla_customer, sla_customer.c.customer_id, customer_ids)
        cases = Rows(conn, sla_case, sla_case.c.case_id, case_ids)
        clocks = Rows(conn, sla_clock, sla_clock.c.clock_id, case_ids, by=sla_clock.c.case_id,
                      where=RUNNING_CLOCKS)
        live = self._load(cases, clocks)
        recorded: list[str] = []
        by_person: Counter[tuple[str, str, str]] = Counter()
        for event in events:
            at = datetime.fromisoformat(event["occurred_at"])
            name, data = event["type"].split(".", 1)[1], event["data"]
            if event["aggregate_type"] == "customer":
                if name in ("registered", "tier_changed"):
                    customers.put(event["aggregate_id"], {"customer_id": event["aggregate_id"], "tier": data["tier"]})
                if name == "tier_changed":
                    for case in live.values():
                        if case.row["customer_id"] == event["aggregate_id"]:
                            case.row["tier"] = data["tier"]
                            case.clocks.regrade(self.policy, at, tier=data["tier"])
                continue
            case = live.get(event["aggregate_id"])
            if case is None:
                customer = customers.get(data["customer_id"])
                row = {"case_id": event["aggregate_id"], "kind": event["aggregate_type"],
                       "customer_id": data["customer_id"],
                       "tier": customer["tier"] if customer else DEFAULT_TIER,
                       "priority": data.get("priority") or DEFAULT_PRIORITY, "assignee": None, "person": None,
                       "cycle": 1}
                case = live[event["aggregate_id"]] = _Case(
                    row, CaseClocks(row["kind"], row["tier"], row["priority"]), {})
            case.row["assignee"] = assignee_after(case.row["assignee"], name, data)
            case.row["person"] = person_after(case.row["person"], case.row["assignee"], event)
            if name == "priority_changed":
                case.row["priority"] = data["priority"]
                case.clocks.regrade(self.policy, at, priority=data["priority"])
            elif name == "sla_breached":
                recorded.append(clock_id(event["aggregate_id"], data["metric"], data["cycle"]))
            else:
                done = len(case.clocks.results)
                case.clocks.on(name, at, self.policy)
                person = case.row["person"]
                for result in case.clocks.results[done:]:
                    if result.met is not None and person is not None:
                        month = month_in(result.stopped_at, self.zone)
                        by_person[(month, f"{'met' if result.met else 'missed'}.{result.metric}", person)] += 1
            case.row["cycle"] = case.clocks.cycle
        self._put(live, cases, clocks)
        self._count(conn, live)
        add_up(conn, sla_staff_month, by_person)
        insert_missing(conn, sla_counted_under, {"name": COUNTERS, "digest": self.zone.key})
        customers.write()
        cases.write()
        clocks.write()
        if recorded:
            conn.execute(sla_clock.update().where(sla_clock.c.clock_id.in_(recorded)).values(recorded=True))

    def _load(self, cases: Rows, clocks: Rows) -> dict[str, _Case]:
        live: dict[str, _Case] = {}
        for case_id, row in cases.rows.items():
            live[case_id] = _Case(dict(row), CaseClocks(row["kind"], row["tier"], row["priority"], row["cycle"]),
                                  {})
        for row in clocks.rows.values():
            case = live[row["case_id"]]
            running = running_from(row, case.row, self.policy)
            if running is not None:
                case.clocks.running[running.metric] = case.loaded[running.metric] = running
        return live

    def _count(self, conn: Connection, live: dict[str, _Case]) -> None:
        """Add the limits this batch stopped met or missed to the day counters."""
        found: dict[str, dict[str, Any]] = {}
        for case in live.values():
            for result in case.clocks.results:
                if result.met is None:
                    continue
                day = result.stopped_at.astimezone(self.zone).date()
                key = f"{day.isoformat()}|{case.row['kind']}|{result.metric}"
                counts = found.setdefault(key, {"key": key, "day": day, "kind": case.row["kind"],
                                                "metric": result.metric, "met": 0, "missed": 0})
                counts["met" if result.met else "missed"] += 1
        if not found:
            return
        kept = Rows(conn, sla_on_time, sla_on_time.c.key, set(found))
        for key, counts in found.items():
            before = kept.get(key)
            kept.put(key, counts if before is None else
                     before | {"met": before["met"] + counts["met"], "missed": before["missed"] + counts["missed"]})
        kept.write()

    @staticmethod
    def _put(live: dict[str, _Case], cases: Rows, clocks: Rows) -> None:
        still = {clock_id(case_id, r.metric, r.cycle) for case_id, case in live.items()
                 for r in case.clocks.running.values()}
        for key, row in list(clocks.rows.items()):  # stopped below, or gone from the policy
            if row["state"] in RUNNING and key not in still:
                clocks.put(key, row | {"state": "ended", "stopped_at": row["started_at"]})
        for case_id, case in live.items():
            if case.row != cases.get(case_id):
                cases.put(case_id, case.row)
            for metric, limit in case.clocks.running.items():
                if limit is not case.loaded.get(metric):
                    _merge(clocks, _running_row(case_id, limit))
            for result in case.clocks.results:
                _merge(clocks, _result_row(case_id, result))

    def retarget(self, conn: Connection) -> int:
        """Count every running limit against the policy as it is now (run at
        start, before the live consumer: the policy file may have changed
        since the rows were written). Nothing to do when they were last counted
        under this very policy. Returns how many rows changed."""
        ledger_metadata.create_all(conn)
        counted = conn.execute(select(sla_policy_counted.c.digest))
        if self.policy.digest and counted.scalar() == self.policy.digest:
            return 0
        changed = self._retarget(conn)
        conn.execute(sla_policy_counted.delete())
        conn.execute(sla_policy_counted.insert().values(digest=self.policy.digest))
        return changed

    def _retarget(self, conn: Connection) -> int:
        running = conn.execute(select(sla_clock.c.case_id).where(sla_clock.c.state.in_(RUNNING))).scalars()
        case_ids = set(running)
        cases = Rows(conn, sla_case, sla_case.c.case_id, case_ids)
        clocks = Rows(conn, sla_clock, sla_clock.c.clock_id, case_ids, by=sla_clock.c.case_id,
                      where=RUNNING_CLOCKS)
        live = self._load(cases, clocks)
        for key, row in list(clocks.rows.items()):
            case = live[row["case_id"]]
            limit = case.clocks.running.get(row["metric"])
            fresh = (_running_row(row["case_id"], limit) | {"recorded": row["recorded"]} if limit
                     else row | {"state": "ended", "stopped_at": row["started_at"]})
            if fresh != _stored(row):
                clocks.put(key, fresh)
        clocks.write()
        return len(clocks.changed)

    def reset(self, conn: Connection) -> None:
        empty(conn, metadata)


def _merge(clocks: Rows, row: dict[str, Any]) -> None:
    """Write a limit's row, keeping whether its breach is on the case."""
    previous = clocks.get(row["clock_id"])
    clocks.put(row["clock_id"], row | {"recorded": bool(previous and previous["recorded"])})
