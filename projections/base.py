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

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    select,
)
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable

Envelope = dict[str, Any]

tracking_metadata = MetaData()
tracking = Table(
    "projection_tracking",
    tracking_metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    Column("stream_sequence", BigInteger().with_variant(Integer(), "sqlite"), nullable=False, default=0),
)


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
    """The projection's tables, and any index a newer version added to a
    table that exists already (create_all adds indexes only with their table)."""
    tracking_metadata.create_all(engine)
    projection.metadata.create_all(engine)
    for table in projection.metadata.sorted_tables:
        for index in table.indexes:
            index.create(engine, checkfirst=True)


def _lock(conn: Connection, name: str) -> tuple[int, int]:
    """Read this projection's marks, holding its row (and, on SQLite, the
    database's write lock) until the transaction ends."""
    return _lock_all(conn, [name])[name]


def _lock_all(conn: Connection, names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """`_lock` for several projections, in two statements (three the first time)."""
    updated = conn.execute(tracking.update().where(tracking.c.name.in_(names))
                           .values(position=tracking.c.position)).rowcount
    if updated < len(names):
        known = set(conn.scalars(select(tracking.c.name).where(tracking.c.name.in_(names))))
        conn.execute(tracking.insert(), [{"name": n, "position": 0, "stream_sequence": 0}
                                         for n in names if n not in known])
    return {row[0]: (int(row[1]), int(row[2])) for row in conn.execute(
        select(tracking.c.name, tracking.c.position, tracking.c.stream_sequence).where(tracking.c.name.in_(names)))}


def _advance(conn: Connection, name: str, current: tuple[int, int], position: int | None = None,
             stream_sequence: int | None = None) -> None:
    """Move the marks forward, never back (a redelivered message is older)."""
    values = {}
    if position is not None and position > current[0]:
        values["position"] = position
    if stream_sequence is not None and stream_sequence > current[1]:
        values["stream_sequence"] = stream_sequence
    if values:
        conn.execute(tracking.update().where(tracking.c.name == name).values(**values))


def marks_of(engine: Engine, name: str) -> tuple[int, int]:
    """(position, stream_sequence) of a projection; (0, 0) before its first event."""
    with engine.connect() as conn:
        row = conn.execute(select(tracking.c.position, tracking.c.stream_sequence)
                           .where(tracking.c.name == name)).first()
    return (int(row[0]), int(row[1])) if row else (0, 0)


_WRITERS: dict[int, threading.Lock] = {}


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction on the read models. On SQLite, this process's
    writers (the projections, the monitors) take turns on a lock of ours
    first: SQLite would make them wait in its busy handler, which sleeps in
    steps of up to 100 ms, or refuse one of two deferred transactions that
    both want to write (a batch failed, applied one by one)."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    lock = _WRITERS.setdefault(id(engine), threading.Lock())
    with lock, engine.begin() as conn:
        yield conn


def apply_batch(engine: Engine, projections: Sequence[Projection], events: Iterable[Envelope],
                stream_sequence: int | None = None) -> dict[str, int]:
    """Apply to each projection the events it has not applied yet, all in
    one transaction, and record that the stream was consumed through
    `stream_sequence`; returns how many each applied."""
    events = list(events)
    applied = {}
    with writing(engine) as conn:
        marks = _lock_all(conn, [p.name for p in projections])
        for projection in projections:
            position = marks[projection.name][0]
            fresh = []
            for event in events:
                if event["position"] > position:
                    fresh.append(event)
                    position = event["position"]
            if fresh:
                projection.apply(conn, fresh)
            _advance(conn, projection.name, marks[projection.name], position, stream_sequence)
            applied[projection.name] = len(fresh)
    return applied


def skip(engine: Engine, projection: Projection, stream_sequence: int) -> None:
    """Step over one stream message that cannot be applied (it is parked
    elsewhere). Only the stream mark moves: the position a broken message
    claims is not trusted, and a rebuild tries the event again."""
    with writing(engine) as conn:
        _advance(conn, projection.name, _lock(conn, projection.name), stream_sequence=stream_sequence)


def rebuild(engine: Engine, projections: Sequence[Projection], history: Callable[[int], Iterator[list[Envelope]]],
            end_of_history: Callable[[], int], progress: Callable[[int, int], None] = lambda done, total: None,
            ) -> int:
    """Empty the read models and apply the whole history again, each page of
    events decoded once for all of them, in one transaction: readers see the
    old rows until it commits. The live consumers wait on their tracking rows
    meanwhile, and then skip what the rebuild covered. Returns the position
    reached."""
    with engine.begin() as conn:
        _lock_all(conn, [p.name for p in projections])
        end = end_of_history()
        for projection in projections:
            projection.reset(conn)
        position = 0
        for batch in history(end):
            if batch:
                for projection in projections:
                    projection.apply(conn, batch)
                position = batch[-1]["position"]
            progress(position, end)
        for projection in projections:
            conn.execute(tracking.update().where(tracking.c.name == projection.name).values(position=position))
    return position


class Rows:
    """The rows of one table that a batch touches, read at once and written
    at once."""

    def __init__(self, conn: Connection, table: Table, key: Any, keys: set[str], *, by: Any = None,
                 where: Any = None) -> None:
        """The rows whose `key` is in `keys`; or, given `by`, whose `by`
        column is (and that match `where`)."""
        self.conn, self.table, self.key = conn, table, key
        self.rows: dict[str, dict[str, Any]] = {}
        ordered = list(keys)
        column = key if by is None else by
        for start in range(0, len(ordered), 500):
            query = select(table).where(column.in_(ordered[start:start + 500]))
            if where is not None:
                query = query.where(where)
            self.rows.update((row[key.name], dict(row)) for row in conn.execute(query).mappings())
        self.existing = set(self.rows)
        self.changed: set[str] = set()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def put(self, key: str, row: dict[str, Any]) -> None:
        self.rows[key] = row
        self.changed.add(key)

    def write(self) -> None:
        inserts = [self.rows[k] for k in self.changed if k not in self.existing]
        updates = [self.rows[k] | {"_key": k} for k in self.changed if k in self.existing]
        if inserts:
            insert_many(self.conn, self.table, inserts)
        if updates:
            columns = [c.name for c in self.table.columns if c.name != self.key.name]
            if self.conn.dialect.name == "sqlite":
                _many(self.conn, self.table, f"UPDATE {{table}} SET {', '.join(f'{_q(c)} = ?' for c in columns)} "
                      f"WHERE {_q(self.key.name)} = ?", [*columns, self.key.name],
                      [row | {self.key.name: row["_key"]} for row in updates])
                return
            statement = (self.table.update().where(self.key == bindparam("_key"))
                         .values({name: bindparam(name) for name in columns}))
            self.conn.execute(statement, updates)


def insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT the rows (all with the same keys). On SQLite straight through
    the driver's executemany, each value through its column type's own bind
    processor (stored exactly as SQLAlchemy would store it), without
    SQLAlchemy's per-row statement machinery: most of a rebuild's cost."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), rows)
        return
    names = list(rows[0])
    _many(conn, table, f"INSERT INTO {{table}} ({', '.join(_q(n) for n in names)}) "
          f"VALUES ({', '.join('?' * len(names))})", names, rows)


def _q(name: str) -> str:
    return f'"{name}"'


def _many(conn: Connection, table: Table, sql: str, names: list[str], rows: list[dict[str, Any]]) -> None:
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(table.schema, table.schema)
    processors = _processors(table, conn.dialect)
    steps = [(name, processors[name]) for name in names]
    conn.exec_driver_sql(sql.format(table=f"{_q(schema)}.{_q(table.name)}" if schema else _q(table.name)),
                         [tuple(p(row[n]) if p is not None else row[n] for n, p in steps) for row in rows])


_PROCESSORS: dict[tuple[int, str], dict[str, Any]] = {}


def _processors(table: Table, dialect: Any) -> dict[str, Any]:
    key = (id(table), dialect.name)
    found = _PROCESSORS.get(key)
    if found is None:
        found = _PROCESSORS[key] = {c.name: c.type.dialect_impl(dialect).bind_processor(dialect)
                                    for c in table.columns}
    return found


def person_months(name: str, metadata: MetaData) -> Table:
    """A table of counts per month (in the department's time zone), person
    and figure: what the staff assessment sums (a quarter is three months'
    rows of the team, whatever the store's size)."""
    return Table(
        name,
        metadata,
        Column("key", String(300), primary_key=True),  # "month|figure|person"
        Column("month", String(7), nullable=False),  # 2026-11
        Column("person", String(200), nullable=False),
        Column("figure", String(40), nullable=False),
        Column("n", Integer, nullable=False),
        Index(f"ix_{name}_month", "month"),
    )


def add_up(conn: Connection, table: Table, counts: dict[tuple[str, str, str], int]) -> None:
    """Add (month, figure, person) -> n to a `person_months` table."""
    if not counts:
        return
    rows = {f"{month}|{figure}|{person}": (month, figure, person, n) for (month, figure, person), n in counts.items()}
    kept = Rows(conn, table, table.c.key, set(rows))
    for key, (month, figure, person, n) in rows.items():
        before = kept.get(key)
        kept.put(key, {"key": key, "month": month, "person": person, "figure": figure,
                       "n": n + (before["n"] if before else 0)})
    kept.write()


def counted_elsewhere(conn: Connection, name: str, kept_zone: str | None, zone: ZoneInfo) -> bool:
    """Whether a projection's day counters need a rebuild: kept in another
    time zone, or missing although it has applied events (they were added
    by a newer version)."""
    if kept_zone is not None:
        return kept_zone != zone.key
    return bool(conn.execute(select(tracking.c.position).where(tracking.c.name == name)).scalar())


def adopt(engine: Engine, scratch: str, projections: Sequence[Projection], position: int) -> None:
    """Put the rows of these projections that a rebuild built in another
    SQLite file (`scratch`, same tables) in place of theirs here, and move
    their tracking to `position`: one transaction."""
    with engine.connect() as conn:
        conn.exec_driver_sql(f"ATTACH DATABASE ? AS {APART_SCHEMA}", (scratch,))
        conn.commit()
        try:
            with conn.begin():
                for projection in projections:
                    _lock(conn, projection.name)
                    projection.reset(conn)
                    for table in projection.metadata.sorted_tables:
                        conn.exec_driver_sql(f'INSERT INTO main."{table.name}" SELECT * FROM '
                                             f'{APART_SCHEMA}."{table.name}"')
                    conn.execute(tracking.update().where(tracking.c.name == projection.name)
                                 .values(position=position))
        finally:
            conn.exec_driver_sql(f"DETACH DATABASE {APART_SCHEMA}")
            conn.commit()


APART_SCHEMA = "ticketing_apart"
"""Where `adopt` attaches the file another process rebuilt into."""

REBUILD_SCHEMA = "ticketing_rebuild"
"""Where a rebuild beside the live models builds: a database attached
under this name (SQLite, a file beside the read models) or a schema
(PostgreSQL)."""

History = Callable[[int, int], Iterator[list[Envelope]]]
"""Pages of the events after position `a` up to `b`."""


CAUGHT_UP = 2000
"""How close to the store's head a rebuild beside live gets before it swaps
(the rest is applied inside the swap, with the live consumers waiting)."""
CATCH_UP_ROUNDS = 10
"""Rounds of catching up before the swap takes the rest (a store growing
faster than the rebuild goes would never be caught)."""


def rebuild_beside(engine: Engine, projections: Sequence[Projection], history: History,
                   end_of_history: Callable[[], int], scratch: str | None = None,
                   progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Rebuild while the live models keep serving (blue/green): build into
    fresh tables apart from them, one transaction per page, with nobody
    waiting, and catch up with the store the same way; then, in one short
    transaction that holds the live models' tracking rows, apply the few
    events stored since, put the rebuilt tables in place of the live ones and
    move the tracking to where the rebuild got. Readers see the old model
    until that commit and the new one after it, never a half-built one; the
    live consumers and the monitors go on meanwhile and wait only for the
    swap. On PostgreSQL the rebuilt tables are built in a schema of their own
    and the swap moves tables between schemas (catalog changes: as quick at a
    million events as at ten); on SQLite they are built in `scratch`, a file
    attached beside the read models, and the swap copies their rows over.
    Returns the position reached."""
    built = {table.name: table.to_metadata(MetaData(), schema=REBUILD_SCHEMA)
             for projection in projections for table in projection.metadata.sorted_tables}
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as live, engine.connect() as apart:
        for conn in (live, apart):
            if sqlite:
                conn.exec_driver_sql(f"ATTACH DATABASE ? AS {REBUILD_SCHEMA}", (scratch,))
                conn.exec_driver_sql(f"PRAGMA {REBUILD_SCHEMA}.synchronous=OFF")  # scratch: a crash builds again
            conn.commit()
        if not sqlite:
            with live.begin():
                for schema in (REBUILD_SCHEMA, RETIRED_SCHEMA):
                    live.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                live.exec_driver_sql(f"CREATE SCHEMA {REBUILD_SCHEMA}")
        apart.execution_options(schema_translate_map={None: REBUILD_SCHEMA})  # (in place) every table there
        try:
            with apart.begin():
                for projection in projections:
                    projection.metadata.drop_all(apart)
                    projection.metadata.create_all(apart)
            position, head = 0, end_of_history()
            for _ in range(CATCH_UP_ROUNDS):  # built, then caught up, a page per transaction
                for batch in history(position, head):
                    with apart.begin():
                        for projection in projections:
                            projection.apply(apart, batch)
                    position = batch[-1]["position"]
                    progress(position, head)
                head = end_of_history()
                if head - position <= CAUGHT_UP:
                    break
            with live.begin():  # the swap: the live consumers wait from here to the commit
                _lock_all(live, [p.name for p in projections])
                head = end_of_history()
                with apart.begin():  # what was stored since (only the rebuilt tables: no deadlock)
                    for batch in history(position, head):
                        for projection in projections:
                            projection.apply(apart, batch)
                        position = batch[-1]["position"]
                for projection in projections:
                    if sqlite:
                        _copy_over(live, projection, built)
                    else:
                        _move_over(live, projection)
                    live.execute(tracking.update().where(tracking.c.name == projection.name)
                                 .values(position=position))
            progress(position, position)
            return position
        finally:
            for conn in (apart, live):
                if conn.in_transaction():
                    conn.rollback()
            if sqlite:
                for conn in (apart, live):
                    conn.exec_driver_sql(f"DETACH DATABASE {REBUILD_SCHEMA}")
                    conn.commit()
            else:
                with live.begin():
                    for schema in (REBUILD_SCHEMA, RETIRED_SCHEMA):
                        live.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


RETIRED_SCHEMA = "ticketing_retired"
"""Where the swap on PostgreSQL moves the tables it replaces (dropped after it)."""


def _move_over(live: Connection, projection: Projection) -> None:
    """PostgreSQL: the rebuilt tables take the live ones' place, their
    indexes and constraints with them."""
    here = live.exec_driver_sql("SELECT current_schema()").scalar_one()
    live.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {RETIRED_SCHEMA}")
    for table in projection.metadata.sorted_tables:
        live.exec_driver_sql(f'ALTER TABLE "{here}"."{table.name}" SET SCHEMA {RETIRED_SCHEMA}')
        live.exec_driver_sql(f'ALTER TABLE {REBUILD_SCHEMA}."{table.name}" SET SCHEMA "{here}"')


def _copy_over(live: Connection, projection: Projection, built: dict[str, Table]) -> None:
    """SQLite (no table moves between files): the live tables dropped and
    filled bare from the rebuilt ones, indexed once full (far faster than
    row by row)."""
    for table in reversed(projection.metadata.sorted_tables):
        live.execute(DropTable(table))
    for table in projection.metadata.sorted_tables:
        live.execute(CreateTable(table))
        live.execute(table.insert().from_select(list(table.columns.keys()), select(built[table.name])))
        for index in table.indexes:
            live.execute(CreateIndex(index))
