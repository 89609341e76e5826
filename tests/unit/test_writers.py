"""Writers of the read models in different processes (the worker's parts
run apart: the projections in one, the monitors' ledgers in another)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select

from infra.store.database import make_engine
from projections.base import writing

counted = Table("counted", MetaData(), Column("n", Integer, primary_key=True))


def test_a_writer_that_reads_first_waits_for_another_process_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'readmodels.db'}"
    one, two = make_engine(url), make_engine(url)  # two engines: no lock of ours between them, as two processes
    try:
        counted.metadata.create_all(one)
        holding = threading.Event()

        def first() -> None:
            with writing(one) as conn:
                conn.execute(insert(counted).values(n=1))
                holding.set()
                time.sleep(0.3)  # the write lock held a while, as a batch does

        thread = threading.Thread(target=first)
        thread.start()
        assert holding.wait(5)
        # Read, then write, as the monitors' ledgers do: unless the write lock
        # is taken as the transaction begins, the read sees the table before
        # the first commits and the write lands after it (here: the same n
        # twice, refused; in a deferred transaction SQLite refuses the write).
        with writing(two) as conn:
            seen = conn.execute(select(func.count()).select_from(counted)).scalar_one()
            conn.execute(insert(counted).values(n=seen + 1))
        thread.join()
        with one.connect() as conn:
            assert conn.execute(select(counted.c.n).order_by(counted.c.n)).scalars().all() == [1, 2]
    finally:
        one.dispose()
        two.dispose()
