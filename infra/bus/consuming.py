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
                  ) -> AsyncIterator[list[Any]]:
    """Non-empty batches of at most `size` messages while `running()`. An
    outage is said when it begins and when it ends, not at every attempt."""
    failing = False
    while running():
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
            yield messages
