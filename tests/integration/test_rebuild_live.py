"""A rebuild beside the live models (blue/green): while it builds, the live
models keep serving every query whole, new events keep being projected and
an SLA limit that falls due is alerted on time; then the rebuilt models
take their place in one step, caught up with the store."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, inspect, select

from infra.bootstrap import Runtime
from infra.config_files import load_sla_policy
from infra.runtime.worker import projections
from infra.settings import Settings
from infra.store.database import FILES, make_engine
from infra.store.rebuild import rebuild_projections
from infra.store.rebuild_live import rebuild_live
from projections.activity import activity, figure_day
from projections.base import utc
from projections.case_summary import case_summary
from projections.sla_tables import sla_clock
from projections.writing import written
from tests.conftest import Client, FakeClock, wait_for
from tests.integration.test_sla import Alerts

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The SLA policy shipped with the product: the first response within 30 minutes."""
    return settings.model_copy(update={"sla_policy": None})


@pytest.fixture
async def alerts(client: Client):  # type: ignore[no-untyped-def]
    seen = Alerts()
    sub = await seen.listen(client, "ticketing.v1.alerts.sla.>")
    yield seen
    await sub.unsubscribe()


def rows(engine, table) -> list[tuple]:  # type: ignore[no-untyped-def]
    """The table's rows, times in UTC whichever database holds them."""
    with engine.connect() as conn:
        return sorted(tuple(utc(v) if isinstance(v, datetime) else v for v in r) for r in conn.execute(select(table)))


def count(engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


async def test_a_rebuild_beside_the_live_models_swaps_without_a_gap(
        runtime: Runtime, client: Client, clock: FakeClock, settings: Settings, alerts: Alerts) -> None:
    assert runtime.worker is not None
    early = [(await client.register_complaint(priority="normal"))["aggregate_id"] for _ in range(4)]
    await runtime.worker.sla.tick()
    await wait_for(lambda: count(runtime.readmodels, case_summary) == len(early), timeout=5)
    served = len(early)
    chosen = projections(load_sla_policy(settings), ZoneInfo(settings.timezone))
    building, go_on = threading.Event(), threading.Event()

    def progress(done: int, total: int) -> None:
        if not building.is_set():  # hold the build half-way, to look at the live side meanwhile
            building.set()
            go_on.wait(30)

    files = FILES.get(runtime.readmodels)  # SQLite: the file the read models are in (PostgreSQL: schemas)
    live_file = files.current() if files else None
    rebuilding = asyncio.create_task(asyncio.to_thread(rebuild_live, runtime.store, runtime.readmodels, chosen,
                                                      progress))
    await wait_for(building.is_set)
    try:
        assert count(runtime.readmodels, case_summary) == served, "the live model serves whole while it builds"
        late = (await client.register_complaint(priority="normal"))["aggregate_id"]
        await wait_for(lambda: count(runtime.readmodels, case_summary) == served + 1, timeout=5)
        clock.advance(minutes=31)  # the first response of every complaint is due (30 minutes)
        await runtime.worker.sla.tick()
        await wait_for(lambda: all(("sla.breached", "first_response", 1) in alerts.of(c) for c in [*early, late]),
                       timeout=5)
    finally:
        go_on.set()
    position = await rebuilding
    assert position == runtime.store.max_position()
    if files:
        assert files.current() != live_file and files.current().exists(), "the rebuilt file is in use"

    fresh = make_engine(f"sqlite:///{settings.data_dir / 'fresh.db'}")
    rebuild_projections(runtime.store, fresh, projections(load_sla_policy(settings), ZoneInfo(settings.timezone)))
    for table in (case_summary, activity, figure_day):
        assert rows(runtime.readmodels, table) == rows(fresh, table), table.name
    live_clocks = {r[0]: r[:-1] for r in rows(runtime.readmodels, sla_clock)}
    fresh_clocks = {r[0]: r[:-1] for r in rows(fresh, sla_clock)}  # but `recorded`: the monitor's note
    assert live_clocks == fresh_clocks
    fresh.dispose()
    for projection in chosen:  # the swapped-in tables keep every index the code defines, by its name
        for table in projection.metadata.sorted_tables:
            held = {index["name"] for index in inspect(runtime.readmodels).get_indexes(table.name)}
            assert held == {index.name for index in table.indexes}, table.name

    after = (await client.register_complaint(priority="normal"))["aggregate_id"]
    await wait_for(lambda: count(runtime.readmodels, case_summary) == served + 2, timeout=5), \
        f"the live consumer goes on after the swap ({after})"


async def test_a_write_that_waited_for_the_swap_is_not_lost(runtime: Runtime, client: Client,
                                                            settings: Settings) -> None:
    """Another process writing the read models all along (a monitor, say):
    every write it was told succeeded is in the models in use after the
    swap. On SQLite the swap replaces the file: a write let in by the swap's
    commit must not land in the file it replaced."""
    for _ in range(3):
        await client.register_complaint(priority="normal")
    probe = Table("swap_probe", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer))
    other = make_engine(settings.read_model_url)  # its own pool and locks, as another process has
    probe.metadata.create_all(other)
    with other.begin() as conn:
        conn.execute(probe.insert().values(id=1, n=0))
    done, stop = 0, threading.Event()

    def hammer() -> None:
        nonlocal done
        while not stop.is_set():
            written(other, lambda conn: conn.execute(probe.update().values(n=probe.c.n + 1)))
            done += 1

    writer = threading.Thread(target=hammer)
    writer.start()
    try:
        chosen = projections(load_sla_policy(settings), ZoneInfo(settings.timezone))
        for _ in range(2):
            await asyncio.to_thread(rebuild_live, runtime.store, runtime.readmodels, chosen)
    finally:
        stop.set()
        await asyncio.to_thread(writer.join, 30)
    assert done > 0
    for engine in (other, runtime.readmodels):
        with engine.connect() as conn:
            assert conn.execute(select(probe.c.n)).scalar_one() == done, "each write it was told succeeded"
    other.dispose()
