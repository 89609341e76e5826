"""Attacks on the store by someone who can write the database (sqlite3 on
the data directory, psql): rows put where the chain did not look, a state of
another type, the end cut off with serve stopped; and what the data
directory shows to other local users."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import delete, insert, select, text

from infra.bootstrap import Runtime
from infra.bus.anchors import ANCHOR_FILE
from infra.settings import Settings
from infra.store.chain import event_chain
from infra.store.verify import verify
from tests.conftest import Client, FakeClock, customer_data

pytestmark = pytest.mark.anyio


async def flagged_customer(client: Client) -> tuple[str, int]:
    """A customer with a mark, and the position of its `flagged` event."""
    customer = (await client.command("customer", "register", customer_data()))["aggregate_id"]
    reply = await client.command("customer", "flag", {"mark": "malicious", "reason": "反复恶意投诉"},
                                 aggregate_id=customer, role="supervisor")
    assert reply["ok"], reply
    return customer, reply["version"]


def copy_row(runtime: Runtime, position: int, to_position: int, version: int) -> None:
    """An existing event stored again at `to_position` with `version`, as sqlite3 or psql would."""
    table = runtime.store.events_table
    with runtime.store.engine.begin() as conn:
        row = conn.execute(select(table).where(table.c.id == position)).one()
        conn.execute(insert(table).values(**(row._asdict() | {"id": to_position, "originator_version": version})))


async def test_a_row_at_position_zero_or_below_is_named(runtime: Runtime, client: Client) -> None:
    """`insert ... select -1, ...` of a `customer.flagged`: verify said intact,
    while customer.get showed the extra version and case.history listed it."""
    customer, version = await flagged_customer(client)
    flagged = runtime.store.max_position()
    for position in (-1, 0):
        copy_row(runtime, flagged, position, version + 1 - position)
        verdict = verify(runtime.store, [], runtime.signer.public_key)
        assert verdict.finding is not None, position
        assert (verdict.finding.position, verdict.finding.check) == (min(-1, position), "inserted"), verdict.summary()
    reply = await client.query("audit.verify", {}, role="auditor")
    assert not reply["intact"] and reply["finding"]["position"] == -1


async def test_a_row_put_in_beyond_the_head_is_not_chained_at_the_next_start(
        runtime: Runtime, client: Client) -> None:
    """With serve stopped, a row after the last: serve's start chained it as an
    'older store' and verify then vouched for it."""
    _, version = await flagged_customer(client)
    head = runtime.store.max_position()
    copy_row(runtime, head, head + 1, version + 1)
    assert runtime.store.chain_unchained() == 0
    finding = verify(runtime.store, [], runtime.signer.public_key).finding
    assert finding is not None and (finding.position, finding.check) == (head + 1, "inserted")


async def test_a_state_stored_as_text_is_named_not_a_traceback(runtime: Runtime, client: Client) -> None:
    if runtime.settings.database_url:
        pytest.skip("PostgreSQL's bytea column takes no text: SQLite's dynamic types are what let this in")
    await flagged_customer(client)
    with runtime.store.engine.begin() as conn:
        conn.execute(text("UPDATE ticketing_events SET state = CAST(state AS TEXT) WHERE id = 2"))
    finding = verify(runtime.store, [], runtime.signer.public_key).finding
    assert finding is not None and (finding.position, finding.check) == (2, "altered")
    assert "str" in finding.detail


def audit(settings: Settings, *args: str, nats_url: str = "nats://127.0.0.1:1") -> subprocess.CompletedProcess[str]:
    """`ticketing audit ...` as an operator runs it with serve stopped (its NATS unreachable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env |= {"TICKETING_DATA_DIR": str(settings.data_dir), "TICKETING_NATS_URL": nats_url, "COLUMNS": "200"}
    if settings.database_url:
        env["TICKETING_DATABASE_URL"] = settings.database_url
    return subprocess.run([str(Path(sys.executable).parent / "ticketing"), "audit", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_offline_verify_holds_the_store_to_the_kept_anchors(
        runtime: Runtime, client: Client, settings: Settings, tmp_path: Path) -> None:
    """With serve stopped, verify said intact without the anchors, so a store
    cut short at its end passed."""
    await flagged_customer(client)
    await client.register_complaint()
    assert runtime.worker is not None and runtime.worker.anchoring is not None
    await runtime.worker.anchoring.publish()
    head = runtime.store.max_position()
    assert (settings.data_dir / ANCHOR_FILE).exists()

    clean = await asyncio.to_thread(audit, settings, "verify", "--strict")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"chain intact up to position {head}" in clean.stdout and "read from" in clean.stdout

    kept = tmp_path / "anchors.jsonl"
    exported = await asyncio.to_thread(audit, settings, "anchors", "--out", str(kept), nats_url=runtime.nats_url)
    assert exported.returncode == 0 and kept.exists(), exported.stdout + exported.stderr

    # The end cut off, chain and all: the kept anchors vouch for more than the store holds.
    table = runtime.store.events_table
    with runtime.store.engine.begin() as conn:
        conn.execute(delete(table).where(table.c.id == head))
        conn.execute(delete(event_chain).where(event_chain.c.position == head))
    cut = await asyncio.to_thread(audit, settings, "verify", "--json")
    assert cut.returncode == 1
    assert orjson.loads(cut.stdout)["finding"]["check"] == "removed"

    # The data directory's copy gone too: an anchor file kept apart still holds.
    (settings.data_dir / ANCHOR_FILE).unlink()
    unanchored = await asyncio.to_thread(audit, settings, "verify")
    assert unanchored.returncode == 0 and "not covered by a signed anchor" in unanchored.stdout
    strict = await asyncio.to_thread(audit, settings, "verify", "--strict")
    assert strict.returncode == 1, "nothing vouches for the store: --strict says so"
    apart = await asyncio.to_thread(audit, settings, "verify", "--anchors", str(kept))
    assert apart.returncode == 1 and "removed" in apart.stdout


async def test_events_after_the_last_anchor_are_said_unproven(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    await flagged_customer(client)
    assert runtime.worker is not None and runtime.worker.anchoring is not None
    await runtime.worker.anchoring.publish()
    anchored = runtime.store.max_position()
    await client.register_complaint()
    reply = await client.query("audit.verify", {}, role="auditor")
    assert reply["intact"] and reply["unproven_after"] == anchored
    assert any("not covered by a signed anchor" in note for note in reply["notes"])


async def test_the_data_directory_is_its_owners_only(runtime: Runtime, client: Client) -> None:
    """events.db and readmodels.db were created 0644."""
    await client.register_complaint()
    data = runtime.settings.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    if runtime.settings.database_url:
        return
    for name in ("events.db", "events.db-wal", "readmodels.db", "readmodels.db-wal", "auth/audit.nk"):
        path = data / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
