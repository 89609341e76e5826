"""One writer at a time on the read models: a write transaction that takes its
turn among this process's writers and every other process's, begins with
the database's write lock, and finds out before it commits whether a rebuild
replaced the read models meanwhile (then it is done again, `written`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine

T = TypeVar("T")
_WRITERS: dict[int, threading.Lock] = {}
"""This process's lock per engine: its writers take turns on it."""


class ReadModelsMoved(Exception):
    """The write went to read models a rebuild has since replaced (a file
    that is no longer the current one): rolled back, to be done again on a
    connection to the current ones (`written` does)."""


RETIRED = "ticketing.retired"
"""Key of a connection's `info`: a callable saying whether the read models
it reaches have been replaced since it connected (set where the engine is
made; absent where they never are)."""


WRITERS = "ticketing.writers"
"""Key of a connection's `info`: a lock shared by every process writing
these read models (a context manager; set where the engine is made, absent
where one process alone writes)."""


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction on the read models. On SQLite, this process's
    writers (the projections, the monitors) take turns on a lock of ours
    first: SQLite would make them wait in its busy handler, which sleeps in
    steps of up to 100 ms. Writers in other processes (the worker's parts
    run apart) take turns on a file lock first (`WRITERS`, where the engine
    is made: the kernel hands it to a waiter as it is let go, where SQLite's
    busy handler polls, and a monitor's write waited out up to a second of
    the projections' batches that way). The transaction takes the
    database's write lock as it begins (BEGIN IMMEDIATE): a writer that
    reads first never writes after reading what another was changing, nor
    is refused. Before it
    commits, still holding the database's write lock, it makes sure its
    connection reaches the current read models: a rebuild replaces them
    while holding that lock, so a writer that waited on it finds out here,
    and its work is rolled back (ReadModelsMoved), never lost in a file
    nobody reads."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as conn, writers_turn(engine, conn), conn.begin():
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn
        retired = conn.connection.info.get(RETIRED)
        if retired is not None and retired():
            raise ReadModelsMoved("the read models were replaced by a rebuild meanwhile")


@contextmanager
def writers_turn(engine: Engine, conn: Connection) -> Iterator[None]:
    """This connection's turn among the writers of the read models it
    reaches (SQLite): after this process's other threads writing through
    `engine`, then after every other process's (`WRITERS`), as `writing`
    and the swap of a rebuild beside them take it."""
    with _WRITERS.setdefault(id(engine), threading.Lock()), conn.connection.info.get(WRITERS) or \
            contextlib.nullcontext():
        yield


def written(engine: Engine, change: Callable[[Connection], T]) -> T:
    """`change` done in `writing`, once more on a fresh connection if the
    read models moved meanwhile (a rebuild swapped them in)."""
    try:
        with writing(engine) as conn:
            return change(conn)
    except ReadModelsMoved:
        with writing(engine) as conn:
            return change(conn)
