"""Queries answered from the event store itself: a case's history, as it was
at any instant."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import orjson
from eventsourcing.persistence import Notification
from pydantic import ValidationError

from contracts.queries import CaseHistory, CaseHistoryReply
from handlers.commands import error_reply, problems_of
from handlers.translate import envelope, names, state_json


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
        try:
            query = CaseHistory.model_validate(orjson.loads(raw))
        except orjson.JSONDecodeError:
            return error_reply("validation_error", "payload is not JSON")
        except ValidationError as e:
            return error_reply("validation_error", "invalid case.history query", problems_of(e))
        at = query.at or self.clock()
        reply = await asyncio.to_thread(case_history, self.store, query.case_id, at)
        if reply is None:
            return error_reply("not_found", f"no case {query.case_id}")
        return orjson.dumps(reply.model_dump(mode="json"))
