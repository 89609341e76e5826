"""Running the product as a person does: `ticketing serve` (and the CLI) as
real processes in a data directory, and plain nats-py clients holding the
data directory's credentials. Shared by the end-to-end and the fault tests."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from contracts.catalog import EVENT_STREAM
from infra.bus.nats_server import free_port
from tests.conftest import complaint_data, connect_as, customer_data

TICKETING = str(Path(sys.executable).parent / "ticketing")


class Serve:
    """One `ticketing serve` process."""

    def __init__(self, cwd: Path, env: dict[str, str], terminal: bool = False) -> None:
        """`terminal`: in a process group of its own, as a shell's foreground job is (`ctrl_c`)."""
        self.cwd = cwd
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
        self.log = (cwd / "serve.log").open("ab")
        self.offset = self.log.tell()  # this run's output starts here
        env = {"TICKETING_CONSOLE_PORT": str(free_port())} | env  # several serves at once: a console each
        self.process = subprocess.Popen([TICKETING, "serve"], cwd=cwd, env=clean | env,
                                        stdout=self.log, stderr=subprocess.STDOUT, process_group=0 if terminal else None)

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl-C: SIGINT to every process of the foreground group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def wait_ready(self, data_dir: Path, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            if "Ctrl-C to stop" in self.output():
                return (data_dir / "nats.url").read_text().strip()
            time.sleep(0.05)
        raise AssertionError(f"serve did not start:\n{self.output()}")

    def output(self) -> str:
        with (self.cwd / "serve.log").open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def interrupt(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve did not stop within {timeout}s of Ctrl-C:\n{self.output()}") from None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def serves() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:
        if serve.process.poll() is None:
            serve.kill()
        serve.log.close()


def processes_using(path: Path) -> list[int]:
    """Pids whose command line mentions `path` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(path).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def child_running(pid: int, *words: str) -> int:
    """The child of `pid` whose command line holds each of `words`."""
    def command_line(child: int) -> bytes:
        try:
            return (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return b""
    return next(child for child in children_of(pid) if all(w.encode() in command_line(child) for w in words))


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def connect(url: str, data: Path, name: str = "operator", **options: Any) -> Any:
    """A plain nats-py client holding a seed file of the data directory (see `connect_as`)."""
    return await connect_as(url, data / "auth", name, **options)


async def send(nc: Any, subject: str, data: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    body = {"command_id": str(uuid.uuid4()), "data": data}
    return dict(orjson.loads((await nc.request(subject, orjson.dumps(body), timeout=timeout)).data))


async def register(url: str, data: Path) -> dict[str, Any]:
    """A customer, then a complaint of theirs; the complaint's reply."""
    nc = await connect(url, data)
    try:
        customer = await send(nc, "ticketing.v1.commands.customer.register", customer_data())
        assert customer["ok"], customer
        return await send(nc, "ticketing.v1.commands.complaint.register",
                          complaint_data(customer_id=customer["aggregate_id"]))
    finally:
        await nc.close()


async def stream_positions(url: str, data: Path) -> list[int]:
    nc = await connect(url, data, "system")
    try:
        js = nc.jetstream()
        info = await js.stream_info(EVENT_STREAM)
        if not info.state.messages:
            return []
        positions = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            positions.append(orjson.loads((await js.get_msg(EVENT_STREAM, seq=seq)).data)["position"])
        return positions
    finally:
        await nc.close()


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows, or none while the projections process has not created its tables."""
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return []
        raise


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    return subprocess.run([TICKETING, *args], cwd=cwd, env=clean | {"COLUMNS": "250"}, capture_output=True,
                          text=True, timeout=60, check=False)
