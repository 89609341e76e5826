"""One pass over the store for the what-if replay: the cases registered in
a period, each with the happenings its limits count from (its own events,
its customer's tier changes), read straight from the stored rows. Only what
the replay needs is decoded: a creation, a customer's tier, and the events
of the cases in the period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from eventsourcing.persistence import Notification
from eventsourcing.utils import resolve_topic
from sqlalchemy import select

from handlers.translate import names
from infra.store.event_store import EventStore
from projections.sla_tables import DEFAULT_PRIORITY
from ticketing.sla.clock import CREATED
from ticketing.sla.simulate import CaseTrack
from ticketing.sla.timeline import Happening

PAGE = 5000


@cache
def _kind(topic: str) -> tuple[str, str, bool]:
    cls = resolve_topic(topic)
    aggregate, name = names(cls)
    return aggregate, name, bool(getattr(cls, "confidential", False))


def case_tracks(store: EventStore, since: datetime, until: datetime,
                progress: Callable[[int, int], None] | None = None) -> tuple[list[CaseTrack], int]:
    """The cases created in [since, until) with their happenings before
    `until`; and how many stored events were read."""
    tracks: dict[str, CaseTrack] = {}
    tiers: dict[str, list[tuple[datetime, str]]] = {}
    table = store.events_table
    decode = store.mapper.transcoder.decode
    total, read, after = store.max_position(), 0, 0

    def state_of(row: Any, confidential: bool) -> dict[str, Any]:
        if confidential:  # contact data sealed: the mapper opens it
            event = store.mapper.to_domain_event(Notification(
                id=row.id, originator_id=row.originator_id, originator_version=row.originator_version,
                topic=row.topic, state=bytes(row.state)))
            return vars(event)
        return decode(bytes(row.state))

    with store.engine.connect() as conn:
        while True:
            rows = conn.execute(select(table.c.id, table.c.originator_id, table.c.originator_version,
                                       table.c.topic, table.c.state)
                                .where(table.c.id > after).order_by(table.c.id).limit(PAGE)).all()
            if not rows:
                break
            for row in rows:
                aggregate, name, confidential = _kind(row.topic)
                key = str(row.originator_id)
                if aggregate == "customer":
                    if name in ("registered", "tier_changed"):
                        state = state_of(row, confidential)
                        tiers.setdefault(key, []).append((state["timestamp"], state["tier"]))
                elif name in CREATED and row.originator_version == 1:
                    state = state_of(row, confidential)
                    if since <= state["timestamp"] < until:
                        tracks[key] = CaseTrack(key, aggregate, str(state["customer_id"]),
                                                state.get("priority") or DEFAULT_PRIORITY, state["timestamp"],
                                                happenings=[Happening(state["timestamp"], name)])
                elif key in tracks and name != "sla_breached":
                    state = state_of(row, confidential)
                    if state["timestamp"] < until:
                        tracks[key].happenings.append(Happening(state["timestamp"], name, state.get("priority")))
            read += len(rows)
            after = rows[-1].id
            if progress:
                progress(read, total)
    for track in tracks.values():
        track.add_tiers(tiers.get(track.customer_id, []), until)
    return list(tracks.values()), read
