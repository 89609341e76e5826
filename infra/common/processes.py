"""Child processes that live and die with us: the embedded nats-server and
the worker's parts (under serve), the nodes and instances (under `cluster up`).

Each child runs in a session of its own: Ctrl-C in a terminal signals the
whole foreground process group, and a child that took it as well would stop
on its own while its parent still counted on it (serve's supervisors saw
nats-server and the parts "die" and started them again on the way down).
The parent alone hears Ctrl-C and stops its children in order; if the parent
dies, the kernel's parent-death signal ends them."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the thread that started it dies (so
    start children from the main thread), and no child is ever orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(args: list[str], *, env: dict[str, str] | None = None, log_file: Path | None = None,
          ) -> subprocess.Popen[bytes]:
    """Start a child; its output goes to `log_file`, or to ours."""
    output: IO[bytes] | int | None = log_file.open("ab") if log_file else None
    try:
        return subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT if log_file else None,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            start_new_session=True,
        )
    finally:
        if not isinstance(output, int) and output is not None:
            output.close()


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not stop in time."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
