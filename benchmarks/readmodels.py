"""Read models at size: a store grown through the domain (customers and
complaints through the whole loop, spread over the months) to each size,
then every projection rebuilt in one pass, then each query's read timed,
on SQLite, beside a raw read of the stored rows in the same process.

    .venv/bin/python benchmarks/readmodels.py [--sizes 10000,100000,1000000]

Queries are timed as the responders run them (the read-model functions
behind them, no bus in between): p50 and p99 of 50 calls each. Then the
read models are rebuilt beside themselves (blue/green: the swap's wait is
timed); the store's and the read models' size on disk, and peak memory.
"""

from __future__ import annotations

import argparse
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

from eventsourcing.cipher import AESCipher
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit import START, seed  # noqa: E402

from handlers.queries import case_history  # noqa: E402
from handlers.staff import assessment  # noqa: E402
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
    own, child = peak_rss_mb()
    print(f"    disk: store {megabytes(data_dir / 'events.db'):,.0f} MB, read models {megabytes(readmodels):,.0f} MB; "
          f"peak memory so far: this process {own:,.0f} MB (seeding included), a rebuild's child {child:,.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    policy = SlaPolicy.parse(DEFAULT_POLICY.read_text())
    with tempfile.TemporaryDirectory(prefix="ticketing-readmodels-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        store = EventStore(f"sqlite:///{data_dir / 'events.db'}", AESCipher.create_key(32))
        for size in (int(s) for s in args.sizes.split(",")):
            at_size(store, data_dir, policy, size)
    print(f"machine: 2 cores here; {datetime.now(UTC):%Y-%m-%d}")


if __name__ == "__main__":
    main()
