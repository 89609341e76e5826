"""Cluster benchmark: prints figures, asserts nothing. `make bench` runs it
when PostgreSQL answers (TICKETING_BENCH_POSTGRES_URL, else
TICKETING_TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test).

In one run, on this machine:
1. a raw PostgreSQL append: one row inserted and committed per event;
2. a raw R3 JetStream publish: envelope-sized messages, pipelined as the
   relay does, to a stream of three replicas on the cluster `cluster up`
   started (sync_interval: always);
3. `ticketing cluster up --nodes 3 --instances K` for K = 1, 2, 3, each on
   a fresh schema, driven by 24 senders spread over the three nodes for
   `--seconds`: commands/s answered ok and the reply's p50/p99;
4. failover, with 2 instances under load: the instance holding the relay
   killed (-9): seconds until the next event reaches the stream; the
   instance then holding the projections killed: seconds until the next
   event reaches the read models.
Figures are also given as ratios to the raw rates of the same run. All
processes share this machine's cores: see the README's model for what
three machines would give."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.js.api import StorageType, StreamConfig
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench import SAMPLE_EVENT, percentile  # noqa: E402
from tests.conftest import complaint_data, customer_data  # noqa: E402

TICKETING = str(Path(sys.executable).parent / "ticketing")


def postgres_url() -> str:
    url = (os.environ.get("TICKETING_BENCH_POSTGRES_URL") or os.environ.get("TICKETING_TEST_POSTGRES_URL")
           or "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


def fresh_schema(url: str) -> str:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def raw_postgres_append(url: str, count: int) -> float:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("create table raw_events (id bigserial primary key, originator_id uuid, version int, "
                          "topic text, state bytea, unique (originator_id, version))"))
    with engine.connect() as conn:
        started = time.perf_counter()
        for _ in range(count):
            with conn.begin():
                conn.execute(text("insert into raw_events (originator_id, version, topic, state) "
                                  "values (:o, 1, 'bench', :s)"), {"o": uuid.uuid4(), "s": SAMPLE_EVENT})
        elapsed = time.perf_counter() - started
    engine.dispose()
    return count / elapsed


FAST_POLICY = '[[limit]]\nfirst_response = "3s"\nplan = "1000d"\nresolution = "1000d"\ncallback = "1000d"\nloop = "1000d"\n'
"""The benchmark's SLA policy: a first response due 3 s after registration (nothing else falls due)."""


class Cluster:
    def __init__(self, data: Path, database: str, instances: int) -> None:
        self.data = data
        policy = data.parent / "fast.toml"
        policy.write_text(FAST_POLICY)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
        env |= {"TICKETING_DATA_DIR": str(data), "TICKETING_DATABASE_URL": database, "TICKETING_LOG_LEVEL": "WARNING",
                "TICKETING_SLA_POLICY": str(policy)}
        self.log = (data.parent / f"{data.name}.log").open("wb")
        self.process = subprocess.Popen([TICKETING, "cluster", "up", "--nodes", "3", "--instances", str(instances)],
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.engine = create_engine(database)

    def holder(self, part: str) -> str | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(text("select holder, expires_at > extract(epoch from clock_timestamp()) as live "
                                        "from ticketing_leases where name = :n"), {"n": part}).first()
        except Exception:  # noqa: BLE001 - not made yet
            return None
        return str(row.holder) if row and row.live else None

    async def ready(self) -> list[str]:
        deadline = time.monotonic() + 120
        while not all(self.holder(part) for part in ("relay", "projections", "monitors")):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cluster up did not start; see {self.log.name}")
            await asyncio.sleep(0.2)
        return (self.data / "nats.url").read_text().strip().split(",")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.engine.dispose()
        self.log.close()


async def raw_r3_publish(urls: list[str], data: Path, count: int) -> float:
    nc = await nats.connect(urls, nkeys_seed=str(data / "auth" / "system.nk"))
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH_RAW", subjects=["bench.raw.>"], storage=StorageType.FILE,
                                     num_replicas=3, duplicate_window=600))
    started = time.perf_counter()
    for first in range(0, count, 500):
        acks = [await js.publish_async("bench.raw.event", SAMPLE_EVENT, headers={"Nats-Msg-Id": f"m{i}"})
                for i in range(first, min(count, first + 500))]
        await asyncio.gather(*acks)
    elapsed = time.perf_counter() - started
    await js.delete_stream("BENCH_RAW")
    await nc.close()
    return count / elapsed


async def load(urls: list[str], data: Path, seconds: float, senders: int = 24,
               during: Any = None) -> tuple[float, list[float]]:
    """Commands/s answered ok and each reply's latency (s), from `senders` spread over the nodes."""
    clients = [await nats.connect([url], nkeys_seed=str(data / "auth" / "operator.nk"),
                                  inbox_prefix="_INBOX.operator", max_reconnect_attempts=-1) for url in urls]
    latencies: list[float] = []
    ends = time.monotonic() + seconds

    async def sender(nc: Any) -> None:
        while time.monotonic() < ends:
            body = orjson.dumps({"command_id": str(uuid.uuid4()), "data": customer_data()})
            began = time.perf_counter()
            try:
                reply = orjson.loads((await nc.request("ticketing.v1.commands.customer.register", body,
                                                       timeout=10)).data)
            except Exception:  # noqa: BLE001 - not answered: not counted
                continue
            if reply.get("ok"):
                latencies.append(time.perf_counter() - began)
    started = time.perf_counter()
    tasks = [asyncio.create_task(sender(clients[i % len(clients)])) for i in range(senders)]
    if during is not None:
        await during()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for nc in clients:
        await nc.close()
    return len(latencies) / elapsed, latencies


