"""Rebuilding read models from the event store, through the same envelope
mapping the relay publishes with."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

from sqlalchemy import Engine, inspect

from handlers.translate import envelope
from infra.store.event_store import EventStore
from projections.base import Envelope, Projection, create_tables, rebuild

log = logging.getLogger(__name__)

BATCH = 1000


def history(store: EventStore) -> Callable[[int], Iterator[list[Envelope]]]:
    def batches(end: int) -> Iterator[list[Envelope]]:
        position = 0
        while position < end:
            notifications = [n for n in store.notifications(position, BATCH) if n.id <= end]
            if not notifications:
                return
            yield [envelope(store.mapper.to_domain_event(n), n.id).model_dump(mode="json")
                   for n in notifications]
            position = notifications[-1].id
    return batches


def rebuild_projection(store: EventStore, engine: Engine, projection: Projection,
                       progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    return rebuild_projections(store, engine, [projection], progress)


def rebuild_projections(store: EventStore, engine: Engine, projections: Sequence[Projection],
                        progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Rebuild these projections together: the store read and decoded once for all."""
    for projection in projections:
        create_tables(engine, projection)
    return rebuild(engine, projections, history(store), store.max_position, progress)


def ensure_current(store: EventStore, engine: Engine, projection: Projection) -> None:
    """Rebuild a projection from the store when its tables on disk are not the
    ones the code defines (a new version added columns): read models are
    derived data, so they are replaced, never migrated."""
    existing = inspect(engine)
    stale = [table for table in projection.metadata.sorted_tables if existing.has_table(table.name)
             and {c["name"] for c in existing.get_columns(table.name)} != set(table.columns.keys())]
    if not stale:
        return
    log.warning("%s: tables %s changed; rebuilding from the event store", projection.name,
                ", ".join(t.name for t in stale))
    projection.metadata.drop_all(engine, tables=stale)
    rebuild_projection(store, engine, projection)
