"""What every pull consumer here does: fetch batches until told to stop,
waiting out bus outages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from nats.errors import TimeoutError as NatsTimeout

log = logging.getLogger(__name__)


async def batches(subscription: Any, size: int, running: Callable[[], bool], name: str,
                  linger: float = 0.0) -> AsyncIterator[list[Any]]:
    """Non-empty batches of at most `size` messages while `running()`. An
    outage is said when it begins and when it ends, not at every attempt.

    `linger`: under load, the next fetch waits until this long after the
    last batch arrived, so what comes meanwhile is taken in one batch
    rather than in many small ones (a read model's transaction costs about
    as much for one event as for twenty). A message after a quiet spell, or
    a full batch's successors, are fetched at once: the wait only ever
    applies between batches that come less than `linger` apart."""
    failing, arrived = False, None
    loop = asyncio.get_running_loop()
    while running():
        if arrived is not None:
            wait = arrived + linger - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            messages = await subscription.fetch(size, timeout=0.25)
        except (NatsTimeout, TimeoutError):
            continue
        except Exception as error:  # noqa: BLE001 - bus outage: wait and fetch again
            if not failing:
                log.warning("%s: cannot fetch (%s); trying again until it works", name, error)
                failing = True
            await asyncio.sleep(0.5)
            continue
        if failing:
            log.warning("%s: fetching again", name)
            failing = False
        if messages:
            arrived = loop.time() if linger and len(messages) < size else None
            yield messages
