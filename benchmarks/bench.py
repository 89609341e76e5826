"""Benchmark: prints figures, asserts nothing. `make bench`.

In one run, on this machine:
1. raw JetStream publish rate: envelope-sized messages published pipelined
   (as the relay does) to a file stream on the benchmark's own nats-server;
2. raw SQLite append rate: one row inserted and committed per event, WAL and
   the event store's pragmas (synchronous=FULL: on disk when committed), one
   writer;
3. the product end to end: `ticketing serve` (a separate process, as deployed,
   on the same nats-server, SQLite files in a temporary data directory) driven
   by N concurrent senders speaking the bus API with plain nats-py. Each sender
   registers a complaint, then acknowledges it (a command that loads the case),
   and so on. Measured: commands/s from first request to last event on the bus
   and to last projection row, and latency p50/p99 from request to reply and
   from request to its event arriving at a plain subscriber;
4. SLA alerts on a real clock, during that load: one urgent complaint every
   25 ms with a 3 s first-response limit (a benchmark policy), never
   acknowledged; measured: how late each `sla.breached` alert reaches a plain
   subscriber after its deadline (target p99 <= 1 s; the monitor ticks every
   TICKETING_SLA_TICK_SECONDS, 0.2 s by default).

End-to-end figures are also given as ratios to the raw rates of the same run."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import statistics
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

from infra.auth.directory import UserDirectory, ensure_local
from infra.auth.keys import write_secret
from infra.auth.permissions import inbox_prefix
from infra.bus.nats_server import EmbeddedNats
from infra.store.database import sqlite_pragmas

SAMPLE_EVENT = orjson.dumps({
    "id": str(uuid.uuid4()), "type": "complaint.registered", "aggregate_type": "complaint",
    "aggregate_id": str(uuid.uuid4()), "aggregate_version": 1, "position": 1,
    "occurred_at": "2026-11-25T01:00:00.123456Z", "recorded_at": "2026-11-25T01:00:00.123456Z",
    "actor": {"id": "agent-1", "role": "agent"}, "correlation_id": str(uuid.uuid4()), "causation_id": None,
    "data": {"customer_id": str(uuid.uuid4()), "channel": "wechat", "category": "product_quality",
             "priority": "high", "description": "饲料结块，牛不吃 (feed caked, cattle refuse it)",
             "product": "育肥牛饲料 A3", "region": "华东", "occurred_at": None, "follows_case_id": None},
})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_users(data_dir: Path) -> UserDirectory:
    """The data directory's keys, with an agent that sends and an auditor that watches."""
    directory, _ = ensure_local(data_dir / "auth")
    for name, role in (("bench-agent", "agent"), ("bench-auditor", "auditor")):
        _, seed = directory.add(name, role)
        write_secret(data_dir / "auth" / f"{name}.nk", seed + b"\n")
    return directory


async def connect(url: str, data_dir: Path, name: str) -> Any:
    """A plain nats-py client holding a seed file (the product's own for `system`)."""
    seed = data_dir / "auth" / f"{name}.nk"
    if name == "system":
        return await nats.connect(url, nkeys_seed=str(seed))
    return await nats.connect(url, nkeys_seed=str(seed), inbox_prefix=inbox_prefix(name))


async def raw_jetstream_publish(url: str, data_dir: Path, count: int) -> float:
    nc = await connect(url, data_dir, "system")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH_RAW", subjects=["bench.raw.>"], storage=StorageType.FILE,
                                     duplicate_window=600))
    started = time.perf_counter()
    window = 500  # in flight at once, like a relay batch
    for first in range(0, count, window):
        acks = [await js.publish_async("bench.raw.event", SAMPLE_EVENT, headers={"Nats-Msg-Id": f"m{i}"})
                for i in range(first, min(count, first + window))]
        await asyncio.gather(*acks)
    elapsed = time.perf_counter() - started
    await js.delete_stream("BENCH_RAW")
    await nc.close()
    return count / elapsed


