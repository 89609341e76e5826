"""What every projection shares: a tracking row per projection, updated in the
same transaction as the read model, so each event is applied exactly once
whether it arrives live, again after a redelivery, or from a rebuild.

Tracking uses the envelope's `position` (the store's total order), which the
stream carries in the same order as its own sequence; a rebuild from the
store and the live run therefore share one notion of "how far"."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from sqlalchemy import BigInteger, Column, Connection, Engine, Integer, MetaData, String, Table, select

Envelope = dict[str, Any]

tracking_metadata = MetaData()
tracking = Table(
    "projection_tracking",
    tracking_metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
)


class Projection(Protocol):
    name: str
    metadata: MetaData

    def apply(self, conn: Connection, event: Envelope) -> None: ...
    def reset(self, conn: Connection) -> None: ...


def create_tables(engine: Engine, projection: Projection) -> None:
    tracking_metadata.create_all(engine)
    projection.metadata.create_all(engine)


def _lock_position(conn: Connection, name: str) -> int:
    """Read this projection's position, holding its row (and, on SQLite, the
    database's write lock) until the transaction ends."""
    updated = conn.execute(tracking.update().where(tracking.c.name == name)
                           .values(position=tracking.c.position)).rowcount
    if not updated:
        conn.execute(tracking.insert().values(name=name, position=0))
    return int(conn.execute(select(tracking.c.position).where(tracking.c.name == name)).scalar_one())


def _set_position(conn: Connection, name: str, position: int) -> None:
    conn.execute(tracking.update().where(tracking.c.name == name).values(position=position))


def position_of(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        value = conn.execute(select(tracking.c.position).where(tracking.c.name == name)).scalar()
    return int(value or 0)


def apply_batch(engine: Engine, projection: Projection, events: Iterable[Envelope]) -> int:
    """Apply the events not applied yet, in one transaction; returns how many."""
    applied = 0
    with engine.begin() as conn:
        position = start = _lock_position(conn, projection.name)
        for event in events:
            if event["position"] <= position:
                continue
            projection.apply(conn, event)
            position = event["position"]
            applied += 1
        if position != start:
            _set_position(conn, projection.name, position)
    return applied


def skip(engine: Engine, projection: Projection, position: int) -> None:
    """Step over one event that cannot be applied (it is parked elsewhere)."""
    with engine.begin() as conn:
        if _lock_position(conn, projection.name) < position:
            _set_position(conn, projection.name, position)


def rebuild(engine: Engine, projection: Projection, history: Callable[[int], Iterator[list[Envelope]]],
            end_of_history: Callable[[], int], progress: Callable[[int, int], None] = lambda done, total: None,
            ) -> int:
    """Empty the read model and apply the whole history again, in one
    transaction: readers see the old rows until it commits. The live consumer
    waits on the tracking row meanwhile, and then skips what the rebuild
    covered. Returns the position reached."""
    with engine.begin() as conn:
        _lock_position(conn, projection.name)
        end = end_of_history()
        projection.reset(conn)
        position = 0
        for batch in history(end):
            for event in batch:
                projection.apply(conn, event)
                position = event["position"]
            progress(position, end)
        _set_position(conn, projection.name, position)
    return position
