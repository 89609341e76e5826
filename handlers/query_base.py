"""What every query shares: the service's parts, and parsing a query into its
contract (or the error reply to send instead)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from contracts.health import AuditVerifyReply, HealthReply
from handlers.commands import error_reply, problems_of
from handlers.history import HistoryStore
from handlers.identity import Directory
from handlers.sla_views import Tracks
from ticketing.assessment import AssessmentRules
from ticketing.danger import Rules
from ticketing.sla.policy import SlaPolicy
from ticketing.sla.timeline import Adopted, PolicyTimeline


class QueryBase:
    """The parts the queries read: the store, the read models, the policies, the clock."""

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


Query = TypeVar("Query", bound=BaseModel)


MAX_REPLY = 1024 * 1024 - 4096
"""NATS's default max_payload, less room for the headers; the wiring sets the server's own."""


async def reported(model: type[BaseModel], raw: bytes, name: str,
                    report: Callable[[], Awaitable[BaseModel]] | None) -> bytes:
    """A query about the product itself, answered by the report the wiring gave."""
    query = parse_query(model, raw, name)
    if isinstance(query, bytes):
        return query
    if report is None:
        return error_reply("unavailable", f"no {name} here")
    return (await report()).model_dump_json().encode()


def parse_query(model: type[Query], raw: bytes, name: str) -> Query | bytes:
    """The query, or the error reply to send instead."""
    try:
        return model.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return error_reply("validation_error", "payload is not JSON")
    except ValidationError as e:
        return error_reply("validation_error", f"invalid {name} query", problems_of(e))
