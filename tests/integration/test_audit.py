"""Tamper evidence: the store's hash chain, its anchors outside the database,
and `ticketing audit verify` naming the first event altered, removed or
inserted, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, select, update

from contracts.catalog import EVENT_STREAM
from infra.bootstrap import Runtime
from infra.bus.anchors import read_anchors
from infra.settings import Settings
from infra.store.chain import GENESIS, event_chain, link
from infra.store.verify import verify
from tests.conftest import Client, FakeClock, complaint_data, customer_data, wait_for

pytestmark = pytest.mark.anyio


async def history(client: Client, clock: FakeClock, cases: int = 3) -> list[str]:
    customer = (await client.command("customer", "register", customer_data()))["aggregate_id"]
    found = []
    for _ in range(cases):
        case = (await client.command("complaint", "register", complaint_data(customer_id=customer)))["aggregate_id"]
        clock.advance(minutes=5)
        await client.command("complaint", "acknowledge", {}, aggregate_id=case)
        found.append(case)
    return found


def state_of(runtime: Runtime, position: int) -> bytes:
    table = runtime.store.events_table
    with runtime.store.engine.connect() as conn:
        return bytes(conn.execute(select(table.c.state).where(table.c.id == position)).scalar_one())


def rewrite(runtime: Runtime, position: int, state: bytes) -> None:
    table = runtime.store.events_table
    with runtime.store.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == position).values(state=state))


async def test_a_clean_store_verifies_and_the_bus_carries_the_chain(runtime: Runtime, client: Client,
                                                                    clock: FakeClock) -> None:
    await history(client, clock)
    head = runtime.store.max_position()
    verdict = verify(runtime.store, [])
    assert verdict.intact and verdict.events == verdict.intact_to == head == 7, verdict.summary()

    async def relayed() -> Any:
        info = await runtime.js.stream_info(EVENT_STREAM)
        return info.state.messages == head
    await wait_for(relayed)
    envelopes = [orjson.loads((await runtime.js.get_msg(EVENT_STREAM, seq=seq)).data) for seq in range(1, head + 1)]
    assert envelopes[0]["previous_hash"] == GENESIS
    for before, after in zip(envelopes, envelopes[1:], strict=False):
        assert after["previous_hash"] == before["hash"]
    assert envelopes[-1]["hash"] == verdict.head_hash


async def test_one_byte_altered_is_named(runtime: Runtime, client: Client, clock: FakeClock) -> None:
    cases = await history(client, clock)
    state = bytearray(state_of(runtime, 4))
    state[len(state) // 2] ^= 1
    rewrite(runtime, 4, bytes(state))
    verdict = verify(runtime.store, [])
    assert not verdict.intact and verdict.intact_to == 3
    finding = verdict.finding
    assert finding is not None
    assert (finding.position, finding.check, finding.case_id, finding.event_type) == \
        (4, "altered", cases[1], "Complaint.Registered")
    assert "position 4" in verdict.summary()


async def test_removed_inserted_and_swapped_events_are_named(runtime: Runtime, client: Client,
                                                             clock: FakeClock) -> None:
    await history(client, clock)
    table = runtime.store.events_table
    two, three = state_of(runtime, 2), state_of(runtime, 3)  # swap two events' contents
    rewrite(runtime, 2, three)
    rewrite(runtime, 3, two)
    assert verify(runtime.store, []).finding.position == 2  # type: ignore[union-attr]
    rewrite(runtime, 2, two)
    rewrite(runtime, 3, three)
    assert verify(runtime.store, []).intact

    with runtime.store.engine.begin() as conn:  # an event removed, its link with it
        row = conn.execute(select(table).where(table.c.id == 5)).one()
        conn.execute(delete(table).where(table.c.id == 5))
        conn.execute(delete(event_chain).where(event_chain.c.position == 5))
    finding = verify(runtime.store, []).finding
    assert finding is not None and (finding.position, finding.check) == (5, "removed")

    with runtime.store.engine.begin() as conn:  # put back without its link: inserted
        conn.execute(table.insert().values(**row._mapping))
    finding = verify(runtime.store, []).finding
    assert finding is not None and (finding.position, finding.check) == (5, "inserted")


async def test_a_chain_rewritten_consistently_is_caught_by_the_anchors(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    await history(client, clock)
    assert runtime.worker is not None
    await runtime.worker.anchoring.publish()
    anchors = await read_anchors(runtime.js)
    assert [a.position for a in anchors] == [7]

    # Someone with write access alters event 2 (a complaint's channel) and rewrites every link after it.
    state = state_of(runtime, 2).replace(b"wechat", b"letter")
    assert state != state_of(runtime, 2)
    rewrite(runtime, 2, state)
    table = runtime.store.events_table
    with runtime.store.engine.begin() as conn:
        previous = conn.execute(select(event_chain.c.hash).where(event_chain.c.position == 1)).scalar_one()
        for row in conn.execute(select(table).where(table.c.id >= 2).order_by(table.c.id)).all():
            current = link(previous, row.id, row.originator_id, row.originator_version, row.topic, bytes(row.state))
            conn.execute(update(event_chain).where(event_chain.c.position == row.id)
                         .values(hash=current, previous_hash=previous))
            previous = current
    assert verify(runtime.store, []).intact, "consistent without the anchors"
    finding = verify(runtime.store, anchors, runtime.signer.public_key).finding
    assert finding is not None and (finding.position, finding.check) == (2, "anchor"), \
        "named at the first event rewritten, not at the anchor after it"

    # Events cut off the end after an anchor: the anchor says so too.
    with runtime.store.engine.begin() as conn:
        conn.execute(delete(table).where(table.c.id == 7))
        conn.execute(delete(event_chain).where(event_chain.c.position == 7))
    rewrite(runtime, 2, state.replace(b"letter", b"wechat"))
    finding = verify(runtime.store, anchors, runtime.signer.public_key).finding
    assert finding is not None and finding.check in ("altered", "removed")


async def test_an_older_store_is_chained_once_and_the_cli_verifies_it(
        runtime: Runtime, client: Client, clock: FakeClock, settings: Settings) -> None:
    await history(client, clock)
    with runtime.store.engine.begin() as conn:
        conn.execute(delete(event_chain))  # as a store written before the chain existed
    assert verify(runtime.store, []).finding.check == "inserted"  # type: ignore[union-attr]
    assert runtime.store.chain_unchained() == 7
    assert runtime.store.chain_unchained() == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env |= {"TICKETING_DATA_DIR": str(settings.data_dir), "TICKETING_NATS_URL": runtime.nats_url, "COLUMNS": "200"}
    if settings.database_url:
        env["TICKETING_DATABASE_URL"] = settings.database_url
    ticketing = str(Path(sys.executable).parent / "ticketing")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ticketing, "audit", *args], env=env, capture_output=True, text=True, timeout=60,
                              check=False)
    clean = await asyncio.to_thread(run, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "7 events, chain intact up to position 7" in clean.stdout
    rewrite(runtime, 6, state_of(runtime, 6) + b" ")
    tampered = await asyncio.to_thread(run, "verify", "--json")
    assert tampered.returncode == 1
    verdict = orjson.loads(tampered.stdout)
    assert verdict["finding"]["position"] == 6 and verdict["finding"]["check"] == "altered"


async def test_auditors_ask_over_the_bus_and_read_the_anchors(runtime: Runtime, client: Client,
                                                              clock: FakeClock) -> None:
    from tests.conftest import refused_by_nats

    await history(client, clock, cases=1)
    assert runtime.worker is not None
    await runtime.worker.anchoring.publish()
    reply = await client.query("audit.verify", {}, role="auditor")
    assert reply["intact"] and reply["events"] == 3 and reply["anchored_position"] == 3, reply
    assert refused_by_nats(await client.query("audit.verify", {}, role="agent"))
    auditor = await client.as_role("auditor")
    assert [a.position for a in await read_anchors(auditor.jetstream(domain="ticketing"))] == [3]
    rewrite(runtime, 2, state_of(runtime, 2) + b" ")
    reply = await client.query("audit.verify", {}, role="auditor")
    assert not reply["intact"] and reply["finding"]["position"] == 2 and reply["finding"]["check"] == "altered"


async def test_a_case_bundle_round_trips_and_one_changed_character_fails_and_says_where(
        runtime: Runtime, client: Client, clock: FakeClock, settings: Settings, tmp_path: Path) -> None:
    from infra.store.bundle import check, export

    cases = await history(client, clock, cases=2)
    assert runtime.worker is not None
    await runtime.worker.anchoring.publish()
    key = runtime.signer.public_key
    bundle = export(runtime.store, __import__("uuid").UUID(cases[0]), await read_anchors(runtime.js), runtime.signer)
    assert [e["position"] for e in bundle["events"]] == [2, 3]
    assert bundle["anchor"]["position"] == 5 and [lk["position"] for lk in bundle["links"]] == [2, 3, 4, 5]
    assert check(orjson.loads(orjson.dumps(bundle)), key) == (True, check(bundle, key)[1])
    assert check(bundle, key)[0] and "anchor at position 5" in check(bundle, key)[1]

    text = orjson.dumps(bundle).decode()
    for original, changed, where in [
            ("wechat", "wechaT", "event at position 2"),  # the envelope's data
            (bundle["links"][2]["hash"][:12], "0" * 12, "position"),  # a link between
            (bundle["anchor"]["hash"], "f" * 64, "anchor")]:
        assert original in text
        intact, said = check(orjson.loads(text.replace(original, changed, 1)), key)
        assert not intact and where in said, said
    stored = bundle["events"][1]["stored"]["state"]
    tampered = orjson.loads(text.replace(stored, stored[:-4] + ("AAAA" if not stored.endswith("AAAA") else "BBBB")))
    intact, said = check(tampered, key)
    assert not intact and "position 3" in said, said

    # The same from the command line, offline.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env |= {"TICKETING_DATA_DIR": str(settings.data_dir), "TICKETING_NATS_URL": runtime.nats_url}
    if settings.database_url:
        env["TICKETING_DATABASE_URL"] = settings.database_url
    ticketing = str(Path(sys.executable).parent / "ticketing")
    out = tmp_path / "case.json"

    def run(*args: str, environment: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ticketing, "audit", *args], env=environment, capture_output=True, text=True,
                              timeout=60, check=False)
    exported = await asyncio.to_thread(run, "export", cases[1], "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    offline = {k: v for k, v in env.items() if not k.startswith("TICKETING_")}
    checked = await asyncio.to_thread(run, "check", str(out), "--key", key, environment=offline)
    assert checked.returncode == 0 and "intact" in checked.stdout, checked.stdout + checked.stderr
    out.write_text(out.read_text().replace("wechat", "wechaT", 1))
    failed = await asyncio.to_thread(run, "check", str(out), "--key", key, environment=offline)
    assert failed.returncode == 1 and "NOT intact" in failed.stdout
