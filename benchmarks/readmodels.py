"""Read models at size: a store grown through the domain (customers and
complaints through the whole loop, spread over the months) to each size,
then every projection rebuilt in one pass, then each query's read timed,
on SQLite, beside a raw read of the stored rows in the same process.

    .venv/bin/python benchmarks/readmodels.py [--sizes 10000,100000,1000000]

Queries are timed as the responders run them (the read-model functions
behind them, no bus in between): p50 and p99 of 50 calls each. Then the
read models are rebuilt beside themselves (blue/green: the swap's wait is
timed); the store's and the read models' size on disk, and peak memory.
Then `ticketing serve` runs on that store (its relay puts the history on a
new stream first; the read models skip what they hold): command replies
timed from outside (16 senders), then its processes' CPU while idle (serve, the worker's two).
What that run adds (2,000 open complaints, the callbacks its policy
schedules for the seeded cases) stays in the store for the next size.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from eventsourcing.cipher import AESCipher
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit import START, seed  # noqa: E402
from bench import Serve, bench_users, children, connect, cpu_seconds, part_of, percentile  # noqa: E402

from handlers.history import case_history  # noqa: E402
from handlers.staff import assessment  # noqa: E402
from infra.auth.directory import ensure_local  # noqa: E402
from infra.bus.nats_server import EmbeddedNats  # noqa: E402
from infra.config_files import (
    DEFAULT_ASSESSMENT_RULES,  # noqa: E402
    DEFAULT_POLICY,  # noqa: E402
)
from infra.runtime.worker import projections  # noqa: E402
from infra.store.database import ReadModelFiles, make_engine, remove  # noqa: E402
from infra.store.event_store import EventStore  # noqa: E402
from infra.store.rebuild import rebuild_projections
from infra.store.rebuild_live import rebuild_live  # noqa: E402
from projections import figures  # noqa: E402
from projections.danger_list import ledger_metadata, listed  # noqa: E402
from projections.sla_reads import open_limits  # noqa: E402
from ticketing import periods  # noqa: E402
from ticketing.assessment import AssessmentRules  # noqa: E402
from ticketing.sla.policy import SlaPolicy  # noqa: E402

ZONE = ZoneInfo("Asia/Shanghai")
RULES = AssessmentRules.parse(DEFAULT_ASSESSMENT_RULES.read_text(encoding="utf-8"))


def timed(call: Callable[[], Any], times: int = 50) -> tuple[float, float]:
    spent = []
    for _ in range(times):
        began = time.perf_counter()
        call()
        spent.append((time.perf_counter() - began) * 1000)
    spent.sort()
    return statistics.median(spent), spent[int(len(spent) * 0.99) - 1]


def queries(conn: Any, store: EventStore, now: datetime, quarter: periods.Period, case_id: uuid.UUID,
            ) -> list[tuple[str, tuple[float, float]]]:
    return [(name, timed(call)) for name, call in (
        ("dashboard", lambda: figures.dashboard(conn, now, ZONE)),
        ("report (quarter)", lambda: figures.report(conn, quarter, ZONE)),
        ("sla.open (100)", lambda: open_limits(conn, limit=100)),
        ("customers.dangerous", lambda: listed(conn, limit=100)),
        ("case.history", lambda: case_history(store, case_id, now)),
        ("staff.assessment", lambda: assessment(conn, RULES, quarter, ZONE)))]


def megabytes(*paths: Path) -> float:
    return sum(p.stat().st_size for path in paths for p in (path, path.with_name(path.name + "-wal")) if p.exists()
               ) / 2**20


def peak_rss_mb() -> tuple[float, float]:
    """The highest resident memory of this process and of its largest child so far (MB)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def at_size(store: EventStore, data_dir: Path, policy: SlaPolicy, size: int) -> None:
    """The store grown to `size`; the rebuild in place and beside live, the queries, disk and memory."""
    seed(store, size)
    total = store.max_position()
    table = store.events_table
    began = time.perf_counter()
    with store.engine.connect() as conn:
        sum(1 for _ in conn.execute(select(table.c.id, table.c.topic, table.c.state)))
    raw = total / (time.perf_counter() - began)
    readmodels = data_dir / "readmodels.db"
    for leftover in (readmodels, *data_dir.glob("readmodels.db.gen*")):  # a smaller size's, and its rebuilds'
        remove(leftover)
    (data_dir / "readmodels.db.current").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{readmodels}")
    ledger_metadata.create_all(engine)
    began = time.perf_counter()
    rebuild_projections(store, engine, projections(policy, ZONE))
    rebuilt = total / (time.perf_counter() - began)
    with store.engine.connect() as conn:
        last_case = conn.execute(select(table.c.originator_id).where(
            table.c.topic.like("%Complaint.Registered")).order_by(table.c.id.desc()).limit(1)).scalar()
    now = START + timedelta(minutes=11 * total // 7)
    quarter = periods.parse(f"{now.year}-Q{(now.month - 1) // 3 + 1}", ZONE)
    print(f"{total:>9,} events: raw read {raw:9,.0f} rows/s; rebuild of every projection "
          f"{rebuilt:7,.0f} events/s ({rebuilt / raw:5.1%} of the raw read)")
    stamps: list[float] = []
    began = time.perf_counter()
    rebuild_live(store, engine, projections(policy, ZONE),
                 lambda done, total: stamps.append(time.perf_counter()))
    print(f"    beside the live models {total / (time.perf_counter() - began):7,.0f} events/s; the swap held "
          f"the live models {1000 * (stamps[-1] - stamps[-2]):,.0f} ms")
    with engine.connect() as conn:
        shown = figures.dashboard(conn, now, ZONE)
        said = {"dashboard": f"   ({shown['open_total']:,} cases open, {shown['limits_breached']:,} limits late: "
                             f"each count walks what it counts)"}
        for name, (p50, p99) in queries(conn, store, now, quarter, uuid.UUID(str(last_case))):
            print(f"    {name:22s} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms{said.get(name, '')}")
    engine.dispose()
    own, child = peak_rss_mb()
    in_use = ReadModelFiles(readmodels).current()
    print(f"    disk: store {megabytes(data_dir / 'events.db'):,.0f} MB, read models {megabytes(in_use):,.0f} MB; "
          f"peak memory so far: this process {own:,.0f} MB (seeding included), a rebuild's child {child:,.0f} MB")


async def live_at_size(store: EventStore, data_dir: Path, key: str, size: int) -> None:
    """`ticketing serve` on the grown store: how long until the stream holds
    the history and the read models have skipped over it, command replies
    under 16 senders, then each process's CPU over 10 idle seconds."""
    (data_dir / "cipher.key").write_text(key)
    known = (data_dir / "auth" / "bench-agent.nk").exists()  # a smaller size's run added them
    users = ensure_local(data_dir / "auth")[0] if known else bench_users(data_dir)
    server = EmbeddedNats.start(data_dir.parent / f"nats-{size}", users, preferred_port=0)
    serve = Serve(data_dir, server.url)
    try:
        began = time.perf_counter()
        serve.wait_ready()
        head = store.max_position()
        system = await connect(server.url, data_dir, "system")
        js = system.jetstream()
        engine = make_engine(f"sqlite:///{data_dir / 'readmodels.db'}")
        while True:
            with engine.connect() as conn:
                consumed = min(conn.exec_driver_sql("select stream_sequence from projection_tracking").scalars())
            if (await js.stream_info("TICKETING_EVENTS")).state.messages >= head and consumed >= head:
                break
            await asyncio.sleep(0.2)
        ready = time.perf_counter() - began
        await system.close()
        engine.dispose()
        nc = await connect(server.url, data_dir, "bench-agent")
        registered = orjson.loads((await nc.request("ticketing.v1.commands.customer.register", orjson.dumps({
            "command_id": str(uuid.uuid4()), "data": {"name": "韩梅梅", "phone": "+86 137 0000 0000", "tier": "basic",
                                                    "region": "华北"}}), timeout=30)).data)
        assert registered.get("ok"), registered
        customer = registered["aggregate_id"]
        spent: list[float] = []

        async def sender(count: int) -> None:
            for _ in range(count):
                sent = time.perf_counter()
                reply = await nc.request("ticketing.v1.commands.complaint.register", orjson.dumps({
                    "command_id": str(uuid.uuid4()), "data": {"customer_id": customer, "channel": "phone",
                                                            "category": "delivery", "priority": "low",
                                                            "description": "at size"}}), timeout=30)
                spent.append(1000 * (time.perf_counter() - sent))
                assert orjson.loads(reply.data).get("ok"), reply.data
        await asyncio.gather(*(sender(125) for _ in range(16)))
        await nc.close()
        # Quiet: the policies react to the history as it reaches the stream
        # (the seeded cases' callbacks, say): idle once the store stops growing.
        written, still = store.max_position(), 0
        while still < 5:
            await asyncio.sleep(1.0)
            now_at = store.max_position()
            still, written = (still + 1, written) if now_at == written else (0, now_at)
        pids = {part_of(pid): pid for pid in [serve.process.pid, *children(serve.process.pid)]}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        await asyncio.sleep(10.0)
        idle = {name: 100 * (cpu_seconds(pid) - before[name]) / 10.0 for name, pid in pids.items()}
        print(f"    serve on this store: history on the stream and skipped by the read models in {ready:.1f} s "
              f"(its policies then wrote {written - head - 2001:,} events reacting to it); "
              f"commands (16 senders) p50 {statistics.median(spent):.1f} ms p99 {percentile(spent, 0.99):.1f} ms; "
              f"idle CPU " + ", ".join(f"{name} {share:.1f} %" for name, share in idle.items()) + " of a core")
    finally:
        serve.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--no-serve", action="store_true",
                        help="skip running serve on each store (at 1M its relay puts the history on a new stream "
                             "first: most of an hour here)")
    args = parser.parse_args()
    policy = SlaPolicy.parse(DEFAULT_POLICY.read_text())
    with tempfile.TemporaryDirectory(prefix="ticketing-readmodels-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        key = AESCipher.create_key(32)
        store = EventStore(f"sqlite:///{data_dir / 'events.db'}", key)
        for size in (int(s) for s in args.sizes.split(",")):
            at_size(store, data_dir, policy, size)
            if not args.no_serve:
                asyncio.run(live_at_size(store, data_dir, key, size))
    print(f"machine: 2 cores here; {datetime.now(UTC):%Y-%m-%d}")


if __name__ == "__main__":
    main()
