"""SQLAlchemy engines tuned for this workload."""

from __future__ import annotations

import fcntl
import os
import re
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, make_url

from projections.writing import RETIRED, WRITERS

CACHE_KIB = 65_536
"""SQLite's page cache per connection (64 MiB; its default is 2 MiB). Its
pages are filled only as they are read, so a small store costs no more.
With the default, a million-event store's read models (about 750 MB) missed
it at nearly every index update: the rebuild ran at 10,100 events/s with
the default, 13,200 with 64 MiB (256 MiB gave no more)."""


def sqlite_pragmas(durable: bool) -> list[str]:
    """WAL, so readers (relay, queries) never block the writer. `durable`: a
    commit is on disk before it returns, even if the machine loses power;
    what the event store needs (a reply says ok only once its events are
    safe; group commit pays one fsync per group, not per command). Read
    models do without: they survive a process dying either way, and after a
    power loss their tracking row rolls back with their rows, so the
    consumer reads the lost part again. A page cache of CACHE_KIB."""
    pragmas = ["PRAGMA journal_mode=WAL", f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}",
               "PRAGMA foreign_keys=ON", f"PRAGMA cache_size=-{CACHE_KIB}"]
    # The store: what is deleted (a forgotten customer's key) is overwritten, not left in a free page.
    return [*pragmas, "PRAGMA secure_delete=ON"] if durable else pragmas


def owner_only(url: str) -> None:
    """A SQLite file (and its write-ahead log) readable by its owner only,
    made so before SQLite first creates it (SQLite gives its -wal and -shm
    files the database file's mode). Other URLs: nothing to do."""
    if not url.startswith("sqlite"):
        return
    database = make_url(url).database
    if not database or database == ":memory:" or "mode=memory" in url:
        return
    path = Path(database)
    if not path.parent.is_dir():
        return  # SQLite says the path is wrong
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if name.exists():
            name.chmod(0o600)


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
    """An engine for read models. On a SQLite file, one that follows the
    read models from file to file as rebuilds replace them (`ReadModelFiles`)."""
    kwargs: dict[str, Any] = {}
    owner_only(url)
    if url.startswith("postgresql"):
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    engine = tune_sqlite(create_engine(url, **kwargs), durable=False, busy_timeout_ms=busy_timeout_ms)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:" and "mode=memory" not in url:
        _follow(engine, ReadModelFiles(Path(database).resolve()))
    return engine


class ReadModelFiles:
    """Which SQLite file holds the read models. At first the file the URL
    names; once a rebuild beside the live models has swapped its own file in,
    the one a pointer beside it names (`readmodels.db.current` holding
    `readmodels.db.gen2`, say), replaced atomically at each swap. Engines
    made here open the current file, drop pooled connections to a replaced
    one at checkout, and a write that waited on a replaced one is rolled back
    (`projections.base.writing`) and done again on the current one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pointer = path.with_name(path.name + ".current")
        self._seen: tuple[tuple[int, int, int], Path] | None = None
        self.writers = WritersLock(path.with_name(path.name + ".writers"))
        """Taken by each write transaction, whichever file is current."""

    def current(self) -> Path:
        try:
            stat = os.stat(self.pointer)
        except FileNotFoundError:
            return self.path
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        seen = self._seen
        if seen is None or seen[0] != key:
            seen = self._seen = (key, self.path.with_name(self.pointer.read_text().strip()))
        return seen[1]

    def generation(self, file: Path) -> int:
        found = re.fullmatch(re.escape(self.path.name) + r"\.gen(\d+)", file.name)
        return int(found.group(1)) if found else 1

    def next(self) -> Path:
        """The file the next rebuild builds in (what a failed one left there removed)."""
        target = self.path.with_name(f"{self.path.name}.gen{self.generation(self.current()) + 1}")
        remove(target)
        return target

    def swap_to(self, file: Path) -> None:
        """Make `file` the read models, atomically and durably; the files
        older than the one it replaces are removed (that one stays a while:
        another process may be opening it this instant, and a SQLite file
        removed under an opening connection would be made again, empty)."""
        replaced = self.current()
        written = self.pointer.with_name(self.pointer.name + ".new")
        with open(written, "w") as out:
            out.write(file.name)
            out.flush()
            os.fsync(out.fileno())
        os.replace(written, self.pointer)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        kept = {file, replaced}
        for older in [self.path, *self.path.parent.glob(f"{self.path.name}.gen*")]:
            if older not in kept and not older.name.endswith(("-wal", "-shm", "-journal")):
                remove(older)


class WritersLock:
    """A lock on a file beside the read models, for their writers in every
    process (flock: the kernel wakes a waiter as it is let go, and lets it
    go when its holder dies). One per engine: the threads of a process take
    turns on a lock of their own first (`projections.base.writing`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)


def remove(database: Path) -> None:
    """A SQLite file and what SQLite keeps beside it."""
    for part in (database, *(database.with_name(database.name + s) for s in ("-wal", "-shm", "-journal"))):
        part.unlink(missing_ok=True)


FILES: weakref.WeakKeyDictionary[Engine, ReadModelFiles] = weakref.WeakKeyDictionary()
"""The files each read-model engine made here follows."""


def _follow(engine: Engine, files: ReadModelFiles) -> None:
    FILES[engine] = files

    @event.listens_for(engine, "do_connect")
    def _current_file(_dialect: Any, record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        file = files.current()
        record.info[RETIRED] = lambda: files.current() != file
        record.info[WRITERS] = files.writers
        if file != files.path:  # a rebuild's file: opened, never made again (`swap_to`)
            cargs[0] = f"{file.as_uri()}?mode=rw"
            cparams["uri"] = True

    @event.listens_for(engine, "checkout")
    def _still_current(_dbapi: Any, record: Any, _proxy: Any) -> None:
        retired = record.info.get(RETIRED)
        if retired is not None and retired():
            raise exc.DisconnectionError("the read models moved to another file")
