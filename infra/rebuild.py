"""Rebuilding read models from the event store, through the same envelope
mapping the relay publishes with."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from handlers.translate import envelope
from infra.store import EventStore
from projections.base import Envelope, Projection, create_tables, rebuild
from sqlalchemy import Engine

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
    create_tables(engine, projection)
    return rebuild(engine, projection, history(store), store.max_position, progress)
