"""Queries (`ticketing.v1.queries.<name>`) and their replies."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from contracts.envelope import Actor, EventEnvelope
from contracts.types import Time


class CaseHistory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_id: UUID
    at: Time | None = None


class CaseHistoryReply(BaseModel):
    ok: Literal[True] = True
    case_id: UUID
    aggregate_type: str
    at: Time
    version: int
    state: dict[str, Any]
    events: list[EventEnvelope]


class CustomerGet(BaseModel):
    """Contact data is in the reply only for the roles that may read it."""

    model_config = ConfigDict(extra="forbid")

    customer_id: UUID
    actor: Actor


class CustomerGetReply(BaseModel):
    ok: Literal[True] = True
    customer: dict[str, Any]


QUERIES: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "case.history": (CaseHistory, CaseHistoryReply),
    "customer.get": (CustomerGet, CustomerGetReply),
}
