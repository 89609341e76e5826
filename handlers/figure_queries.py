"""The queries of figures and people: the dashboard, the quality report, the
staff assessment, the dangerous-customer list and a customer."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError

from contracts.envelope import ErrorDetail
from contracts.figures import Dashboard, DashboardReply, Report, ReportReply
from contracts.queries import CustomerGet, CustomerGetReply, CustomersDangerous, CustomersDangerousReply
from contracts.staff import StaffAssessment, StaffAssessmentReply
from handlers.commands import error_reply
from handlers.history import HistoryStore
from handlers.identity import Identity
from handlers.query_base import QueryBase, parse_query
from handlers.staff import assessment
from handlers.translate import state_json
from projections import figures
from projections.danger_list import listed
from ticketing import periods
from ticketing.access import TEAM_READERS, acting
from ticketing.customer import Customer
from ticketing.danger import LEVELS
from ticketing.errors import Forbidden


class FigureQueries(QueryBase):
    """`dashboard`, `report`, `staff.assessment`, `customers.dangerous`, `customer.get`."""

    async def dashboard(self, raw: bytes, _sender: Identity) -> bytes:
        query = parse_query(Dashboard, raw, "dashboard")
        if isinstance(query, bytes):
            return query
        now = self.clock()

        def read() -> DashboardReply:
            with self.readmodels.connect() as conn:
                return DashboardReply.model_validate(figures.dashboard(conn, now, self.zone))
        return orjson.dumps((await asyncio.to_thread(read)).model_dump(mode="json"))

    async def customers_dangerous(self, raw: bytes, _sender: Identity) -> bytes:
        query = parse_query(CustomersDangerous, raw, "customers.dangerous")
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
        query = parse_query(Report, raw, "report")
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

    async def staff_assessment(self, raw: bytes, sender: Identity) -> bytes:
        query = parse_query(StaffAssessment, raw, "staff.assessment")
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

    async def customer(self, raw: bytes, sender: Identity) -> bytes:
        query = parse_query(CustomerGet, raw, "customer.get")
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


def _cursor(customer: Any) -> str:
    return f"{customer.level}|{customer.entered_at.isoformat()}|{customer.customer_id}"


def _parse_cursor(text: str) -> tuple[int, datetime, str]:
    level, entered_at, customer_id = text.split("|")
    at = datetime.fromisoformat(entered_at)
    if level not in LEVELS or at.tzinfo is None:
        raise ValueError(text)
    return -LEVELS.index(level), at, str(UUID(customer_id))


def _customer(store: HistoryStore, customer_id: UUID) -> Customer | None:
    try:
        found = store.repository.get(customer_id)
    except AggregateNotFoundError:
        return None
    return found if isinstance(found, Customer) else None
