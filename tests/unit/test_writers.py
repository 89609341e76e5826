"""Writers of the read models in different processes (the worker's parts
run apart: the projections in one, the monitors' ledgers in another)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select

from infra.store.database import FILES, make_engine
from projections.writing import writing

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


def test_a_writer_waits_for_the_writers_lock_another_process_holds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'readmodels.db'}"
    one, two = make_engine(url), make_engine(url)
    try:
        counted.metadata.create_all(one)
        holding, letting_go = threading.Event(), threading.Event()

        def other_process() -> None:
            with FILES[one].writers:  # the file lock alone, not SQLite's
                holding.set()
                time.sleep(0.3)
                letting_go.set()

        thread = threading.Thread(target=other_process)
        thread.start()
        assert holding.wait(5)
        with writing(two) as conn:
            assert letting_go.is_set(), "began while the other held the writers' lock"
            conn.execute(insert(counted).values(n=1))
        thread.join()
    finally:
        one.dispose()
        two.dispose()
