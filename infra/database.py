"""SQLAlchemy engines tuned for this workload."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # Durable against a process dying (what the relay and the idempotency
    # records must survive); only an OS crash can lose the last commits.
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)


def tune_sqlite(engine: Engine, busy_timeout_ms: int = 10_000) -> Engine:
    """Apply the pragmas to every connection of a SQLite engine, including ones
    opened before this call (they are dropped from the pool)."""
    if engine.dialect.name != "sqlite":
        return engine

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    engine.dispose()
    return engine


def make_engine(url: str, busy_timeout_ms: int = 10_000) -> Engine:
    kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    return tune_sqlite(create_engine(url, **kwargs), busy_timeout_ms)
