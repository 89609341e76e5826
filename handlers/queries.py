"""Queries answered from the event store itself: a case's history, as it was
at any instant."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Notification
from pydantic import BaseModel, ValidationError

from contracts.queries import CaseHistory, CaseHistoryReply, CustomerGet, CustomerGetReply
from handlers.commands import error_reply, problems_of
from handlers.translate import envelope, names, state_json
from ticketing.customer import Customer
from ticketing.values import Role

Query = TypeVar("Query", bound=BaseModel)


class HistoryStore(Protocol):
    repository: Any
    mapper: Any

    def case_notifications(self, case_id: UUID) -> list[Notification]: ...


def case_history(store: HistoryStore, case_id: UUID, at: datetime) -> CaseHistoryReply | None:
    """The events of a case up to `at` and its state rebuilt from exactly those."""
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
    return CaseHistoryReply(
        case_id=case_id, aggregate_type=aggregate_type, at=at, version=version, state=state,
        events=[envelope(e, position) for position, e in upto],
    )


class QueryService:
    def __init__(self, store: HistoryStore, clock: Any) -> None:
        self.store = store
        self.clock = clock

    async def history(self, raw: bytes) -> bytes:
        query = _parse(CaseHistory, raw, "case.history")
        if isinstance(query, bytes):
            return query
        at = query.at or self.clock()
        reply = await asyncio.to_thread(case_history, self.store, query.case_id, at)
        if reply is None:
            return error_reply("not_found", f"no case {query.case_id}")
        return orjson.dumps(reply.model_dump(mode="json"))

    async def customer(self, raw: bytes) -> bytes:
        query = _parse(CustomerGet, raw, "customer.get")
        if isinstance(query, bytes):
            return query
        found = await asyncio.to_thread(_customer, self.store, query.customer_id)
        if found is None:
            return error_reply("not_found", f"no customer {query.customer_id}")
        view = state_json(found.view(Role(query.actor.role)))
        return orjson.dumps(CustomerGetReply(customer=view).model_dump(mode="json"))


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
