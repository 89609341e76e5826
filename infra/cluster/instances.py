"""Which instances are up: each `serve` on PostgreSQL says so every few
seconds in `ticketing_instances` (name, host, pid, up since, last seen, on
the database's clock); `ticketing status` lists those seen lately beside
the leases they hold."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

from sqlalchemy import Column, Engine, Float, Integer, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from infra.cluster.leases import db_now

log = logging.getLogger(__name__)

SAY_EVERY_SECONDS = 2.0
GONE_AFTER_SECONDS = 10.0

metadata = MetaData()
instances = Table(
    "ticketing_instances", metadata,
    Column("name", String(200), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),
)


class Instances:
    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._stopping = asyncio.Event()

    def say(self, starting: bool = False) -> None:
        if starting:
            metadata.create_all(self.engine)
        now = db_now(self.engine)
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        row = {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(), "started_at": now,
               "seen_at": now}
        insert = dialect.insert(instances).values(**row)
        update = {"seen_at": now} | ({"started_at": now, "host": row["host"], "pid": row["pid"]} if starting else {})
        with self.engine.begin() as conn:
            conn.execute(insert.on_conflict_do_update(index_elements=["name"], set_=update))

    def up(self) -> list[dict[str, Any]]:
        """The instances seen within GONE_AFTER_SECONDS: name, host, pid, seconds up."""
        now = db_now(self.engine)
        with self.engine.connect() as conn:
            rows = conn.execute(select(instances, (now - instances.c.started_at).label("up"))
                                .where(instances.c.seen_at > now - GONE_AFTER_SECONDS)
                                .order_by(instances.c.name)).all()
        return [{"name": r.name, "host": r.host, "pid": r.pid, "up_seconds": round(float(r.up), 1)} for r in rows]

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Say this instance is up now and every few seconds (a database away: said once)."""
        starting, failing = True, False
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.say, starting)
                starting, failing = False, False
            except Exception as error:  # noqa: BLE001 - the next round tries again
                if not failing:
                    log.warning("instances: cannot say this one is up (%s)", error)
                    failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), SAY_EVERY_SECONDS)
