"""What every pull consumer here does: fetch batches until told to stop,
waiting out bus outages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)


async def batches(subscription: Any, size: int, running: Callable[[], bool], name: str,
                  linger: float = 0.0, revive: Callable[[], Awaitable[Any]] | None = None,
                  ) -> AsyncIterator[list[Any]]:
    """Non-empty batches of at most `size` messages while `running()`. An
    outage is said when it begins and when it ends, not at every attempt.

    `linger`: under load, the next fetch waits until this long after the
    last batch arrived, so what comes meanwhile is taken in one batch
    rather than in many small ones (a read model's transaction costs about
    as much for one event as for twenty). A message after a quiet spell, or
    a full batch's successors, are fetched at once: the wait only ever
    applies between batches that come less than `linger` apart.

    `revive`: asked when a fetch fails; a new subscription when it made the
    consumer again (it was gone: deleted by hand, say), else None."""
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
            revived = await revive() if revive is not None else None
            if revived is not None:
                subscription = revived
                continue
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


async def made_again(js: Any, stream: str, durable: str, make: Callable[[], Awaitable[Any]]) -> Any:
    """When the consumer `durable` is gone from `stream`, make it again (and
    say so); None when it is there, or the bus cannot tell now."""
    try:
        await js.consumer_info(stream, durable)
    except NotFoundError:
        log.error("%s: its consumer on %s is gone; making it again", durable, stream)
        return await make()
    except Exception:  # noqa: BLE001 - the bus is away: the caller waits and tries again
        return None
    return None
