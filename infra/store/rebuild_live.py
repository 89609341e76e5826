"""A rebuild beside the live read models: every projection built again from the
store into a schema (PostgreSQL) or a file (SQLite) of its own while the live
ones go on, caught up to the head, then swapped in at once."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine

from infra.store.database import FILES, ReadModelFiles, make_engine, remove
from infra.store.event_store import EventStore
from infra.store.rebuild import history, rebuild_projections
from projections.base import Envelope, Projection, create_tables, hold_marks, tracking
from projections.rebuilding import History, build, catch_up, fewer_collections, rebuild_beside
from projections.writing import writers_turn


def rebuild_live(store: EventStore, engine: Engine, projections: Sequence[Projection],
                 progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Rebuild these projections beside the live ones and swap them in
    (blue/green). On PostgreSQL: `projections.rebuilding.rebuild_beside`.
    On SQLite: into a file of its own (`ReadModelFiles.next`) as at a
    start (`rebuild_projections`: both cores), nobody waiting, then caught
    up with the store a page per transaction; then the swap, holding the
    live file's write lock (the live consumers and monitors wait on it):
    the few events stored since applied to the new file, every table it did
    not rebuild (the other projections, the monitors' ledgers, the tracking
    rows) copied over from the live one, and the pointer moved to it. The
    swap's work is what was stored meanwhile and the tables not rebuilt,
    never the rebuilt models however large.
    Readers see the old file until the pointer moves and the new one after,
    never a half-built one. One rebuild at a time. Returns the position
    reached."""
    for projection in projections:
        create_tables(engine, projection)
    read = history(store)

    def pages(after: int, end: int) -> Iterator[list[Envelope]]:
        return read(end, after)

    files = FILES.get(engine)
    if files is None:
        return rebuild_beside(engine, projections, pages, store.max_position, progress)
    shared = store.engine.url.database
    if shared and Path(shared).resolve() in (files.path, files.current()):
        raise RuntimeError("the read models share the event store's SQLite file; a rebuild beside them "
                           "swaps in a file of their own, so give them one (TICKETING_READMODEL_URL)")
    with _alone(files):
        target = files.next()
        built = make_engine(f"sqlite:///{target}")
        try:
            position = rebuild_projections(store, built, projections, progress)  # as at a start: both cores
            with built.connect() as apart:
                with fewer_collections():
                    position = build(apart, projections, pages, store.max_position, progress, position)
                apart.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                apart.exec_driver_sql("PRAGMA synchronous=FULL")  # its commit durable before the pointer moves
                apart.commit()
                _sync(target)  # on disk before it can become the read models
                progress(position, store.max_position())
                position = _swap(engine, files, apart, target, projections, pages, store.max_position,
                                 position)
            progress(position, position)
            return position
        finally:
            built.dispose()
            if files.current() != target:  # failed before the pointer moved (after it, it is the models)
                remove(target)


LIVE_SCHEMA = "ticketing_live"
"""Where the swap attaches the live file to the new one, to copy from it."""


def _swap(engine: Engine, files: ReadModelFiles, apart: Connection, target: Path,
          projections: Sequence[Projection], pages: History, end_of_history: Callable[[], int],
          position: int) -> int:
    names = [p.name for p in projections]
    rebuilt = {table.name for projection in projections for table in projection.metadata.sorted_tables}
    with engine.connect() as live:
        here = next(row[2] for row in live.exec_driver_sql("PRAGMA database_list") if row[1] == "main")
        live.rollback()
        apart.exec_driver_sql(f"ATTACH DATABASE ? AS {LIVE_SCHEMA}", (here,))
        apart.commit()
        try:
            with writers_turn(engine, live), live.begin():  # to its commit, every writer of the live file waits
                hold_marks(live, names)
                with apart.begin():
                    position = catch_up(apart, projections, pages, position, end_of_history())
                    _carry_over(apart, rebuilt)
                    apart.execute(tracking.update().where(tracking.c.name.in_(names)).values(position=position))
                files.swap_to(target)
            # The live file's writers, let in by that commit, find it replaced (`writing`): the new one next.
            return position
        finally:
            if apart.in_transaction():
                apart.rollback()
            apart.exec_driver_sql(f"DETACH DATABASE {LIVE_SCHEMA}")
            apart.commit()


def _carry_over(apart: Connection, rebuilt: set[str]) -> None:
    """Into the new file, from the live one attached beside it: every table
    not rebuilt, with its indexes, and the tracking rows. `INSERT INTO t
    SELECT * FROM live.t` into an empty table of the same definition is
    SQLite's transfer optimisation: records copied as they are."""
    found = apart.exec_driver_sql(f"SELECT name, sql FROM {LIVE_SCHEMA}.sqlite_master WHERE type = 'table' "
                                  f"AND name NOT LIKE 'sqlite_%'").all()
    for name, sql in found:
        if name in rebuilt:
            continue
        apart.exec_driver_sql(f'DROP TABLE IF EXISTS main."{name}"')
        apart.exec_driver_sql(sql)
        for (index,) in apart.exec_driver_sql(f"SELECT sql FROM {LIVE_SCHEMA}.sqlite_master WHERE type = "
                                              f"'index' AND tbl_name = ? AND sql IS NOT NULL", (name,)):
            apart.exec_driver_sql(index)
        apart.exec_driver_sql(f'INSERT INTO main."{name}" SELECT * FROM {LIVE_SCHEMA}."{name}"')


def _sync(database: Path) -> None:
    handle = os.open(database, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextmanager
def _alone(files: ReadModelFiles) -> Iterator[None]:
    """One rebuild beside the live models at a time (they would build in
    the same file)."""
    with open(files.path.with_name(files.path.name + ".rebuilding"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError("another rebuild of these read models is running") from None
        yield
