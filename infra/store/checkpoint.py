"""The read models' write-ahead log copied back into their file beside the
writers, not by them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 0.25


class Checkpointer:
    """By default SQLite checkpoints (copies the WAL back into the database
    file) at the commit that finds the WAL over 1,000 pages: the live batch
    that commits then does the copying, about 4 MB, and the events behind it
    wait. Here the engine's connections never checkpoint by themselves; this
    one does, every quarter of a second, PASSIVE: beside the writer (SQLite
    lets a checkpoint run while another connection writes, and never makes
    the writer wait for it), with the GIL released while SQLite copies. On
    PostgreSQL it does nothing."""

    def __init__(self, engine: Engine, every: float = CHECKPOINT_SECONDS) -> None:
        self.engine = engine
        self.every = every
        self._stopping = asyncio.Event()
        self._failing = False
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _no_automatic_checkpoints)
            engine.dispose()  # the connections opened before: closed, opened again without

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        if self.engine.dialect.name != "sqlite":
            return
        while not self._stopping.is_set():
            await asyncio.to_thread(self.checkpoint)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.every)

    def checkpoint(self) -> None:
        """One PASSIVE checkpoint: what the readers let it copy now; said
        once when it fails (a full disk, say) and once when it works again."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as error:  # noqa: BLE001 - the next round tries again
            if not self._failing:
                log.warning("checkpointing the read models failed (%s: %s); trying again every %.2f s",
                            type(error).__name__, error, self.every)
                self._failing = True
            return
        if self._failing:
            log.warning("checkpointing the read models works again")
            self._failing = False


def _no_automatic_checkpoints(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")
