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
    """Non-empty batches of at most `size` messages while `running()`."""
    while running():
        try:
            messages = await subscription.fetch(size, timeout=0.25)
        except (NatsTimeout, TimeoutError):
            continue
        except Exception as error:  # noqa: BLE001 - bus outage: wait and fetch again
            log.warning("%s: fetch failed (%s)", name, error)
            await asyncio.sleep(0.5)
            continue
        if messages:
            yield messages
