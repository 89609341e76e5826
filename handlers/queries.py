"""Queries: a case's history as it was at any instant and a customer, from
the event store itself; the SLA limits running and breached, from the SLA
read model."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Notification
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from contracts.envelope import ErrorDetail
from contracts.health import AuditKey, AuditKeyReply, AuditVerify, AuditVerifyReply, Health, HealthReply
from contracts.queries import (
    CaseHistory,
    CaseHistoryReply,
    CustomerGet,
    CustomerGetReply,
    CustomersDangerous,
    CustomersDangerousReply,
    Dashboard,
    DashboardReply,
    LimitAsOf,
    LinkedCase,
    PolicyInForce,
    Report,
    ReportReply,
    SimulatedChange,
    SimulatedFigure,
    SlaBreach,
    SlaBreaches,
    SlaBreachesReply,
    SlaLimit,
    SlaOpen,
    SlaOpenReply,
    SlaSimulate,
    SlaSimulateReply,
)
from contracts.staff import StaffAssessment, StaffAssessmentReply
from handlers.commands import error_reply, problems_of, unknown_sender
from handlers.identity import Directory, Identity, identify
from handlers.staff import assessment
from handlers.translate import envelope, names, state_json
from projections import figures, sla, sla_reads
from projections.base import utc
from projections.danger import listed
from projections.links import linked
from ticketing import periods
from ticketing.access import TEAM_READERS, acting, may_ask
from ticketing.assessment import AssessmentRules
from ticketing.customer import Customer
from ticketing.danger import LEVELS, Rules
from ticketing.errors import Forbidden
from ticketing.sla.clock import CaseClocks
from ticketing.sla.policy import PolicyError, SlaPolicy
from ticketing.sla.simulate import CaseTrack, compare
from ticketing.sla.timeline import Adopted, Happening, PolicyTimeline
from ticketing.values import Role

Query = TypeVar("Query", bound=BaseModel)


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
                      getattr(first, "priority", None) or sla.DEFAULT_PRIORITY, first.timestamp)
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


MAX_REPLY = 1024 * 1024 - 4096
"""NATS's default max_payload, less room for the headers; the wiring sets the server's own."""

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


Answer = Callable[["QueryService", bytes, Identity], Awaitable[bytes]]


class QueryService:
    def __init__(self, store: HistoryStore, clock: Any, readmodels: Engine, policy: SlaPolicy,
                 zone: ZoneInfo, danger_rules: Rules, directory: Directory,
                 health: Callable[[], Awaitable[HealthReply]] | None = None,
                 audit: Callable[[], Awaitable[AuditVerifyReply]] | None = None,
                 policies: Callable[[], PolicyTimeline] | None = None, tracks: Tracks | None = None,
                 assessment_rules: AssessmentRules | None = None, audit_key: str | None = None) -> None:
        self.store = store
        self.audit_public_key = audit_key
        self.assessment_rules = assessment_rules
        self.tracks = tracks
        self.max_reply = MAX_REPLY
        self.policies = policies or (lambda: PolicyTimeline((Adopted(None, policy),)))
        self.audit_report = audit
        self.directory = directory
        self.health_report = health
        self.danger_rules = danger_rules
        self.clock = clock
        self.readmodels = readmodels
        self.policy = policy
        self.zone = zone

    async def sla_open(self, raw: bytes, _sender: Identity) -> bytes:
        query = _parse(SlaOpen, raw, "sla.open")
        if isinstance(query, bytes):
            return query
        now = self.clock()
        try:
            after = _limit_cursor_parsed(query.after) if query.after else None
        except ValueError:
            return error_reply("validation_error", "after is not a cursor this list gave",
                               [ErrorDetail(field="after", reason="pass the `next` of the page before")])
        reply = await asyncio.to_thread(self._sla_open, query, now, after)
        return orjson.dumps(reply.model_dump(mode="json"))

    def _sla_open(self, query: SlaOpen, now: datetime, after: tuple[datetime | None, str] | None) -> SlaOpenReply:
        with self.readmodels.connect() as conn:
            rows = sla_reads.open_limits(conn, assignee=query.assignee, tier=query.tier, kind=query.kind,
                                         metric=query.metric, limit=query.limit + 1, after=after)
        more, rows = len(rows) > query.limit, rows[:query.limit]
        return SlaOpenReply(at=now, limits=[_limit(row, now, self.policy) for row in rows],
                            next=_limit_cursor(rows[-1]) if more else None)

    async def sla_breaches(self, raw: bytes, _sender: Identity) -> bytes:
        query = _parse(SlaBreaches, raw, "sla.breaches")
        if isinstance(query, bytes):
            return query
        now = self.clock()
        try:
            after = _limit_cursor_parsed(query.after) if query.after else None
        except ValueError:
            after = None
        if query.after and (after is None or after[0] is None):
            return error_reply("validation_error", "after is not a cursor this list gave",
                               [ErrorDetail(field="after", reason="pass the `next` of the page before")])
        reply = await asyncio.to_thread(self._sla_breaches, query, now, after)
        return orjson.dumps(reply.model_dump(mode="json"))

    async def dashboard(self, raw: bytes, _sender: Identity) -> bytes:
        query = _parse(Dashboard, raw, "dashboard")
        if isinstance(query, bytes):
            return query
        now = self.clock()

        def read() -> DashboardReply:
            with self.readmodels.connect() as conn:
                return DashboardReply.model_validate(figures.dashboard(conn, now, self.zone))
        return orjson.dumps((await asyncio.to_thread(read)).model_dump(mode="json"))

    async def customers_dangerous(self, raw: bytes, _sender: Identity) -> bytes:
        query = _parse(CustomersDangerous, raw, "customers.dangerous")
        if isinstance(query, bytes):
            return query
        now = self.clock()
        try:
            after = _parse_cursor(query.after) if query.after else None
        except ValueError:
            return error_reply("validation_error", "after is not a cursor this list gave",
                               [ErrorDetail(field="after", reason="pass the `next` of the page before")])

        def read() -> CustomersDangerousReply:
            with self.readmodels.connect() as conn:  # the list as the monitor last assessed it (each second)
                page, total = listed(conn, least=LEVELS.index(query.level) if query.level else 0,
                                     danger_type=query.danger_type, after=after, limit=query.limit + 1)
            more, page = len(page) > query.limit, page[:query.limit]
            return CustomersDangerousReply(at=now, customers=page, total=total,
                                           next=_cursor(page[-1]) if more else None)
        return orjson.dumps((await asyncio.to_thread(read)).model_dump(mode="json"))

    async def report(self, raw: bytes, _sender: Identity) -> bytes:
        query = _parse(Report, raw, "report")
        if isinstance(query, bytes):
            return query
        try:
            period = periods.parse(query.period, self.zone)
        except ValueError as error:
            return error_reply("validation_error", str(error), [ErrorDetail(field="period", reason=str(error))])

        def read() -> ReportReply:
            with self.readmodels.connect() as conn:
                return ReportReply.model_validate(figures.report(conn, period, self.zone))
        return orjson.dumps((await asyncio.to_thread(read)).model_dump(mode="json"))

    def _sla_breaches(self, query: SlaBreaches, now: datetime, after: Any) -> SlaBreachesReply:
        with self.readmodels.connect() as conn:
            rows = sla_reads.breaches(conn, now, since=query.since, until=query.until, tier=query.tier,
                                      kind=query.kind, metric=query.metric, limit=query.limit + 1, after=after)
        more, rows = len(rows) > query.limit, rows[:query.limit]
        return SlaBreachesReply(at=now, breaches=[_breach(row, now, self.policy) for row in rows],
                                next=f"{sla_reads.breach_instant(rows[-1]).isoformat()}|{rows[-1]['clock_id']}"
                                if more else None)

    async def history(self, raw: bytes, _sender: Identity) -> bytes:
        query = _parse(CaseHistory, raw, "case.history")
        if isinstance(query, bytes):
            return query
        at = query.at or self.clock()
        def read() -> CaseHistoryReply | None:
            found = case_history(self.store, query.case_id, at, self.policies)
            if found is not None and self.readmodels is not None:
                with self.readmodels.connect() as conn:
                    found.linked = [LinkedCase.model_validate(row) for row in linked(conn, str(query.case_id))]
            return found
        reply = await asyncio.to_thread(read)
        if reply is None:
            return error_reply("not_found", f"no case {query.case_id}")
        return orjson.dumps(reply.model_dump(mode="json"))

    async def sla_simulate(self, raw: bytes, _sender: Identity) -> bytes:
        query = _parse(SlaSimulate, raw, "sla.simulate")
        if isinstance(query, bytes):
            return query
        if self.tracks is None:
            return error_reply("unavailable", "no sla.simulate here")
        until = query.until or self.clock()
        if until <= query.since:
            return error_reply("validation_error", "until must be after since",
                               [ErrorDetail(field="until", reason="must be after since")])
        try:
            reply = await asyncio.to_thread(simulate, self.tracks, self.policies(), query.policy, query.since,
                                            until, query.changed_limit, query.kind)
        except PolicyError as error:
            return error_reply("validation_error", "the candidate policy has a mistake",
                               [ErrorDetail(field="policy", reason=str(error))])
        return reply.model_dump_json().encode()

    async def staff_assessment(self, raw: bytes, sender: Identity) -> bytes:
        query = _parse(StaffAssessment, raw, "staff.assessment")
        if isinstance(query, bytes):
            return query
        rules = self.assessment_rules
        if rules is None:
            return error_reply("unavailable", "no staff.assessment here")
        claimed = query.actor
        try:
            who, role, _ = acting(sender.name, sender.role, claimed and claimed.id, claimed and claimed.role)
            period = periods.parse(query.period, self.zone)
        except Forbidden as refused:
            return error_reply("forbidden", refused.message)
        except ValueError as error:
            return error_reply("validation_error", str(error), [ErrorDetail(field="period", reason=str(error))])
        person = query.person
        if role not in TEAM_READERS:
            if person not in (None, who):
                return error_reply("forbidden", f"a {role.value} sees only their own assessment")
            person = who

        def read() -> StaffAssessmentReply:
            with self.readmodels.connect() as conn:
                return assessment(conn, rules, period, self.zone, person)
        return (await asyncio.to_thread(read)).model_dump_json().encode()

    async def health(self, raw: bytes, _sender: Identity) -> bytes:
        return await _reported(Health, raw, "health", self.health_report)

    async def audit_verify(self, raw: bytes, _sender: Identity) -> bytes:
        return await _reported(AuditVerify, raw, "audit.verify", self.audit_report)

    async def audit_key(self, raw: bytes, _sender: Identity) -> bytes:
        async def key() -> AuditKeyReply:
            return AuditKeyReply(key=str(self.audit_public_key))
        return await _reported(AuditKey, raw, "audit.key", key if self.audit_public_key else None)

    async def customer(self, raw: bytes, sender: Identity) -> bytes:
        query = _parse(CustomerGet, raw, "customer.get")
        if isinstance(query, bytes):
            return query
        claimed = query.actor
        try:
            _, role, _ = acting(sender.name, sender.role, claimed and claimed.id, claimed and claimed.role)
        except Forbidden as refused:
            return error_reply("forbidden", refused.message)
        found = await asyncio.to_thread(_customer, self.store, query.customer_id)
        if found is None:
            return error_reply("not_found", f"no customer {query.customer_id}")
        view = state_json(found.view(role))
        return orjson.dumps(CustomerGetReply(customer=view).model_dump(mode="json"))


async def answer(service: QueryService, name: str, method: Answer, raw: bytes, request_info: str | None) -> bytes:
    """A query from an authenticated sender whose role may ask it, answered."""
    sender = identify(service.directory, request_info)
    if sender is None:
        return unknown_sender()
    if not may_ask(sender.role, name):
        return error_reply("forbidden", f"a {sender.role.value} may not ask {name}")
    if sender.role is Role.GATEWAY and (refused := _person_refused(sender, name, raw)):
        return refused
    reply = await method(service, raw, sender)
    if len(reply) > service.max_reply:  # NATS would drop it: the asker would wait in silence
        return error_reply("validation_error", f"the reply would be {len(reply):,} bytes, over the bus's limit "
                           f"of {service.max_reply:,}: ask for a smaller page (limit) or a shorter period",
                           [ErrorDetail(field="limit", reason="the reply is too large for the bus")])
    return reply


def _person_refused(sender: Identity, name: str, raw: bytes) -> bytes | None:
    """A gateway asks as the person it names: that person's role must be one
    that may ask (the gateway itself may ask what any of its people may)."""
    try:
        claimed = orjson.loads(raw).get("actor")
    except (orjson.JSONDecodeError, AttributeError):
        return None  # the query's own parse says what is wrong
    if not isinstance(claimed, dict):
        return None
    try:
        _, role, _ = acting(sender.name, sender.role, claimed.get("id"), claimed.get("role"))
    except Forbidden as refused:
        return error_reply("forbidden", refused.message)
    if not may_ask(role, name):
        return error_reply("forbidden", f"a {role.value} may not ask {name}")
    return None


def _cursor(customer: Any) -> str:
    return f"{customer.level}|{customer.entered_at.isoformat()}|{customer.customer_id}"


def _parse_cursor(text: str) -> tuple[int, datetime, str]:
    level, entered_at, customer_id = text.split("|")
    at = datetime.fromisoformat(entered_at)
    if level not in LEVELS or at.tzinfo is None:
        raise ValueError(text)
    return -LEVELS.index(level), at, str(UUID(customer_id))


def _limit_cursor(row: dict[str, Any]) -> str:
    deadline = utc(row["deadline"])
    return f"{deadline.isoformat() if deadline else ''}|{row['clock_id']}"


def _limit_cursor_parsed(text: str) -> tuple[datetime | None, str]:
    deadline, clock_id = text.split("|")
    at = datetime.fromisoformat(deadline) if deadline else None
    if (at is not None and at.tzinfo is None) or not clock_id or len(clock_id) > 120:
        raise ValueError(text)
    return at, clock_id


def _limit(row: dict[str, Any], now: datetime, policy: SlaPolicy) -> SlaLimit:
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


def _breach(row: dict[str, Any], now: datetime, policy: SlaPolicy) -> SlaBreach:
    if row["state"] in sla.RUNNING:
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


async def _reported(model: type[BaseModel], raw: bytes, name: str,
                    report: Callable[[], Awaitable[BaseModel]] | None) -> bytes:
    """A query about the product itself, answered by the report the wiring gave."""
    query = _parse(model, raw, name)
    if isinstance(query, bytes):
        return query
    if report is None:
        return error_reply("unavailable", f"no {name} here")
    return (await report()).model_dump_json().encode()


def _parse(model: type[Query], raw: bytes, name: str) -> Query | bytes:
    """The query, or the error reply to send instead."""
    try:
        return model.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return error_reply("validation_error", "payload is not JSON")
    except ValidationError as e:
        return error_reply("validation_error", f"invalid {name} query", problems_of(e))


def _customer(store: HistoryStore, customer_id: UUID) -> Customer | None:
    try:
        found = store.repository.get(customer_id)
    except AggregateNotFoundError:
        return None
    return found if isinstance(found, Customer) else None
