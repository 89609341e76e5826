"""Which SQLite file holds the read models, as rebuilds beside the live
ones replace it (`infra.store.database.ReadModelFiles`)."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from eventsourcing.cipher import AESCipher
from sqlalchemy import Column, Integer, MetaData, Table, select

from infra.config_files import DEFAULT_POLICY
from infra.runtime.worker import projections
from infra.store.database import FILES, ReadModelFiles, make_engine
from infra.store.event_store import EventStore
from infra.store.rebuild_live import rebuild_live
from projections.base import UTC_ZONE
from projections.writing import written
from tests.integration.test_relay import record_complaints
from ticketing.sla.policy import SlaPolicy

probe = Table("probe", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer))


def test_each_swap_names_the_next_file_and_keeps_only_the_one_it_replaced(tmp_path: Path) -> None:
    base = tmp_path / "readmodels.db"
    base.write_bytes(b"")
    files = ReadModelFiles(base)
    assert files.current() == base
    seen = [base]
    for generation in (2, 3, 4):
        (tmp_path / f"readmodels.db.gen{generation}").write_bytes(b"left by a rebuild that died")
        target = files.next()
        assert target == tmp_path / f"readmodels.db.gen{generation}"
        assert not target.exists(), "what a failed rebuild left there is removed"
        target.write_bytes(b"")
        (tmp_path / f"{target.name}-wal").write_bytes(b"")
        files.swap_to(target)
        assert files.current() == target
        assert ReadModelFiles(base).current() == target, "another process finds it too"
        seen.append(target)
        present = {p.name for p in tmp_path.iterdir()} - {"readmodels.db.current"}
        kept = {p.name for p in seen[-2:]} | {f"{p.name}-wal" for p in seen[-2:] if p != base}
        assert present == kept, "the file replaced stays (someone may be opening it), older ones go"


def test_an_engine_follows_the_swap_and_a_write_caught_by_it_is_done_again_there(tmp_path: Path) -> None:
    base = tmp_path / "readmodels.db"
    engine = make_engine(f"sqlite:///{base}")
    files = FILES[engine]
    probe.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(probe.insert().values(id=1, n=0))
    target = files.next()
    other = make_engine(f"sqlite:///{target}")
    probe.metadata.create_all(other)
    with other.begin() as conn:
        conn.execute(probe.insert().values(id=1, n=100))
    other.dispose()
    with engine.connect() as conn:  # a pooled connection to the file about to be replaced
        assert conn.execute(select(probe.c.n)).scalar_one() == 0
    calls = []

    def change(conn) -> None:  # type: ignore[no-untyped-def]
        conn.execute(probe.update().values(n=probe.c.n + 1))
        if not calls:
            files.swap_to(target)  # the swap happens while this write waits to commit
        calls.append(1)

    written(engine, change)
    assert len(calls) == 2, "rolled back on the replaced file, done again on the current one"
    with engine.connect() as conn:
        assert conn.execute(select(probe.c.n)).scalar_one() == 101
    engine.dispose()
    with closing(sqlite3.connect(base)) as replaced:
        assert replaced.execute("SELECT n FROM probe").fetchone() == (0,), "nothing left in the replaced file"


def test_a_rebuild_beside_read_models_in_the_stores_own_file_is_refused(tmp_path: Path) -> None:
    """It would swap the read models into a file of their own and, a swap
    later, remove the file they shared: the event store's."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url, AESCipher.create_key(32))
    engine = make_engine(url)
    with pytest.raises(RuntimeError, match="share the event store's SQLite file"):
        rebuild_live(store, engine, projections(SlaPolicy.parse(DEFAULT_POLICY.read_text()), UTC_ZONE))
    assert sorted(p.name for p in tmp_path.iterdir() if ".gen" in p.name or p.name.endswith(".current")) == []
    engine.dispose()
    store.engine.dispose()


def test_a_rebuild_that_fails_leaves_the_live_file_in_use_and_nothing_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import infra.store.rebuild as rebuilding

    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}", AESCipher.create_key(32))
    record_complaints(store, 5)
    engine = make_engine(f"sqlite:///{tmp_path / 'readmodels.db'}")
    chosen = projections(SlaPolicy.parse(DEFAULT_POLICY.read_text()), UTC_ZONE)
    rebuild_live(store, engine, chosen)
    in_use = FILES[engine].current()
    monkeypatch.setattr(rebuilding, "APPLY_APART_FROM", 0)  # a second process, which cannot open the store:
    store.opened_with = (f"sqlite:///{tmp_path / 'missing' / 'events.db'}", None)
    with pytest.raises(RuntimeError, match="second process failed"):
        rebuild_live(store, engine, chosen)
    assert FILES[engine].current() == in_use
    assert sorted(p.name for p in tmp_path.glob("readmodels.db*") if not p.name.endswith(("-wal", "-shm"))) \
        == ["readmodels.db", "readmodels.db.current", "readmodels.db.gen2", "readmodels.db.rebuilding",
            "readmodels.db.writers"]
    engine.dispose()
    store.engine.dispose()


def test_the_swap_takes_its_turn_after_a_writer_of_another_process(tmp_path: Path) -> None:
    """The swap holds the live file's write lock while it moves the pointer;
    it takes the writers' file lock first, as every writer does, instead of
    polling SQLite's lock behind them."""
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}", AESCipher.create_key(32))
    record_complaints(store, 5)
    url = f"sqlite:///{tmp_path / 'readmodels.db'}"
    engine, other = make_engine(url), make_engine(url)  # two engines, as two processes
    before = FILES[engine].current()
    holding, seen = threading.Event(), []

    def other_process() -> None:
        with FILES[other].writers:  # the file lock alone, as a writer about to begin
            holding.set()
            time.sleep(1.0)  # longer than the whole rebuild of five complaints takes here
            seen.append(FILES[other].current())

    thread = threading.Thread(target=other_process)
    thread.start()
    try:
        assert holding.wait(5)
        rebuild_live(store, engine, projections(SlaPolicy.parse(DEFAULT_POLICY.read_text()), UTC_ZONE))
        assert seen == [before], "the pointer moved while another process held the writers' lock"
        assert FILES[engine].current() != before
    finally:
        thread.join()
        engine.dispose()
        other.dispose()
        store.engine.dispose()
