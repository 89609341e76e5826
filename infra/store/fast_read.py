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
    type: str
    """`aggregate.name`, as the envelope says it."""
    version: int
    confidential: bool
    """Stored encrypted with the store's key."""
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
        fields = None
    return _Kind(aggregate, f"{aggregate}.{name}", getattr(cls, "class_version", 1),
                 getattr(cls, "confidential", False), fields)


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
    return _envelope(store, notification.id, str(notification.originator_id), notification.originator_version,
                     notification.topic, notification.state)


def _envelope(store: EventStore, position: int, aggregate_id: str, version: int, topic: str,
              state: bytes) -> Envelope:
    kind = _kind(topic)
    fields = kind.fields
    if fields is not None:
        stored = orjson.loads(store.mapper.state_json(state, kind.confidential))
        if stored.get("class_version", 1) == kind.version:
            data = {}
            for field, default in fields.items():
                if field in stored:
                    value = stored[field]
                    data[field] = _plain(value) if value.__class__ in _NESTED else value
                elif default is REQUIRED:
                    break  # a required field missing: let the domain path say why
                else:
                    data[field] = default
            else:
                return {
                    "id": _event_id(aggregate_id, version), "type": kind.type, "schema_version": kind.version,
                    "aggregate_type": kind.aggregate, "aggregate_id": aggregate_id,
                    "aggregate_version": version, "position": position,
                    "occurred_at": _plain(stored["timestamp"]), "actor": _plain(stored["actor"]),
                    "correlation_id": _plain(stored["correlation_id"]),
                    "causation_id": _plain(stored["causation_id"]),
                    "data": data, "hash": None, "previous_hash": None}
    notification = Notification(id=position, originator_id=UUID(aggregate_id), originator_version=version,
                                topic=topic, state=state)
    return envelope(store.mapper.to_domain_event(notification), position).model_dump(mode="json")


def pages(store: EventStore, end: int, after: int) -> Iterator[list[Envelope]]:
    """The events after `after` up to `end`, PAGE at a time, as the relay
    publishes them. On SQLite the rows come straight from the driver (the
    aggregate ids as their 16 stored bytes), without SQLAlchemy's row and
    UUID processing: a fifth of the reading."""
    position = after
    with store.engine.connect() as conn:
        while position < end:
            rows = store.stored(conn, position, end, PAGE)
            if not rows:
                return
            yield [_envelope(store, r[0], _uuid_of(r[1]), r[2], r[3], r[4]) for r in rows]
            position = rows[-1][0]


def _uuid_of(stored: Any) -> str:
    """An aggregate id as the database gives it back (SQLite: 16 bytes) in its text form."""
    if stored.__class__ is bytes and len(stored) == 16:
        text = stored.hex()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    return str(UUID(bytes=bytes(stored)) if isinstance(stored, bytes | memoryview) else UUID(str(stored)))
