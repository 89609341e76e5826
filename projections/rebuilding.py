"""Rebuilding read models from the whole history: in place, in one
transaction (at start, or from another process's file: `adopt`), or beside
the live models and swapped in (blue/green, `rebuild_beside`)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from projections.base import READ_BY_APPLY, Envelope, Projection, hold_marks, tracking


def rebuild(engine: Engine, projections: Sequence[Projection], history: Callable[[int], Iterator[list[Envelope]]],
            end_of_history: Callable[[], int], progress: Callable[[int, int], None] = lambda done, total: None,
            ) -> int:
    """Empty the read models and apply the whole history again, each page of
    events decoded once for all of them, in one transaction: readers see the
    old rows until it commits. The live consumers wait on their tracking rows
    meanwhile, and then skip what the rebuild covered. Returns the position
    reached."""
    with engine.begin() as conn, fewer_collections():
        hold_marks(conn, [p.name for p in projections])
        end = end_of_history()
        for projection in projections:
            projection.reset(conn)
        position = 0
        with indexes_made_after(conn, projections):
            for batch in history(end):
                if batch:
                    for projection in projections:
                        projection.apply(conn, batch)
                    position = batch[-1]["position"]
                progress(position, end)
        for projection in projections:
            conn.execute(tracking.update().where(tracking.c.name == projection.name).values(position=position))
    return position


def adopt(engine: Engine, scratch: str, projections: Sequence[Projection], position: int) -> None:
    """Put the rows of these projections that a rebuild built in another
    SQLite file (`scratch`, same tables and indexes) in place of theirs
    here, and move their tracking to `position`: one transaction. Into
    empty tables with the same indexes, `INSERT INTO t SELECT * FROM
    other.t` is SQLite's transfer optimisation: the records of the table
    and of each index copied as they are, in order (the other process made
    the indexes; dropping them here to make them again took twice as long:
    4.1 s against 2.2 for the SLA model at a million events)."""
    with engine.connect() as conn:
        conn.exec_driver_sql(f"ATTACH DATABASE ? AS {APART_SCHEMA}", (scratch,))
        conn.commit()
        try:
            with conn.begin():
                hold_marks(conn, [p.name for p in projections])
                for projection in projections:
                    projection.reset(conn)
                for projection in projections:
                    for table in projection.metadata.sorted_tables:
                        conn.exec_driver_sql(f'INSERT INTO main."{table.name}" SELECT * FROM '
                                             f'{APART_SCHEMA}."{table.name}"')
                for projection in projections:
                    conn.execute(tracking.update().where(tracking.c.name == projection.name)
                                 .values(position=position))
        finally:
            conn.exec_driver_sql(f"DETACH DATABASE {APART_SCHEMA}")
            conn.commit()


@contextmanager
def indexes_made_after(conn: Connection, projections: Sequence[Projection]) -> Iterator[None]:
    """On SQLite, the projections' indexes that their `apply` does not read
    through (all but READ_BY_APPLY) dropped while a rebuild puts the rows in,
    and made again once they are all in, in the same transaction (readers
    see the old rows and indexes until it commits): sorted once, instead of
    updated at every row. Elsewhere left as they are (PostgreSQL would keep
    readers off the tables until the commit)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    deferred = [index for projection in projections for table in projection.metadata.sorted_tables
                for index in table.indexes if not index.info.get(READ_BY_APPLY)]
    for index in deferred:
        index.drop(conn, checkfirst=True)
    yield
    for index in deferred:
        index.create(conn)


APART_SCHEMA = "ticketing_apart"
"""Where `adopt` attaches the file another process rebuilt into."""

REBUILD_SCHEMA = "ticketing_rebuild"
"""Where a rebuild beside the live models builds on PostgreSQL: a schema."""

History = Callable[[int, int], Iterator[list[Envelope]]]
"""Pages of the events after position `a` up to `b`."""


CAUGHT_UP = 2000
"""How close to the store's head a rebuild beside live gets before it swaps
(the rest is applied inside the swap, with the live consumers waiting)."""
CATCH_UP_ROUNDS = 10
"""Rounds of catching up before the swap takes the rest (a store growing
faster than the rebuild goes would never be caught)."""


def rebuild_beside(engine: Engine, projections: Sequence[Projection], history: History,
                   end_of_history: Callable[[], int],
                   progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Rebuild while the live models keep serving (blue/green), on
    PostgreSQL: build into fresh tables in a schema of their own, one
    transaction per page, with nobody waiting, and catch up with the store
    the same way; then, in one short transaction that holds the live
    models' tracking rows, apply the few events stored since, move the live
    tables out of the way and the rebuilt ones in (catalog changes: as quick
    at a million events as at ten) and move the tracking to where the
    rebuild got. Readers see the old model until that commit and the new
    one after it, never a half-built one; the live consumers and the
    monitors go on meanwhile and wait only for the swap. (On SQLite the
    rebuild builds a file of its own and the swap replaces the file:
    `infra.store.rebuild_live.rebuild_live`.) Returns the position reached."""
    with engine.connect() as live, engine.connect() as apart:
        with live.begin():
            for schema in (REBUILD_SCHEMA, RETIRED_SCHEMA):
                live.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            live.exec_driver_sql(f"CREATE SCHEMA {REBUILD_SCHEMA}")
        apart.execution_options(schema_translate_map={None: REBUILD_SCHEMA})  # (in place) every table there
        try:
            with apart.begin():
                for projection in projections:
                    projection.metadata.create_all(apart)
            with fewer_collections():
                position = build(apart, projections, history, end_of_history, progress)
            with live.begin():  # the swap: the live consumers wait from here to the commit
                hold_marks(live, [p.name for p in projections])
                with apart.begin():  # what was stored since (only the rebuilt tables: no deadlock)
                    position = catch_up(apart, projections, history, position, end_of_history())
                for projection in projections:
                    _move_over(live, projection)
                    live.execute(tracking.update().where(tracking.c.name == projection.name)
                                 .values(position=position))
            progress(position, position)
            return position
        finally:
            for conn in (apart, live):
                if conn.in_transaction():
                    conn.rollback()
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


def catch_up(apart: Connection, projections: Sequence[Projection], history: History, position: int,
             head: int) -> int:
    """The events after `position` up to `head` applied, in the transaction
    `apart` is in; the position reached."""
    for batch in history(position, head):
        for projection in projections:
            projection.apply(apart, batch)
        position = batch[-1]["position"]
    return position


def build(apart: Connection, projections: Sequence[Projection], history: History,
          end_of_history: Callable[[], int], progress: Callable[[int, int], None], position: int = 0) -> int:
    """Build the projections apart (from `position` on), a page per
    transaction, then catch up with the store the same way until close to
    its head; the position reached."""
    head = end_of_history()
    for _ in range(CATCH_UP_ROUNDS):
        for batch in history(position, head):
            with apart.begin():
                for projection in projections:
                    projection.apply(apart, batch)
            position = batch[-1]["position"]
            progress(position, head)
        head = end_of_history()
        if head - position <= CAUGHT_UP:
            break
    return position


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The cyclic garbage collector run less often while a rebuild applies
    pages: what exists before it is frozen (not traversed again meanwhile)
    and the young generation collected every 50,000 allocations, not 700. A
    rebuild allocates millions of short-lived rows and dicts; collecting as
    often as by default cost it about 7 % at a million events (measured)."""
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if not frozen:  # (a long-running process froze what it had built at start: that stays)
            gc.unfreeze()
