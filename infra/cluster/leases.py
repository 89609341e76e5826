"""Leases with an epoch: one holder of each of the worker's parts at a time,
and a fence that makes a holder that stalled past its lease change nothing.

A row per part in `ticketing_leases` (the read models' database): who holds
it, until when (the database's own clock, so no two machines' clocks are
compared), and an epoch that grows with every new holder. Taking an expired
lease (or one this very instance-and-part held before its process died)
adds one to the epoch. A lock is not a fence (a PostgreSQL advisory lock is
freed silently when the server restarts; a process paused past its lease
wakes up believing it holds it): every write a part makes checks, in its own
transaction, that the lease still has the holder and epoch it took (`fence`,
reading the row FOR SHARE, so a takeover waits for a write under way and
every later write of the old holder is refused with `Fenced`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    event,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from projections.base import Fenced

log = logging.getLogger(__name__)

metadata = MetaData()
leases = Table(
    "ticketing_leases", metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("host", String(200)),
    Column("pid", Integer),
    Column("since", Float),
)


def cut_off_when_stalled(engine: Engine, seconds: float) -> None:
    """PostgreSQL ends a session of `engine` left idle inside a transaction for
    `seconds`: a holder stopped in the middle of a write (SIGSTOP, a pause)
    would otherwise keep its lock on the lease row, and no one could take the
    lease over while it sleeps. When it wakes, its connection is gone, its
    write rolled back, and its next one is fenced."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "connect")
    def _bounded(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {int(seconds * 1000)}")
        dbapi_connection.commit()

    engine.dispose()


class LeaseLost(Fenced):
    """A write of a holder whose lease another has taken since."""


@dataclass(frozen=True)
class Held:
    name: str
    holder: str
    epoch: int


def db_now(engine: Engine) -> Any:
    """The database's clock, in seconds since 1970."""
    if engine.dialect.name == "postgresql":
        return literal_column("extract(epoch from clock_timestamp())", Float)
    return literal_column("((julianday('now') - 2440587.5) * 86400.0)", Float)


class Leases:
    def __init__(self, engine: Engine, seconds: float, create: bool = True) -> None:
        """`create`: the table made now (a reader of the leases leaves that to their holders)."""
        self.engine = engine
        self.seconds = seconds
        if create:
            metadata.create_all(engine)

    def acquire(self, name: str, holder: str) -> Held | None:
        """The lease, when it is free, expired, or was this holder's; None when another holds it."""
        now = db_now(self.engine)
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        with self.engine.begin() as conn:
            self._bounded(conn)
            conn.execute(dialect.insert(leases).values(name=name, holder="", epoch=0, expires_at=0.0)
                         .on_conflict_do_nothing(index_elements=["name"]))
            taken = conn.execute(
                update(leases).where(leases.c.name == name, (leases.c.expires_at < now) | (leases.c.holder == holder))
                .values(holder=holder, epoch=leases.c.epoch + 1, expires_at=now + self.seconds, since=now,
                        host=socket.gethostname(), pid=os.getpid())
                .returning(leases.c.epoch)).scalar()
        return None if taken is None else Held(name, holder, int(taken))

    def renew(self, held: Held) -> bool:
        """Whether the lease is still `held`'s (its end moved on)."""
        with self.engine.begin() as conn:
            self._bounded(conn)
            done = conn.execute(update(leases).where(leases.c.name == held.name, leases.c.holder == held.holder,
                                                     leases.c.epoch == held.epoch)
                                .values(expires_at=db_now(self.engine) + self.seconds))
        return done.rowcount == 1

    def _bounded(self, conn: Connection) -> None:
        """A lease's statement waits for a row lock at most a lease's length (a
        holder's write under way), never for ever (a schema being dropped)."""
        if self.engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(self.seconds * 1000)}ms'")

    def release(self, held: Held) -> None:
        """Let another take it at once (a clean stop)."""
        with self.engine.begin() as conn:
            self._bounded(conn)
            conn.execute(update(leases).where(leases.c.name == held.name, leases.c.holder == held.holder,
                                              leases.c.epoch == held.epoch).values(expires_at=0.0))

    def fence(self, held: Held) -> Callable[[Connection], None]:
        """For a write's own transaction: raises LeaseLost unless `held` is still the lease's holder and epoch."""
        query = select(leases.c.holder, leases.c.epoch).where(leases.c.name == held.name)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update(read=True)

        def check(conn: Connection) -> None:
            row = conn.execute(query).first()
            if row is None or (row.holder, int(row.epoch)) != (held.holder, held.epoch):
                now = f"{row.holder} at epoch {row.epoch}" if row else "nobody"
                raise LeaseLost(f"lease {held.name} is {now} now, not {held.holder} at epoch {held.epoch}")
        return check

    def holders(self) -> list[dict[str, Any]]:
        """Every lease: who holds it, its epoch, since and until when (seconds from now)."""
        now = db_now(self.engine)
        with self.engine.connect() as conn:
            rows = conn.execute(select(leases, (leases.c.expires_at - now).label("left"),
                                       (now - leases.c.since).label("held_for")).order_by(leases.c.name)).all()
        return [{"name": r.name, "holder": r.holder, "epoch": int(r.epoch), "host": r.host, "pid": r.pid,
                 "held_seconds": round(float(r.held_for), 1) if r.since else None,
                 "expires_in_seconds": round(float(r.left), 1), "live": float(r.left) > 0} for r in rows]


class Keeper:
    """Takes a lease and keeps it: `hold` waits until it is ours, `keep`
    renews it every third of its length and returns once it is lost (taken
    by another, or not renewed within its length, the database away)."""

    def __init__(self, leases_: Leases, name: str, holder: str) -> None:
        self.leases = leases_
        self.name = name
        self.holder = holder
        self.held: Held | None = None

    @property
    def every(self) -> float:
        return self.leases.seconds / 3

    async def hold(self, stop: asyncio.Event) -> Held | None:
        """The lease once ours; None when told to stop first."""
        said = False
        while not stop.is_set():
            try:
                self.held = await asyncio.to_thread(self.leases.acquire, self.name, self.holder)
            except Exception as error:  # noqa: BLE001 - the database away: try again
                self.held = None
                if not said:
                    log.warning("lease %s: cannot reach the database (%s); trying again", self.name, error)
                    said = True
            if self.held is not None:
                log.info("lease %s: held by %s at epoch %d", self.name, self.holder, self.held.epoch)
                return self.held
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
        return None

    async def keep(self, stop: asyncio.Event) -> bool:
        """Renew until `stop` (True) or until the lease is lost (False)."""
        assert self.held is not None
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
            if stop.is_set():
                break
            try:
                if not await asyncio.to_thread(self.leases.renew, self.held):
                    log.warning("lease %s: taken by another since epoch %d; standing by", self.name,
                                self.held.epoch)
                    return False
                renewed = loop.time()
            except Exception as error:  # noqa: BLE001 - the database away: the lease runs out meanwhile
                if loop.time() - renewed > self.leases.seconds:
                    log.warning("lease %s: not renewed for %.0fs (%s); standing by", self.name,
                                self.leases.seconds, error)
                    return False
        return True

    def release(self) -> None:
        if self.held is not None:
            with contextlib.suppress(Exception):
                self.leases.release(self.held)
