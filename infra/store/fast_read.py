"""Reading the store fast for a rebuild: each stored event straight from its
JSON to the envelope the relay publishes (`fast_envelope`), a page at a
time. Held to the relay's own output by a property test."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Notification
from eventsourcing.utils import resolve_topic
from sqlalchemy import select

from contracts.catalog import EVENTS
from contracts.types import rfc3339
from handlers.translate import EVENT_ID_NAMESPACE, envelope, names
from infra.store.event_store import EventStore
from projections.base import Envelope

PAGE = 5000
REQUIRED = object()


@dataclass(frozen=True)
class _Kind:
    """What the fast path needs to know of one stored topic."""

    aggregate: str
    name: str
    version: int
    fields: dict[str, Any] | None
    """The published data's fields with their defaults (or REQUIRED); None
    when events of this topic take the domain path (a published field sealed)."""


@cache
def _kind(topic: str) -> _Kind:
    cls = resolve_topic(topic)
    aggregate, name = names(cls)
    model = EVENTS[aggregate][name]
    fields = {field: (REQUIRED if info.is_required() else info.get_default(call_default_factory=True))
              for field, info in model.model_fields.items()}
    if set(fields) & set(getattr(cls, "sealed", ())):  # contact data is never published; if it were, open it
        return _Kind(aggregate, name, getattr(cls, "class_version", 1), None)
    return _Kind(aggregate, name, getattr(cls, "class_version", 1), fields)


def _plain(value: Any) -> Any:
    """A stored value (eventsourcing's JSON transcoding) as the published JSON has it."""
    if value.__class__ is dict:
        kind = value.get("_type_")
        if kind is not None and "_data_" in value and len(value) == 2:
            data = value["_data_"]
            if kind == "uuid_hex":
                return _uuid_text(data)
            if kind == "datetime_iso":
                if data.endswith("+00:00"):  # as the domain stores its UTC times: no parsing
                    if len(data) == 25:
                        return f"{data[:19]}.000000Z"
                    if len(data) == 32:
                        return f"{data[:26]}Z"
                return rfc3339(datetime.fromisoformat(data))
            if kind in ("decimal_str", "date_iso"):
                return data
            raise ValueError(kind)
        return {k: _plain(v) if v.__class__ in _NESTED else v for k, v in value.items()}
    if value.__class__ is list:
        return [_plain(v) if v.__class__ in _NESTED else v for v in value]
    return value


def _uuid_text(hex32: str) -> str:
    """str(UUID(hex32)): as the store's transcoder writes them (32 lower-case
    hex digits) formatted directly; anything else through UUID, which checks."""
    text = hex32 if len(hex32) == 32 and hex32 == hex32.lower() else UUID(hex32).hex
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_NESTED = (dict, list)
_EVENT_ID_PREFIX = EVENT_ID_NAMESPACE.bytes


def _event_id(aggregate_id: str, version: int) -> str:
    """`str(handlers.translate.event_id(...))` (a UUID 5) without the UUID objects."""
    digest = bytearray(hashlib.sha1(_EVENT_ID_PREFIX + f"{aggregate_id}/{version}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def fast_envelope(store: EventStore, notification: Notification) -> Envelope:
    """The event as the relay publishes it (`handlers.translate.envelope`,
    without the chain's hashes), read straight from its stored JSON: no
    domain object, no validation, no customer key (the sealed contact fields
    are not published). Events stored at an older version (upcast on the
    way) take the domain path; a test holds both paths to the same output."""
    kind = _kind(notification.topic)
    if kind.fields is not None:
        state = orjson.loads(store.mapper.stored_json(notification))
        if state.pop("class_version", 1) == kind.version:
            data = {}
            for field, default in kind.fields.items():
                if field in state:
                    value = state[field]
                    data[field] = _plain(value) if value.__class__ in _NESTED else value
                elif default is REQUIRED:
                    break  # a required field missing: let the domain path say why
                else:
                    data[field] = default
            else:
                aggregate_id = str(notification.originator_id)
                return {
                    "id": _event_id(aggregate_id, notification.originator_version),
                    "type": f"{kind.aggregate}.{kind.name}", "schema_version": kind.version,
                    "aggregate_type": kind.aggregate, "aggregate_id": aggregate_id,
                    "aggregate_version": notification.originator_version, "position": notification.id,
                    "occurred_at": _plain(state["timestamp"]),
                    "actor": _plain(state["actor"]),
                    "correlation_id": _plain(state["correlation_id"]), "causation_id": _plain(state["causation_id"]),
                    "data": data, "hash": None, "previous_hash": None}
    return envelope(store.mapper.to_domain_event(notification), notification.id).model_dump(mode="json")


def pages(store: EventStore, end: int, after: int) -> Iterator[list[Envelope]]:
    """The events after `after` up to `end`, PAGE at a time, as the relay publishes them."""
    position = after
    table = store.events_table
    with store.engine.connect() as conn:
        while position < end:
            rows = conn.execute(select(table.c.id, table.c.originator_id, table.c.originator_version,
                                       table.c.topic, table.c.state)
                                .where(table.c.id > position, table.c.id <= end).order_by(table.c.id)
                                .limit(PAGE)).all()
            if not rows:
                return
            yield [fast_envelope(store, Notification(id=r.id, originator_id=r.originator_id,
                                                     originator_version=r.originator_version,
                                                     topic=r.topic, state=bytes(r.state))) for r in rows]
            position = rows[-1].id
