"""Ending a process's background tasks without hanging the stop.

`task.cancel()` followed by `gather` waits for ever if a task swallows its
cancellation: nats-py does (`Client._flush_pending` and `drain` catch
`CancelledError` and go on), so a loop cancelled while it publishes or asks
JetStream something carries on to its next round and the stop never ends
(CI saw a test's teardown hang past its 120 s that way). Here a task still
running is cancelled again until it ends, and after `patience` it is left
behind, said once, so a stop always finishes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

RECANCEL_SECONDS = 0.5


async def end(tasks: Sequence[asyncio.Task[Any]], *, grace: float = 0.0, patience: float = 5.0) -> None:
    """Let the tasks finish by themselves for `grace` seconds, then cancel
    whatever still runs, again every half second, for `patience` more."""
    pending = {task for task in tasks if not task.done()}
    if pending and grace > 0:
        _, pending = await asyncio.wait(pending, timeout=grace)
    deadline = asyncio.get_running_loop().time() + patience
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            log.error("stopping: %s did not end when cancelled; left behind",
                      ", ".join(sorted(task.get_name() for task in pending)))
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_SECONDS, left))
    for task in tasks:  # what they raised is of no use now; retrieved, so asyncio does not warn of it
        if task.done() and not task.cancelled():
            task.exception()