def raw_sqlite_append(path: Path, count: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in sqlite_pragmas(durable=True):
        conn.execute(pragma)
    conn.execute("create table events (id integer primary key, originator_id text, version integer, "
                 "topic text, state blob, unique (originator_id, version))")
    started = time.perf_counter()
    for _ in range(count):
        conn.execute("begin")
        conn.execute("insert into events (originator_id, version, topic, state) values (?, 1, ?, ?)",
                     (str(uuid.uuid4()), "ticketing.complaint:Complaint.Registered", SAMPLE_EVENT))
        conn.execute("commit")
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


BENCH_LIMIT = 3.0
BENCH_POLICY = f"""
# the benchmark's urgent complaints (its customer is a VIP): a first response in {BENCH_LIMIT:.0f} s
[[limit]]
tier = "vip"
priority = "urgent"
first_response = "{BENCH_LIMIT:.0f}s"
"""


class Serve:
    def __init__(self, data_dir: Path, nats_url: str) -> None:
        from infra.config_files import DEFAULT_POLICY

        policy = data_dir.parent / "sla_policy.toml"
        policy.write_text(DEFAULT_POLICY.read_text() + BENCH_POLICY)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
        env |= {"TICKETING_DATA_DIR": str(data_dir), "TICKETING_NATS_URL": nats_url,
                "TICKETING_LOG_LEVEL": "INFO", "TICKETING_SLA_POLICY": str(policy)}
        self.log = (data_dir.parent / "serve.log").open("wb")
        self.process = subprocess.Popen([str(Path(sys.executable).parent / "ticketing"), "serve"], env=env,
                                        cwd=data_dir.parent,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.path = data_dir.parent / "serve.log"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while "Ctrl-C to stop" not in self.path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start:\n{self.path.read_text(errors='replace')}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        self.summary = [line for line in self.path.read_text(errors="replace").splitlines()
                        if "command writer:" in line]


def projection_position(readmodels: Path) -> int:
    try:
        with sqlite3.connect(f"file:{readmodels}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("select position from projection_tracking where name='case_summary'").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


PROJECTIONS = ("case_summary", "sla", "activity", "danger", "staff")


def projection_positions(readmodels: Path) -> dict[str, int]:
    try:
        with sqlite3.connect(f"file:{readmodels}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute("select name, position from projection_tracking").fetchall()
    except sqlite3.Error:
        return {}
    return {name: int(position) for name, position in rows}


async def sustained(url: str, data_dir: Path, rate: int, seconds: int, customers: int) -> dict[str, Any]:
    """Commands at a steady `rate` for `seconds` (complaints registered for
    `customers` customers in turn, from many concurrent requests); every
    0.25 s each projection's lag: how long the oldest event it has not
    applied yet has been on the bus."""
    nc = await connect(url, data_dir, "bench-agent")
    watcher = await connect(url, data_dir, "bench-auditor")
    on_bus: dict[int, float] = {}  # position -> when it reached the bus

    async def on_event(msg: Any) -> None:
        on_bus.setdefault(orjson.loads(msg.data)["position"], time.perf_counter())

    await watcher.subscribe("ticketing.v1.events.>", cb=on_event)

    async def register_customer(n: int) -> str:
        return str(orjson.loads((await nc.request("ticketing.v1.commands.customer.register", orjson.dumps({
            "command_id": str(uuid.uuid4()),
            "data": {"name": f"韩梅梅 {n}", "phone": "+86 137 0000 0000", "tier": "basic", "region": "华北"}}),
            timeout=30)).data)["aggregate_id"])
    customers_ = [await register_customer(n) for n in range(customers)]
    lags: dict[str, list[float]] = {name: [] for name in PROJECTIONS}
    timeline: list[tuple[float, dict[str, float]]] = []
    errors = 0
    sending = True

    async def one(n: int) -> None:
        nonlocal errors
        try:
            msg = await nc.request("ticketing.v1.commands.complaint.register", orjson.dumps({
                "command_id": str(uuid.uuid4()),
                "data": {"customer_id": customers_[n % customers], "channel": "phone", "category": "delivery",
                         "priority": "low", "description": "sustained load"}}), timeout=30)
            errors += not orjson.loads(msg.data).get("ok")
        except Exception:  # noqa: BLE001 - counted
            errors += 1

    def sample(now: float) -> dict[str, float]:
        positions = projection_positions(data_dir / "readmodels.db")
        found = {}
        for name in PROJECTIONS:
            waiting = on_bus.get(positions.get(name, 0) + 1)  # the oldest event not applied yet
            found[name] = max(0.0, now - waiting) if waiting is not None else 0.0
        return found

    async def sampler(began: float) -> None:
        while sending:
            now = time.perf_counter()
            lag = await asyncio.to_thread(sample, now)
            for name, value in lag.items():
                lags[name].append(value)
            timeline.append((now - began, lag))
            await asyncio.sleep(0.25)

    began = time.perf_counter()
    watching = asyncio.create_task(sampler(began))
    tasks = []
    for n in range(rate * seconds):
        await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    stopped = time.perf_counter()
    last = max(on_bus) if on_bus else 0
    while min(projection_positions(data_dir / "readmodels.db").get(n, 0) for n in PROJECTIONS) < last:
        if time.perf_counter() - stopped > 120:
            break
        await asyncio.sleep(0.02)
    caught_up = time.perf_counter() - stopped
    sending = False
    await watching
    await nc.close()
    await watcher.close()
    return {"sent": rate * seconds, "errors": errors, "seconds": stopped - began, "lags": lags,
            "timeline": timeline, "caught_up_s": caught_up}


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def part_of(pid: int) -> str:
    """What a process of the run is, by its command line: serve, a part of the worker, nats-server."""
    words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    if b"--part" in words:
        return words[words.index(b"--part") + 1].decode()
    return "nats-server" if words[0].endswith(b"nats-server") else "serve" if b"serve" in words else words[0].decode()


class CpuMeter:
    """CPU seconds each process of the run (serve, the worker's parts, nats-server, this one) uses between
    `start` and `stop`: where a command's CPU goes on a machine the load keeps busy."""

    def __init__(self, serve_pid: int, nats_pid: int) -> None:
        self.pids = {part_of(pid): pid for pid in [serve_pid, *children(serve_pid), nats_pid]}
        self.pids["benchmark (senders)"] = os.getpid()
        self.spent: dict[str, float] = {}

    def start(self) -> None:
        self.spent = {name: -cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        self.spent = {name: spent + cpu_seconds(self.pids[name]) for name, spent in self.spent.items()}


async def end_to_end(url: str, data_dir: Path, senders: int, commands: int, alerts: int,
                     meter: CpuMeter) -> dict[str, Any]:
    nc = await connect(url, data_dir, "bench-agent")
    watcher = await connect(url, data_dir, "bench-auditor")
    event_seen: dict[str, float] = {}
    event_position: dict[str, int] = {}
    breach_late: dict[str, float] = {}  # case id -> seconds from deadline to alert

    async def on_event(msg: Any) -> None:
        event_seen[msg.headers["Nats-Msg-Id"]] = time.perf_counter()
        event_position[msg.headers["Nats-Msg-Id"]] = orjson.loads(msg.data)["position"]

    async def on_breach(msg: Any) -> None:
        alert = orjson.loads(msg.data)
        deadline = datetime.fromisoformat(alert["deadline"]).timestamp()
        breach_late.setdefault(alert["case_id"], time.time() - deadline)

    await watcher.subscribe("ticketing.v1.events.>", cb=on_event)
    await watcher.subscribe("ticketing.v1.alerts.sla.breached", cb=on_breach)
    sent: list[tuple[float, float, list[str]]] = []  # request time, reply time, event ids
    errors: list[dict[str, Any]] = []
    per_sender = commands // senders

    async def request(subject: str, body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        msg = await nc.request(subject, orjson.dumps(body), timeout=30)
        reply = orjson.loads(msg.data)
        if reply.get("ok"):
            sent.append((started, time.perf_counter(), reply["events"]))
        else:
            errors.append(reply)
        return dict(reply)

    async def sender(n: int) -> None:
        case_id = None
        for i in range(per_sender):
            if i % 2 == 0:
                reply = await request("ticketing.v1.commands.complaint.register", {
                    "command_id": str(uuid.uuid4()),
                    "data": {"customer_id": customer, "channel": "phone", "category": "delivery",
                             "priority": "normal", "description": "送货延迟三天 (delivery three days late)"}})
                case_id = reply.get("aggregate_id")
            else:
                await request("ticketing.v1.commands.complaint.acknowledge", {
                    "command_id": str(uuid.uuid4()), "aggregate_id": case_id,
                    "expected_version": 1, "data": {"note": "已回电"}})

    # Warm up: connections, prepared tables, first case loads; the customer.
    customer = (await request("ticketing.v1.commands.customer.register", {
        "command_id": str(uuid.uuid4()),
        "data": {"name": "李雷", "phone": "+86 139 0000 0000", "tier": "vip", "region": "华南"}}))["aggregate_id"]
    await asyncio.gather(*(request("ticketing.v1.commands.complaint.register", {
        "command_id": str(uuid.uuid4()),
        "data": {"customer_id": customer, "channel": "phone", "category": "other", "priority": "low",
                 "description": "warm-up"}}) for _ in range(senders)))
    warm = {event_id for _, _, ids in sent for event_id in ids}
    while not warm <= event_seen.keys():  # steady state: the warm-up is on the bus
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    sent.clear()

    urgent: list[str] = []

    async def left_waiting() -> None:  # never acknowledged: each breaches its 3 s limit
        for _ in range(alerts):
            msg = await nc.request("ticketing.v1.commands.complaint.register", orjson.dumps({
                "command_id": str(uuid.uuid4()),
                "data": {"customer_id": customer, "channel": "phone", "category": "billing",
                         "priority": "urgent", "description": "停机 (line cut off)"}}), timeout=30)
            urgent.append(orjson.loads(msg.data)["aggregate_id"])
            await asyncio.sleep(0.025)

    started = time.perf_counter()
    meter.start()
    waiting = asyncio.create_task(left_waiting())
    await asyncio.gather(*(sender(n) for n in range(senders)))
    replied = time.perf_counter()
    meter.stop()
    expected = {event_id for _, _, ids in sent for event_id in ids}
    while not expected <= event_seen.keys():
        if time.perf_counter() - replied > 60:
            raise SystemExit(f"{len(expected - event_seen.keys())} events never reached the bus")
        await asyncio.sleep(0.005)
    on_bus = max(event_seen[e] for e in expected)
    last = max(event_position[e] for e in expected)  # the senders' (the urgent complaints go on a while)
    while projection_position(data_dir / "readmodels.db") < last:
        if time.perf_counter() - replied > 60:
            raise SystemExit("the projection did not catch up")
        await asyncio.sleep(0.005)
    projected = time.perf_counter()
    await waiting
    while not set(urgent) <= breach_late.keys():
        if time.perf_counter() - projected > 60:
            raise SystemExit(f"{len(set(urgent) - breach_late.keys())} breach alerts never came")
        await asyncio.sleep(0.05)
    await nc.close()
    await watcher.close()

    done = len(sent)
    return {
        "commands": done, "errors": len(errors), "seconds": replied - started,
        "to_bus_per_s": done / (on_bus - started),
        "to_projection_per_s": done / (projected - started),
        "reply_ms": [1000 * (r - s) for s, r, _ in sent],
        "bus_ms": [1000 * (max(event_seen[e] for e in ids) - s) for s, _, ids in sent],
        "breach_late_ms": [1000 * late for late in breach_late.values()],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--commands", type=int, default=8000, help="end-to-end commands in all")
    parser.add_argument("--raw", type=int, default=8000, help="messages / rows for the raw baselines")
    parser.add_argument("--alerts", type=int, default=200, help="urgent complaints left to breach their limit")
    parser.add_argument("--rate", type=int, default=500, help="commands/s of the sustained load")
    parser.add_argument("--seconds", type=int, default=60, help="how long the sustained load lasts")
    parser.add_argument("--customers", type=int, default=500,
                        help="customers the sustained load's complaints are spread over (the issue's probe: 500)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ticketing-bench-") as tmp:
        root = Path(tmp)
        server = EmbeddedNats.start(root / "nats", bench_users(root / "data"), preferred_port=0)
        try:
            js_rate = await raw_jetstream_publish(server.url, root / "data", args.raw)
            sqlite_rate = raw_sqlite_append(root / "raw.db", args.raw)
            serve = Serve(root / "data", server.url)
            try:
                serve.wait_ready()
                meter = CpuMeter(serve.process.pid, server.process.pid)
                e2e = await end_to_end(server.url, root / "data", args.senders, args.commands, args.alerts, meter)
                steady = await sustained(server.url, root / "data", args.rate, args.seconds, args.customers)
            finally:
                serve.stop()
            writer = serve.summary[-1].split("command writer: ")[-1] if serve.summary else "?"
        finally:
            server.stop()

    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, NATS authorization on, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"raw JetStream publish (pipelined, file stream):   {js_rate:9,.0f} msg/s")
    print(f"raw SQLite append (1 row per commit, WAL):         {sqlite_rate:9,.0f} rows/s")
    print(f"end to end, {args.senders} senders, {e2e['commands']} commands (register + acknowledge), "
          f"{e2e['errors']} errors:")
    for label, key in (("request -> event on the bus", "to_bus_per_s"),
                       ("request -> projection row", "to_projection_per_s")):
        rate = e2e[key]
        print(f"  {label:28s} {rate:9,.0f} commands/s  = {rate / sqlite_rate:6.1%} of raw SQLite append,"
              f" {rate / js_rate:6.1%} of raw JetStream publish")
    print(f"  group commit: {writer} (warm-up included)")
    spent = meter.spent
    print(f"  CPU while the senders ran, {e2e['seconds']:.1f} s on {os.cpu_count()} cores "
          f"({sum(spent.values()) / e2e['seconds']:.0%} of one core in all; ms of CPU a command):")
    print("    " + ", ".join(f"{name} {1000 * cpu / e2e['commands']:.2f} ({cpu / e2e['seconds']:.0%})"
                             for name, cpu in sorted(spent.items(), key=lambda item: -item[1])))
    for label, key in (("request -> reply", "reply_ms"), ("request -> event on the bus", "bus_ms")):
        values = e2e[key]
        print(f"  {label:28s} p50 {statistics.median(values):6.1f} ms   p99 {percentile(values, 0.99):6.1f} ms")
    late = e2e["breach_late_ms"]
    print(f"SLA breach alerts during that load, {len(late)} limits of {BENCH_LIMIT:.0f} s, deadline -> alert "
          f"at a plain subscriber:")
    print(f"  p50 {statistics.median(late):6.1f} ms   p99 {percentile(late, 0.99):6.1f} ms   "
          f"max {max(late):6.1f} ms   (target p99 <= 1000 ms)")
    print(f"sustained {args.rate} commands/s for {args.seconds} s over {args.customers} customers ({steady['sent']} sent "
          f"in {steady['seconds']:.1f} s, {steady['errors']} errors): each read model's lag behind the bus, sampled "
          f"every 0.25 s")
    for name, values in steady["lags"].items():
        ms = [1000 * v for v in values] or [0.0]
        print(f"  {name:14s} p50 {statistics.median(ms):7.1f} ms   p99 {percentile(ms, 0.99):7.1f} ms   "
              f"max {max(ms):7.1f} ms   (target p99 <= 500 ms)")
    print(f"  every read model caught up with the store {1000 * steady['caught_up_s']:.0f} ms after the load "
          f"stopped (target <= 1000 ms)")
    print(f"  lag over time (s into the load: {' / '.join(PROJECTIONS)}, ms):")
    for at, lag in steady["timeline"][::40]:
        print(f"    {at:5.1f}s  " + " / ".join(f"{1000 * lag[name]:6.0f}" for name in PROJECTIONS))


if __name__ == "__main__":
    asyncio.run(main())

