"""What every projection shares: a tracking row per projection, updated in the
same transaction as the read model, so each event is applied exactly once
whether it arrives live, again after a redelivery, or from a rebuild.

Tracking keeps two marks, written together with the rows they describe:
- `position`, the envelope's place in the store's total order: what decides
  whether an event is applied or skipped, so a rebuild from the store and the
  live run share one notion of "how far";
- `stream_sequence`, the last stream message the live run consumed: where the
  live consumer resumes (a rebuild leaves it alone)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    case,
    inspect,
    select,
)

from projections.statements import on_driver, table_name

Envelope = dict[str, Any]

tracking_metadata = MetaData()
tracking = Table(
    "projection_tracking",
    tracking_metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    Column("stream_sequence", BigInteger().with_variant(Integer(), "sqlite"), nullable=False, default=0),
)
from projections.writing import written

READ_BY_APPLY = "ticketing.read_by_apply"
"""Key of an index's `info`: the projection's own `apply` finds rows
through it. The other indexes serve the queries and the monitors: a
rebuild on SQLite makes them once its rows are in (`projections.rebuilding.
indexes_made_after`), sorted once instead of updated row by row."""

UTC_ZONE = ZoneInfo("UTC")
"""The time zone day counters are kept in when none is given."""


class Projection(Protocol):
    name: str
    metadata: MetaData

    def apply(self, conn: Connection, events: list[Envelope]) -> None:
        """Apply events, in order, none of them applied before."""
    def reset(self, conn: Connection) -> None: ...


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone: every one stored here is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def empty(conn: Connection, metadata: MetaData) -> None:
    """Delete every row of a read model's tables (what `reset` does)."""
    for table in reversed(metadata.sorted_tables):
        conn.execute(table.delete())


def create_tables(engine: Engine, projection: Projection) -> None:
    """The projection's tables, any index a newer version added to a table
    that exists already (create_all adds indexes only with their table), and
    none that it dropped: every index is written at every row a batch
    touches, so one nothing reads costs the live apply and the rebuild."""
    tracking_metadata.create_all(engine)
    projection.metadata.create_all(engine)
    found, quote = inspect(engine), engine.dialect.identifier_preparer.quote
    for table in projection.metadata.sorted_tables:
        defined = {index.name for index in table.indexes}
        dropped = [index["name"] for index in found.get_indexes(table.name, schema=table.schema)
                   if (index["name"] or "").startswith("ix_") and index["name"] not in defined]
        if dropped:
            with engine.begin() as conn:
                for name in dropped:
                    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {quote(name)}")
        for index in table.indexes:
            index.create(engine, checkfirst=True)


def _lock(conn: Connection, name: str) -> tuple[int, int]:
    """Read this projection's marks, holding its row (and, on SQLite, the
    database's write lock) until the transaction ends."""
    return hold_marks(conn, [name])[name]


