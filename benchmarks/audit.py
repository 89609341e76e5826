"""Audit rates: `ticketing audit verify` and `ticketing sla simulate` over a
store seeded with real aggregates' events (customers, complaints through
the loop), on SQLite, beside a raw read of the same rows in the same process.

    .venv/bin/python benchmarks/audit.py [--events 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from eventsourcing.cipher import AESCipher
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handlers.sla_views import simulate  # noqa: E402
from infra.auth.signing import Signer  # noqa: E402
from infra.bus.anchors import MOST_EVENTS, anchor_document  # noqa: E402
from infra.config_files import DEFAULT_POLICY  # noqa: E402
from infra.store.event_store import EventStore  # noqa: E402
from infra.store.policies import timeline  # noqa: E402
from infra.store.scan import case_tracks  # noqa: E402
from infra.store.verify import Anchor, verify  # noqa: E402
from ticketing.case import Context  # noqa: E402
from ticketing.complaint import Complaint, Registration  # noqa: E402
from ticketing.customer import Customer  # noqa: E402
from ticketing.sla.policy import SlaPolicy  # noqa: E402
from ticketing.values import Role  # noqa: E402

START = datetime(2026, 7, 1, tzinfo=UTC)
CANDIDATE = '[[limit]]\nfirst_response = "20m"\nplan = "2h"\nresolution = "12h"\n'


def seed(store: EventStore, events: int) -> None:
    """Complaints of 7 events each (register, acknowledge, assign, analyse,
    resolve, revisit, close), one customer per ten, spread over a quarter,
    worked by forty agents."""
    at, written, customer = START, 0, None
    while written < events:
        batch = []
        for n in range(200):
            agent = f"agent-{(written + n) % 40}"

            def ctx(minutes: int, at: datetime = at, agent: str = agent) -> Context:
                return Context(actor_id=agent, role=Role.AGENT, at=at + timedelta(minutes=minutes),
                               correlation_id=uuid.uuid4(), compensation_limit=Decimal("500"))
            if customer is None or n % 10 == 0:
                customer = Customer.register(uuid.uuid4(), ctx(0), name="n", phone="1", tier="basic", region="r")
                batch.append(customer)
            case = Complaint.register(uuid.uuid4(), Registration(customer.id, "phone", "billing", "normal", "d"),
                                      ctx(0))
            case.acknowledge(ctx(5 + n % 40))
            case.assign(ctx(60), agent)
            case.analyse(ctx(90 + n % 200), "c", "company", "minor", "p")
            case.resolve(ctx(300 + (n * 37) % 1500), "r", False, "0")
            case.revisit(ctx(2000), True, 90)
            case.close(ctx(2100))
            batch.append(case)
            at += timedelta(minutes=11)
        store.save(*batch)
        written = store.max_position()


def anchored(store: EventStore, signer: Signer) -> list[Anchor]:
    """The anchors the relay's part would have published over the whole store."""
    anchors, after, head = [], 0, store.max_position()
    while after < head:
        position = min(head, after + MOST_EVENTS)
        links = store.links(after, position - after)
        anchors.append(Anchor.of(anchor_document(links, after, position, signer, datetime.now(UTC))))
        after = position
    return anchors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ticketing-audit-bench-") as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'events.db'}", AESCipher.create_key(32))
        seed(store, args.events)
        total = store.max_position()
        table = store.events_table
        began = time.perf_counter()
        with store.engine.connect() as conn:
            rows = sum(1 for _ in conn.execute(select(table.c.id, table.c.topic, table.c.state).order_by(table.c.id)))
        raw = rows / (time.perf_counter() - began)
        began = time.perf_counter()
        verdict = verify(store, [])
        verified = total / (time.perf_counter() - began)
        assert verdict.intact, verdict.summary()
        anchors = anchored(store, Signer.of_file(Path(tmp) / "audit.nk"))
        began = time.perf_counter()
        verdict = verify(store, anchors, anchors[0].key)
        verified_anchored = total / (time.perf_counter() - began)
        assert verdict.proven, verdict.summary()
        policy = SlaPolicy.parse(DEFAULT_POLICY.read_text())
        began = time.perf_counter()
        reply = simulate(lambda a, b: case_tracks(store, a, b), timeline(store.engine, policy), CANDIDATE, START,
                         START + timedelta(days=92))
        simulated = reply.events_read / (time.perf_counter() - began)
    print(f"store: {total:,} events (SQLite), {reply.cases:,} cases replayed")
    print(f"raw read of the rows (id, topic, state):  {raw:10,.0f} events/s")
    print(f"ticketing audit verify:                   {verified:10,.0f} events/s = {verified / raw:6.1%} of raw read")
    print(f"  with the signed anchors ({len(anchors)}, digests): {verified_anchored:10,.0f} events/s = "
          f"{verified_anchored / raw:6.1%} of raw read")
    print(f"ticketing sla simulate (two policies):    {simulated:10,.0f} events/s = {simulated / raw:6.1%} of raw read")


if __name__ == "__main__":
    main()
