"""Read models at size: a store grown through the domain (customers and
complaints through the whole loop, spread over the months) to each size,
then every projection rebuilt in one pass, then each query's read timed,
on SQLite, beside a raw read of the stored rows in the same process.

    .venv/bin/python benchmarks/readmodels.py [--sizes 10000,100000,1000000]

Queries are timed as the responders run them (the read-model functions
behind them, no bus in between): p50 and p99 of 50 calls each. Then the
read models are rebuilt beside themselves (blue/green: the swap's wait is
timed), and `ticketing serve` runs on the store and its read models (the
events marked published): its idle CPU over 10 s, the reply times of 400
complaint registrations through the bus from 8 senders, its memory, and the
store's and the read models' size on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
from bench import Serve, bench_users, connect, percentile  # noqa: E402

from handlers.queries import case_history  # noqa: E402
from handlers.staff import assessment  # noqa: E402
from infra.bus.nats_server import EmbeddedNats  # noqa: E402
from infra.config_files import (
    DEFAULT_ASSESSMENT_RULES,  # noqa: E402
    DEFAULT_POLICY,  # noqa: E402
)
from infra.runtime.worker import projections  # noqa: E402
from infra.store.database import make_engine  # noqa: E402
from infra.store.event_store import EventStore  # noqa: E402
from infra.store.rebuild import rebuild_live, rebuild_projections  # noqa: E402
from projections import figures  # noqa: E402
from projections.danger import ledger_metadata, listed  # noqa: E402
from projections.sla import open_limits  # noqa: E402
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


def processes(pid: int) -> list[int]:
    """A process and its descendants (serve, its worker)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += processes(int(child))
    return found


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def megabytes(*paths: Path) -> float:
    return sum(p.stat().st_size for path in paths for p in (path, path.with_name(path.name + "-wal")) if p.exists()
               ) / 2**20


async def commands(url: str, data_dir: Path, senders: int, each: int) -> list[float]:
    """Reply times (ms) of complaint registrations from concurrent senders, through the bus."""
    nc = await connect(url, data_dir, "bench-agent")
    spent: list[float] = []

    async def request(subject: str, data: dict[str, Any]) -> dict[str, Any]:
        began = time.perf_counter()
        msg = await nc.request(subject, orjson.dumps({"command_id": str(uuid.uuid4()), "data": data}), timeout=30)
        spent.append(1000 * (time.perf_counter() - began))
        reply = orjson.loads(msg.data)
        assert reply.get("ok"), reply
        return dict(reply)

    async def sender() -> None:
        customer = (await request("ticketing.v1.commands.customer.register", {
            "name": "n", "phone": "1", "tier": "basic", "region": "r"}))["aggregate_id"]
        for _ in range(each):
            await request("ticketing.v1.commands.complaint.register", {
                "customer_id": customer, "channel": "phone", "category": "billing", "priority": "normal",
                "description": "d"})
    await asyncio.gather(*(sender() for _ in range(senders)))
    await nc.close()
    return spent


def at_work(store: EventStore, data_dir: Path, nats_url: str) -> dict[str, float]:
    """`ticketing serve` on this store and its read models: its CPU when idle
    (serve and worker, 10 s), then command reply times and its memory."""
    store.save_relay_position("bus", store.max_position())  # as if the events were all published already
    serve = Serve(data_dir, nats_url, {"TICKETING_TIMEZONE": ZONE.key, "TICKETING_METRICS_PORT": "0"})
    try:
        serve.wait_ready()
        time.sleep(3)
        pids = processes(serve.process.pid)
        began, cpu = time.perf_counter(), cpu_seconds(pids)
        time.sleep(10)
        idle = (cpu_seconds(pids) - cpu) / (time.perf_counter() - began)
        replies = asyncio.run(commands(nats_url, data_dir, 8, 50))
        rss = rss_mb(processes(serve.process.pid))
    finally:
        serve.stop()
    return {"idle": idle, "p50": statistics.median(replies), "p99": percentile(replies, 0.99), "rss": rss}


def at_size(store: EventStore, data_dir: Path, nats_url: str, policy: SlaPolicy, size: int) -> None:
    """The store grown to `size`; the rebuild, the queries, then the product at work on it."""
    seed(store, size)
    total = store.max_position()
    table = store.events_table
    began = time.perf_counter()
    with store.engine.connect() as conn:
        sum(1 for _ in conn.execute(select(table.c.id, table.c.topic, table.c.state)))
    raw = total / (time.perf_counter() - began)
    readmodels = data_dir / "readmodels.db"
    for leftover in (readmodels, *(readmodels.with_name(readmodels.name + s) for s in ("-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
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
    rebuild_live(store, engine, projections(policy, ZONE), data_dir / "scratch.db",
                 lambda done, total: stamps.append(time.perf_counter()))
    print(f"    beside the live models {total / (time.perf_counter() - began):7,.0f} events/s; the swap held "
          f"the live models {1000 * (stamps[-1] - stamps[-2]):,.0f} ms")
    with engine.connect() as conn:
        for name, (p50, p99) in queries(conn, store, now, quarter, uuid.UUID(str(last_case))):
            print(f"    {name:22s} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
    engine.dispose()
    work = at_work(store, data_dir, nats_url)
    print(f"    serve on it: idle CPU {work['idle']:.1%} of a core (serve and worker); complaint.register "
          f"p50 {work['p50']:.1f} ms p99 {work['p99']:.1f} ms (8 senders); memory {work['rss']:,.0f} MB; "
          f"disk: store {megabytes(data_dir / 'events.db'):,.0f} MB, read models {megabytes(readmodels):,.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    policy = SlaPolicy.parse(DEFAULT_POLICY.read_text())
    with tempfile.TemporaryDirectory(prefix="ticketing-readmodels-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        key = AESCipher.create_key(32)
        (data_dir / "cipher.key").write_text(key + "\n")
        store = EventStore(f"sqlite:///{data_dir / 'events.db'}", key)
        nats_server = EmbeddedNats.start(Path(tmp) / "nats", bench_users(data_dir), preferred_port=0)
        try:
            for size in (int(s) for s in args.sizes.split(",")):
                at_size(store, data_dir, nats_server.url, policy, size)
        finally:
            nats_server.stop()
    print(f"machine: 2 cores here; {datetime.now(UTC):%Y-%m-%d}")


if __name__ == "__main__":
    main()
