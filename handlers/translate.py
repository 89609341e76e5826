"""The one mapping from domain events to the public v1 envelope. The domain
can evolve behind it while the published schema stays put."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from contracts.catalog import EVENTS
from contracts.envelope import EventEnvelope
from contracts.types import rfc3339
from ticketing.case import Case

EVENT_ID_NAMESPACE = UUID("6f1d7c1e-3f7a-4c55-9a57-0b2f3d1f9e41")
CASE_ID_NAMESPACE = UUID("a3c5e0d2-8b1f-4f0e-9d53-5c7a2e6b4f10")
_ENVELOPE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic",
                    "actor", "correlation_id", "causation_id"}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def event_id(aggregate_id: UUID, version: int) -> UUID:
    """Deterministic, so a re-published event keeps its id (and its Nats-Msg-Id)."""
    return uuid5(EVENT_ID_NAMESPACE, f"{aggregate_id}/{version}")


def case_id_for(command_id: UUID) -> UUID:
    """The id of a case registered by a command: a repeated register command
    cannot create a second case even if its idempotency record were lost."""
    return uuid5(CASE_ID_NAMESPACE, str(command_id))


def names(event_class: type[Case.Event]) -> tuple[str, str]:
    """(aggregate type, event name) of a domain event class, e.g. ("complaint", "registered")."""
    aggregate, _, event_name = event_class.__qualname__.partition(".")
    return snake(aggregate), snake(event_name)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def envelope(event: Case.Event, position: int, chain: tuple[str, str] | None = None) -> EventEnvelope:
    aggregate, name = names(type(event))
    raw = {k: _plain(v) for k, v in vars(event).items() if k not in _ENVELOPE_FIELDS}
    data = EVENTS[aggregate][name].model_validate(raw).model_dump(mode="json")
    return EventEnvelope(
        id=event_id(event.originator_id, event.originator_version),
        type=f"{aggregate}.{name}",
        schema_version=getattr(type(event), "class_version", 1),
        aggregate_type=aggregate,
        aggregate_id=event.originator_id,
        aggregate_version=event.originator_version,
        position=position,
        occurred_at=event.timestamp,
        actor=event.actor,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        data=data,
        hash=chain[0] if chain else None,
        previous_hash=chain[1] if chain else None,
    )


def state_json(state: dict[str, Any]) -> dict[str, Any]:
    """A case's state with domain values (Decimal, datetime) as JSON values."""
    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, datetime):
            return rfc3339(value)
        if isinstance(value, UUID):
            return str(value)
        return value
    return {k: convert(v) for k, v in state.items() if k != "lifecycle"}
