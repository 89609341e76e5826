"""Child processes that live and die with us: the embedded nats-server and
the projections worker."""

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
