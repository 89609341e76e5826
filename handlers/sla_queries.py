"""The service-limit queries: the limits running and breached (from the SLA read
model) and the what-if replay of a candidate policy."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson

from contracts.envelope import ErrorDetail
from contracts.sla_queries import SlaBreaches, SlaBreachesReply, SlaOpen, SlaOpenReply, SlaSimulate
from handlers.commands import error_reply
from handlers.identity import Identity
from handlers.query_base import QueryBase, parse_query
from handlers.sla_views import limit_cursor, parse_limit_cursor, shown_breach, shown_limit, simulate
from projections import sla_reads
from ticketing.sla.policy import PolicyError


class SlaQueries(QueryBase):
    """`sla.open`, `sla.breaches`, `sla.simulate`."""

    async def sla_open(self, raw: bytes, _sender: Identity) -> bytes:
        query = parse_query(SlaOpen, raw, "sla.open")
        if isinstance(query, bytes):
            return query
        now = self.clock()
        try:
            after = parse_limit_cursor(query.after) if query.after else None
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
        return SlaOpenReply(at=now, limits=[shown_limit(row, now, self.policy) for row in rows],
                            next=limit_cursor(rows[-1]) if more else None)

    async def sla_breaches(self, raw: bytes, _sender: Identity) -> bytes:
        query = parse_query(SlaBreaches, raw, "sla.breaches")
        if isinstance(query, bytes):
            return query
        now = self.clock()
        try:
            after = parse_limit_cursor(query.after) if query.after else None
        except ValueError:
            after = None
        if query.after and (after is None or after[0] is None):
            return error_reply("validation_error", "after is not a cursor this list gave",
                               [ErrorDetail(field="after", reason="pass the `next` of the page before")])
        reply = await asyncio.to_thread(self._sla_breaches, query, now, after)
        return orjson.dumps(reply.model_dump(mode="json"))

    def _sla_breaches(self, query: SlaBreaches, now: datetime, after: Any) -> SlaBreachesReply:
        with self.readmodels.connect() as conn:
            rows = sla_reads.breaches(conn, now, since=query.since, until=query.until, tier=query.tier,
                                      kind=query.kind, metric=query.metric, limit=query.limit + 1, after=after)
        more, rows = len(rows) > query.limit, rows[:query.limit]
        return SlaBreachesReply(at=now, breaches=[shown_breach(row, now, self.policy) for row in rows],
                                next=f"{sla_reads.breach_instant(rows[-1]).isoformat()}|{rows[-1]['clock_id']}"
                                if more else None)

    async def sla_simulate(self, raw: bytes, _sender: Identity) -> bytes:
        query = parse_query(SlaSimulate, raw, "sla.simulate")
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