def pid_of_instance(engine: Any, instance: str) -> int:
    """Its serve's process, as the instance says in `ticketing_instances`."""
    with engine.connect() as conn:
        return int(conn.execute(text("select pid from ticketing_instances where name = :n"),
                                {"n": instance}).scalar_one())


async def failover(cluster: Cluster, urls: list[str]) -> dict[str, float]:
    system = await nats.connect(urls, nkeys_seed=str(cluster.data / "auth" / "system.nk"),
                                max_reconnect_attempts=-1)
    js = system.jetstream()
    found = {}
    await asyncio.sleep(2)
    holder = cluster.holder("relay")
    assert holder is not None
    last = (await js.stream_info("TICKETING_EVENTS")).state.last_seq
    killed = time.perf_counter()
    os.kill(pid_of_instance(cluster.engine, holder.split("/")[0]), signal.SIGKILL)
    while True:
        try:
            if (await js.stream_info("TICKETING_EVENTS")).state.last_seq > last + 5:
                break
        except Exception:  # noqa: BLE001
            pass
        await asyncio.sleep(0.02)
    found["relay: kill -9 of its instance -> events on the stream again (s)"] = time.perf_counter() - killed
    await asyncio.sleep(3)
    holder = cluster.holder("projections")
    assert holder is not None

    def projected() -> int:
        with cluster.engine.connect() as conn:
            return int(conn.execute(text("select count(*) from customer_summary")).scalar_one())
    last = projected()
    killed = time.perf_counter()
    os.kill(pid_of_instance(cluster.engine, holder.split("/")[0]), signal.SIGKILL)
    while projected() <= last + 5:
        await asyncio.sleep(0.02)
    found["projections: kill -9 of its instance -> rows in the read models again (s)"] = time.perf_counter() - killed
    await asyncio.sleep(3)
    found["an SLA alert falling due 1 s after the kill -9 of the monitors' instance: raised after its deadline (s)"] = \
        await alert_across_failover(cluster, system)
    await system.close()
    return found


async def alert_across_failover(cluster: Cluster, system: Any) -> float:
    """An urgent complaint whose first response falls due (FAST_POLICY: 3 s) a second after the instance holding
    the monitors is killed: how late its breach alert is."""
    breached: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    operator = await nats.connect((cluster.data / "nats.url").read_text().strip().split(","),
                                  nkeys_seed=str(cluster.data / "auth" / "operator.nk"), inbox_prefix="_INBOX.operator")
    customer = orjson.loads((await operator.request("ticketing.v1.commands.customer.register", orjson.dumps(
        {"command_id": str(uuid.uuid4()), "data": customer_data()}), timeout=10)).data)["aggregate_id"]
    case = orjson.loads((await operator.request("ticketing.v1.commands.complaint.register", orjson.dumps(
        {"command_id": str(uuid.uuid4()), "data": complaint_data(customer_id=customer, priority="urgent")}),
        timeout=10)).data)["aggregate_id"]

    async def heard(msg: Any) -> None:
        alert = orjson.loads(msg.data)
        if alert.get("case_id") == case and alert.get("metric") == "first_response" and not breached.done():
            breached.set_result(alert | {"heard": time.time()})
    await system.subscribe("ticketing.v1.alerts.sla.breached", cb=heard)
    await asyncio.sleep(2)
    holder = cluster.holder("monitors")
    assert holder is not None
    os.kill(pid_of_instance(cluster.engine, holder.split("/")[0]), signal.SIGKILL)
    alert = await asyncio.wait_for(breached, 60)
    await operator.close()
    deadline = datetime.fromisoformat(alert["deadline"].replace("Z", "+00:00")).timestamp()
    return float(alert["heard"] - deadline)


async def under_faults(cluster: Cluster, urls: list[str], seconds: float) -> None:
    times: dict[str, float] = {}

    async def faults() -> None:
        times.update(await failover(cluster, urls))
    await load(urls, cluster.data, seconds, during=faults)
    for what, took in times.items():
        print(f"  failover, {what}: {took:.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--raw", type=int, default=5000)
    args = parser.parse_args()
    url = postgres_url()
    try:
        create_engine(url).connect().close()
    except Exception as error:  # noqa: BLE001
        print(f"cluster benchmark skipped: PostgreSQL does not answer at {url} ({type(error).__name__})")
        return
    raw_append = raw_postgres_append(fresh_schema(url), args.raw)
    print(f"raw PostgreSQL append (a commit per row):  {raw_append:10,.0f} rows/s")
    with tempfile.TemporaryDirectory(prefix="ticketing-cluster-bench-") as tmp:
        raw_publish = None
        for instances in (1, 2, 3):
            cluster = Cluster(Path(tmp) / f"k{instances}", fresh_schema(url), instances)
            try:
                urls = await cluster.ready()
                if raw_publish is None:
                    raw_publish = await raw_r3_publish(urls, cluster.data, args.raw)
                    print(f"raw R3 JetStream publish (3 nodes):        {raw_publish:10,.0f} msg/s")
                rate, latencies = await load(urls, cluster.data, args.seconds)
                print(f"{instances} instance(s): {rate:8,.0f} commands/s = {rate / raw_append:6.1%} of the raw append, "
                      f"{rate / raw_publish:6.1%} of the raw R3 publish; reply p50 "
                      f"{percentile(latencies, 0.5) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms")
                if instances == 2:
                    await under_faults(cluster, urls, args.seconds + 20)
            finally:
                cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())
