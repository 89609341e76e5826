"""SQLAlchemy engines tuned for this workload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import Engine, create_engine, event

log = logging.getLogger(__name__)


def sqlite_pragmas(durable: bool) -> list[str]:
    """WAL, so readers (relay, queries) never block the writer. `durable`: a
    commit is on disk before it returns, even if the machine loses power;
    what the event store needs (a reply says ok only once its events are
    safe; group commit pays one fsync per group, not per command). Read
    models do without: they survive a process dying either way, and after a
    power loss their tracking row rolls back with their rows, so the
    consumer reads the lost part again."""
    pragmas = ["PRAGMA journal_mode=WAL", f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}",
               "PRAGMA foreign_keys=ON"]
    # The store: what is deleted (a forgotten customer's key) is overwritten, not left in a free page.
    return [*pragmas, "PRAGMA secure_delete=ON"] if durable else pragmas


def tune_sqlite(engine: Engine, *, durable: bool, busy_timeout_ms: int = 10_000) -> Engine:
    """Apply the pragmas to every connection of a SQLite engine, including ones
    opened before this call (they are dropped from the pool)."""
    if engine.dialect.name != "sqlite":
        return engine
    pragmas = [*sqlite_pragmas(durable), f"PRAGMA busy_timeout={int(busy_timeout_ms)}"]

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()

    engine.dispose()
    return engine


def make_engine(url: str, busy_timeout_ms: int = 10_000) -> Engine:
    """An engine for read models."""
    kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    return tune_sqlite(create_engine(url, **kwargs), durable=False, busy_timeout_ms=busy_timeout_ms)


WAL_CEILING_PAGES = 16_384
"""With checkpoints apart, a writer still checkpoints itself past this many
WAL pages (64 MB): the checkpointer stuck or gone does not grow it unbounded."""


class WalCheckpoints:
    """Checkpoints a SQLite read-model database's WAL every `every` seconds
    from a thread of its own, so the projections' commits do not stop to do
    it (SQLite's automatic checkpoint runs inside the commit that crosses
    1,000 pages and syncs the file: a live batch's commit took 7 ms on
    average, and the unlucky ones far more). PASSIVE: it never waits for
    or blocks a writer or reader. Nothing to do on PostgreSQL."""

    def __init__(self, engine: Engine, every: float = 1.0) -> None:
        self.engine = engine
        self.every = every
        self.active = engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")
        self._stopping = asyncio.Event()
        if self.active:
            @event.listens_for(engine, "connect")
            def _ceiling(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={WAL_CEILING_PAGES}")

            engine.dispose()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        failing = False
        while self.active and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.every)
            try:
                await asyncio.to_thread(self._checkpoint)
                failing = False
            except Exception as error:  # noqa: BLE001 - a database away: the writers' ceiling still holds
                if not failing:
                    log.warning("read models: WAL checkpoint failed (%s); trying again every %.0fs", error, self.every)
                    failing = True

    def _checkpoint(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()
