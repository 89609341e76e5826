"""Leases with an epoch (`infra/cluster/leases.py`), on the database's own
clock: one holder at a time, a takeover once a lease runs out, and a fence
that refuses every write of a holder whose lease was taken, in the write's
own transaction."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from infra.cluster.leases import LeaseLost, Leases
from infra.store.database import make_engine
from projections.base import Fenced, apply_batch, create_tables, marks_of
from projections.case_summary import CaseSummary, case_summary
from tests.conftest import POSTGRES_URL, _postgres_schema_url


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'readmodels.db'}"
        made = make_engine(url)
        yield made
        made.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need TICKETING_TEST_POSTGRES_URL (CI sets it)")
    for url in _postgres_schema_url():
        made = make_engine(url)
        yield made
        made.dispose()


def test_one_holder_at_a_time_and_each_new_holder_a_higher_epoch(engine: Engine) -> None:
    leases = Leases(engine, seconds=0.5)
    first = leases.acquire("relay", "a/relay")
    assert first is not None and first.epoch == 1
    assert leases.acquire("relay", "b/relay") is None, "held, and not run out"
    assert leases.renew(first)
    time.sleep(0.7)
    second = leases.acquire("relay", "b/relay")
    assert second is not None and second.epoch == 2, "run out: taken, one epoch on"
    assert not leases.renew(first), "the stalled holder wakes up: not its lease any more"
    again = leases.acquire("relay", "b/relay")
    assert again is not None and again.epoch == 3, "the same holder taking it again (its process restarted)"
    [row] = leases.holders()
    assert (row["name"], row["holder"], row["epoch"], row["live"]) == ("relay", "b/relay", 3, True)
    leases.release(again)
    assert leases.acquire("relay", "a/relay") is not None, "released: free at once"


def test_a_write_of_a_holder_whose_lease_was_taken_is_refused_whole(engine: Engine) -> None:
    leases = Leases(engine, seconds=0.3)
    stale = leases.acquire("projections", "a/projections")
    assert stale is not None
    projection = CaseSummary()
    create_tables(engine, projection)
    event = {"id": "00000000-0000-0000-0000-000000000001", "type": "customer.registered", "position": 1,
             "aggregate_type": "customer", "aggregate_id": "00000000-0000-0000-0000-0000000000c1",
             "aggregate_version": 1, "occurred_at": "2026-11-25T01:00:00.000000Z",
             "actor": {"id": "agent-1", "role": "agent"}, "correlation_id": "00000000-0000-0000-0000-000000000002",
             "causation_id": None, "schema_version": 1, "data": {"tier": "basic", "region": "华东"}}
    apply_batch(engine, [projection], [event], 1, leases.fence(stale))
    time.sleep(0.5)
    fresh = leases.acquire("projections", "b/projections")
    assert fresh is not None
    later = event | {"position": 2, "id": "00000000-0000-0000-0000-000000000003",
                     "aggregate_id": "00000000-0000-0000-0000-0000000000c2"}
    with pytest.raises(LeaseLost) as refused:
        apply_batch(engine, [projection], [later], 2, leases.fence(stale))
    assert isinstance(refused.value, Fenced) and "b/projections at epoch 2" in str(refused.value)
    assert marks_of(engine, projection.name)[0] == 1, "its tracking did not move"
    apply_batch(engine, [projection], [later], 2, leases.fence(fresh))
    assert marks_of(engine, projection.name)[0] == 2
    with engine.connect() as conn:
        assert conn.execute(select(case_summary)).all() == [], "customers are not cases"
