"""The read models' WAL copied back into their file by the checkpointer,
not by the commits of the writers (`infra.store.checkpoint`)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table

from infra.store.checkpoint import Checkpointer
from infra.store.database import make_engine

blobs = Table("blobs", MetaData(), Column("id", Integer, primary_key=True), Column("data", LargeBinary))


def test_the_writers_leave_the_wal_to_the_checkpointer(tmp_path: Path) -> None:
    database = tmp_path / "readmodels.db"
    engine = make_engine(f"sqlite:///{database}")
    blobs.metadata.create_all(engine)
    checkpointer = Checkpointer(engine)
    for n in range(40):  # ~8 MB in 40 commits: 2,000 pages, twice the WAL size at which a commit checkpoints
        with engine.begin() as conn:
            conn.execute(blobs.insert(), [{"id": n * 50 + i, "data": bytes(4000)} for i in range(50)])
    wal = database.with_name(database.name + "-wal")
    assert database.stat().st_size < 1_000_000, "no commit copied the WAL into the file"
    assert wal.stat().st_size > 8_000_000
    checkpointer.checkpoint()
    assert database.stat().st_size > 8_000_000, "the checkpointer did"
    engine.dispose()