def hold_marks(conn: Connection, names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """`_lock` for several projections, in two statements (three the first time)."""
    if conn.dialect.name == "sqlite":
        return _hold_marks_on_driver(conn, list(names))
    updated = conn.execute(tracking.update().where(tracking.c.name.in_(names))
                           .values(position=tracking.c.position)).rowcount
    if updated < len(names):
        known = set(conn.scalars(select(tracking.c.name).where(tracking.c.name.in_(names))))
        conn.execute(tracking.insert(), [{"name": n, "position": 0, "stream_sequence": 0}
                                         for n in names if n not in known])
    return {row[0]: (int(row[1]), int(row[2])) for row in conn.execute(
        select(tracking.c.name, tracking.c.position, tracking.c.stream_sequence).where(tracking.c.name.in_(names)))}


def _hold_marks_on_driver(conn: Connection, names: list[str]) -> dict[str, tuple[int, int]]:
    """`hold_marks` on SQLite: the same statements straight through the
    driver. With SQLAlchemy's statement machinery the marks were a third of
    what a one-event batch cost (every live batch takes them twice)."""
    table, keys = table_name(conn, tracking), ", ".join("?" * len(names))
    updated = on_driver(conn, "execute", f"UPDATE {table} SET position = position WHERE name IN ({keys})",
                        names).rowcount
    if updated < len(names):
        on_driver(conn, "executemany", f"INSERT OR IGNORE INTO {table} (name, position, stream_sequence) "
                  "VALUES (?, 0, 0)", [(name,) for name in names])
    return {name: (int(position), int(sequence)) for name, position, sequence in on_driver(
        conn, "execute", f"SELECT name, position, stream_sequence FROM {table} WHERE name IN ({keys})", names)}


def _advance(conn: Connection, names: Sequence[str], position: int | None = None,
             stream_sequence: int | None = None) -> None:
    """Move these projections' marks forward to `position` and
    `stream_sequence`, never back (a redelivered message is older; a
    projection a rebuild took further stays further): one statement for all
    (on SQLite through the driver, as `hold_marks`)."""
    if conn.dialect.name == "sqlite":
        forward = [(column, mark) for column, mark in (("position", position), ("stream_sequence", stream_sequence))
                   if mark is not None]
        if forward:
            on_driver(conn, "execute", f"UPDATE {table_name(conn, tracking)} SET "
                      f"{', '.join(f'{column} = MAX({column}, ?)' for column, _ in forward)} "
                      f"WHERE name IN ({', '.join('?' * len(names))})", [*(mark for _, mark in forward), *names])
        return
    values: dict[str, Any] = {}
    if position is not None:
        values["position"] = case((tracking.c.position < position, position), else_=tracking.c.position)
    if stream_sequence is not None:
        values["stream_sequence"] = case((tracking.c.stream_sequence < stream_sequence, stream_sequence),
                                         else_=tracking.c.stream_sequence)
    if values:
        conn.execute(tracking.update().where(tracking.c.name.in_(names)).values(**values))


def marks_of(engine: Engine, name: str) -> tuple[int, int]:
    """(position, stream_sequence) of a projection; (0, 0) before its first event."""
    with engine.connect() as conn:
        row = conn.execute(select(tracking.c.position, tracking.c.stream_sequence)
                           .where(tracking.c.name == name)).first()
    return (int(row[0]), int(row[1])) if row else (0, 0)


class Fenced(Exception):
    """A write refused because its writer no longer holds what it ran under
    (the lease of its part: `infra.cluster.leases`); nothing was written."""


Fence = Callable[[Connection], None]
"""Checks, inside a write's transaction, that the writer may still write (raises Fenced)."""


def apply_batch(engine: Engine, projections: Sequence[Projection], events: Iterable[Envelope],
                stream_sequence: int | None = None, fence: Fence | None = None) -> dict[str, int]:
    """Apply to each projection the events it has not applied yet, all in
    one transaction, and record that the stream was consumed through
    `stream_sequence`; returns how many each applied. `fence` first, in the
    same transaction."""
    events = list(events)
    names = [p.name for p in projections]

    def change(conn: Connection) -> dict[str, int]:
        if fence is not None:
            fence(conn)
        applied = {}
        marks = hold_marks(conn, names)
        for projection in projections:
            position = marks[projection.name][0]
            fresh = []
            for event in events:  # in order, each position once (a redelivery may repeat one)
                if event["position"] > position:
                    fresh.append(event)
                    position = event["position"]
            if fresh:
                projection.apply(conn, fresh)
            applied[projection.name] = len(fresh)
        _advance(conn, names, max((e["position"] for e in events), default=None), stream_sequence)
        return applied
    return written(engine, change)


def skip(engine: Engine, projection: Projection, stream_sequence: int, fence: Fence | None = None) -> None:
    """Step over one stream message that cannot be applied (it is parked
    elsewhere). Only the stream mark moves: the position a broken message
    claims is not trusted, and a rebuild tries the event again."""
    def change(conn: Connection) -> None:
        if fence is not None:
            fence(conn)
        _lock(conn, projection.name)
        _advance(conn, [projection.name], stream_sequence=stream_sequence)
    written(engine, change)

def counted_elsewhere(conn: Connection, name: str, kept_zone: str | None, zone: ZoneInfo) -> bool:
    """Whether a projection's day counters need a rebuild: kept in another
    time zone, or missing although it has applied events (they were added
    by a newer version)."""
    if kept_zone is not None:
        return kept_zone != zone.key
    return bool(conn.execute(select(tracking.c.position).where(tracking.c.name == name)).scalar())
