"""The query service: every query the product answers, each in the module of
what it decides (`sla_queries`, `figure_queries`; a case's history here), and
`answer`, which checks who asks before any of them runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson

from contracts.envelope import ErrorDetail
from contracts.health import AuditKey, AuditKeyReply, AuditVerify, Health
from contracts.queries import CaseHistory, CaseHistoryReply, LinkedCase
from handlers.commands import error_reply, unknown_sender
from handlers.figure_queries import FigureQueries
from handlers.history import case_history
from handlers.identity import Identity, identify
from handlers.query_base import parse_query, reported
from handlers.sla_queries import SlaQueries
from projections.links import linked
from ticketing.access import acting, may_ask
from ticketing.errors import Forbidden

Answer = Callable[["QueryService", bytes, Identity], Awaitable[bytes]]


class QueryService(SlaQueries, FigureQueries):
    """Every query the product answers (`handlers.bus` binds each to its subject)."""

    async def history(self, raw: bytes, _sender: Identity) -> bytes:
        query = parse_query(CaseHistory, raw, "case.history")
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

    async def health(self, raw: bytes, _sender: Identity) -> bytes:
        return await reported(Health, raw, "health", self.health_report)

    async def audit_verify(self, raw: bytes, _sender: Identity) -> bytes:
        return await reported(AuditVerify, raw, "audit.verify", self.audit_report)

    async def audit_key(self, raw: bytes, _sender: Identity) -> bytes:
        async def key() -> AuditKeyReply:
            return AuditKeyReply(key=str(self.audit_public_key))
        return await reported(AuditKey, raw, "audit.key", key if self.audit_public_key else None)


async def answer(service: QueryService, name: str, method: Answer, raw: bytes, request_info: str | None) -> bytes:
    """A query from an authenticated sender whose role may ask it, answered."""
    sender = identify(service.directory, request_info)
    if sender is None:
        return unknown_sender()
    if not may_ask(sender.role, name):
        return error_reply("forbidden", f"a {sender.role.value} may not ask {name}")
    if b'"actor"' in raw and (refused := _claim_refused(sender, name, raw)):
        return refused
    reply = await method(service, raw, sender)
    if len(reply) > service.max_reply:  # NATS would drop it: the asker would wait in silence
        return error_reply("validation_error", f"the reply would be {len(reply):,} bytes, over the bus's limit "
                           f"of {service.max_reply:,}: ask for a smaller page (limit) or a shorter period",
                           [ErrorDetail(field="limit", reason="the reply is too large for the bus")])
    return reply


def _claim_refused(sender: Identity, name: str, raw: bytes) -> bytes | None:
    """A body naming an actor: anyone but the sender is refused, but for a
    gateway naming the person it signed in, whose role must then be one that
    may ask (the gateway itself may ask what any of its people may)."""
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


