"""Rebuilding read models from the event store (read as the relay publishes
it: infra/store/fast_read.py), on both cores when the store is large."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, inspect

from infra.store.database import make_engine, remove
from infra.store.event_store import EventStore
from infra.store.fast_read import pages
from projections.base import Envelope, Projection, create_tables, marks_of
from projections.rebuilding import adopt, rebuild

log = logging.getLogger(__name__)

DECODE_APART_FROM = 50_000
"""From this many events on, a rebuild decodes in a process of its own."""
APPLY_APART_FROM = 50_000
APART = frozenset({"sla"})
"""The projections a second process rebuilds: the SLA limits, about half the
work at a million events (24 us an event against 21 for the four others
together, each process decoding for itself; at 100k the second process's
start, about a second, evens it out). With activity, danger and staff
apart instead (until session 13) the first process (the SLA limits and the
case summary) had three fifths of the projections' work at a million
events and ended ~10 s after the second: 41.5 s for the whole, against 35.4."""


def history(store: EventStore, apart_from: int | None = None) -> Callable[..., Iterator[list[Envelope]]]:
    """Pages of the events up to `end` (after `after`), as the relay publishes
    them. From `apart_from` events on, a child process reads and decodes the
    pages while this one applies them (the decoding is a fifth of a rebuild);
    the pipe between them holds about a page, so memory stays flat."""
    def batches(end: int, after: int = 0) -> Iterator[list[Envelope]]:
        if end - after >= (DECODE_APART_FROM if apart_from is None else apart_from):
            yield from _decoded_apart(store.opened_with, end, after)
        else:
            yield from pages(store, end, after)
    return batches


def _decoded_apart(opened_with: tuple[str, str | None], end: int, after: int) -> Iterator[list[Envelope]]:
    context = multiprocessing.get_context("spawn")  # no fork: the parent may run threads
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_decode_pages, args=(opened_with, end, after, sending), daemon=True,
                            name="ticketing-rebuild-decoder")
    child.start()
    sending.close()
    try:
        while True:
            try:
                data = receiving.recv_bytes()
            except EOFError:
                raise RuntimeError("the rebuild's decoding process ended before the last page") from None
            if not data:
                return
            if data[:1] == b"!":
                raise RuntimeError(f"the rebuild's decoding process failed: {data[1:].decode()}")
            yield orjson.loads(data)
    finally:
        receiving.close()
        child.join(timeout=10)
        if child.is_alive():
            child.terminate()


def _decode_pages(opened_with: tuple[str, str | None], end: int, after: int, sending: Any) -> None:
    """The decoding process: each page as JSON down the pipe, then an empty message."""
    store = None
    try:
        store = EventStore(*opened_with)
        for page in pages(store, end, after):
            sending.send_bytes(orjson.dumps(page))
        sending.send_bytes(b"")
    except Exception as error:  # noqa: BLE001 - said to the parent, which stops the rebuild
        sending.send_bytes(b"!" + f"{type(error).__name__}: {error}".encode())
    finally:
        sending.close()
        if store is not None:
            store.engine.dispose()


def rebuild_projection(store: EventStore, engine: Engine, projection: Projection,
                       progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    return rebuild_projections(store, engine, [projection], progress)


def rebuild_projections(store: EventStore, engine: Engine, projections: Sequence[Projection],
                        progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Rebuild these projections in place (at start, with nobody reading
    yet): the store read and decoded once for all of them, in one
    transaction. From APPLY_APART_FROM events on (SQLite), a child process
    rebuilds some of them (APART) into a file of its own meanwhile, adopted
    here in a second transaction once both are done: the two cores share the
    work."""
    for projection in projections:
        create_tables(engine, projection)
    end = store.max_position()
    there = [p for p in projections if p.name in APART]
    here = [p for p in projections if p.name not in APART]
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if end < APPLY_APART_FROM or not here or not there or not database or database == ":memory:":
        return rebuild(engine, projections, history(store), lambda: end, progress)
    scratch = Path(database).with_name(f"{Path(database).name}.apart-{os.getpid()}")
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_rebuild_apart, args=(store.opened_with, str(scratch), there, end, sending),
                            daemon=True, name="ticketing-rebuild-apart")
    child.start()
    sending.close()
    try:
        # Each process decodes for itself: a third process decoding for this
        # one was slower on two cores (measured).
        reached = rebuild(engine, here, history(store, apart_from=end + 1), lambda: end, progress)
        try:
            said = receiving.recv_bytes()
        except EOFError:
            said = b"!it ended without a word"
        if said[:1] == b"!":
            raise RuntimeError(f"the rebuild's second process failed: {said[1:].decode()}")
        adopt(engine, str(scratch), there, int(said))
        return reached
    finally:
        receiving.close()
        child.join(timeout=10)
        if child.is_alive():
            child.terminate()
        remove(scratch)


def _rebuild_apart(opened_with: tuple[str, str | None], scratch: str, projections: list[Projection], end: int,
                   sending: Any) -> None:
    """The second process of a rebuild: these projections, up to `end`, into
    the SQLite file `scratch`; says the position reached (or `!` and why)."""
    store = engine = None
    try:
        store = EventStore(*opened_with)
        engine = make_engine(f"sqlite:///{scratch}")
        for projection in projections:
            create_tables(engine, projection)
        reached = rebuild(engine, projections, history(store, apart_from=end + 1), lambda: end)
        sending.send_bytes(str(reached).encode())
    except Exception as error:  # noqa: BLE001 - said to the parent, which stops the rebuild
        sending.send_bytes(b"!" + f"{type(error).__name__}: {error}".encode())
    finally:
        sending.close()
        for opened in (engine, store.engine if store else None):
            if opened is not None:
                opened.dispose()














def ensure_current(store: EventStore, engine: Engine, projections: Sequence[Projection]) -> list[str]:
    """Rebuild from the store, together, the projections whose tables on disk
    are not the ones the code defines (a new version added columns: read
    models are derived data, replaced, never migrated), whose day counters
    are missing or kept in another time zone, or that never applied an event
    of a store that has some (a projection a newer version added). Returns
    their names."""
    stale = [projection for projection in projections if _stale(store, engine, projection)]
    if stale:
        rebuild_projections(store, engine, stale)
    return [projection.name for projection in stale]


def _stale(store: EventStore, engine: Engine, projection: Projection) -> bool:
    existing = inspect(engine)
    changed = [table for table in projection.metadata.sorted_tables if existing.has_table(table.name)
               and {c["name"] for c in existing.get_columns(table.name)} != set(table.columns.keys())]
    if changed:
        log.warning("%s: tables %s changed; rebuilding from the event store", projection.name,
                    ", ".join(t.name for t in changed))
        projection.metadata.drop_all(engine, tables=changed)
        return True
    create_tables(engine, projection)  # tables a newer version added (day counters, say) come empty
    if marks_of(engine, projection.name)[0] == 0 and store.max_position() > 0:
        log.warning("%s: new beside a store of %d events; building it from the event store", projection.name,
                    store.max_position())
        return True
    checked = getattr(projection, "stale", None)
    with engine.connect() as conn:
        if checked is None or not checked(conn):
            return False
    log.warning("%s: its day counters are missing or in another time zone; rebuilding from the event store",
                projection.name)
    return True
