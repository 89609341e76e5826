"""How a pull consumer's batches are taken: under load, what comes within
`linger` of the last batch is taken together; a full batch's successors and
a message after a quiet spell are fetched at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeout

from infra.bus.consuming import batches

pytestmark = pytest.mark.anyio

LINGER = 0.4


class PullSubscription:
    """Stands in for nats-py's pull subscription: hands out the messages
    waiting when `fetch` is called, as the server does, and notes when."""

    def __init__(self, arriving: list[tuple[float, int]]) -> None:
        self.loop = asyncio.get_running_loop()
        self.began = self.loop.time()
        self.arriving = arriving  # (seconds after the start, how many messages)
        self.fetched_at: list[float] = []

    async def fetch(self, size: int, timeout: float) -> list[Any]:
        now = self.loop.time() - self.began
        self.fetched_at.append(now)
        ready = sum(count for at, count in self.arriving if at <= now)
        if not ready:
            await asyncio.sleep(min(timeout, 0.01))
            raise NatsTimeout
        taken = min(size, ready)
        left, self.arriving = taken, sorted(self.arriving)
        while left:
            at, count = self.arriving.pop(0)
            if count > left:
                self.arriving.insert(0, (at, count - left))
            left -= min(count, left)
        return [object()] * taken


async def taken(subscription: PullSubscription, size: int, linger: float, total: int,
                handling: float = 0.0) -> list[tuple[float, int]]:
    """(when, how many) of each batch until `total` messages were taken."""
    got: list[tuple[float, int]] = []
    async for messages in batches(subscription, size, lambda: sum(n for _, n in got) < total, "test", linger):
        got.append((subscription.loop.time() - subscription.began, len(messages)))
        await asyncio.sleep(handling)
    return got


async def test_what_comes_within_the_linger_of_the_last_batch_is_taken_together() -> None:
    subscription = PullSubscription([(0.0, 1), *((0.05 * i, 1) for i in range(1, 7))])
    got = await taken(subscription, size=100, linger=LINGER, total=7)
    assert [n for _, n in got] == [1, 6], "the first at once, the six behind it in one batch"
    assert got[1][0] >= LINGER, "fetched no sooner than the linger after the first batch"


async def test_without_a_linger_each_fetch_takes_what_is_there() -> None:
    subscription = PullSubscription([(0.05 * i, 1) for i in range(4)])
    got = await taken(subscription, size=100, linger=0.0, total=4)
    assert [n for _, n in got] == [1, 1, 1, 1]


async def test_a_full_batch_is_followed_at_once() -> None:
    subscription = PullSubscription([(0.0, 25)])
    got = await taken(subscription, size=10, linger=LINGER, total=25)
    assert [n for _, n in got] == [10, 10, 5]
    assert got[-1][0] < LINGER, "a backlog is taken without waiting"


async def test_a_message_after_a_quiet_spell_is_taken_at_once() -> None:
    subscription = PullSubscription([(0.0, 1), (LINGER + 0.3, 1)])
    got = await taken(subscription, size=100, linger=LINGER, total=2)
    assert [n for _, n in got] == [1, 1]
    assert got[1][0] < LINGER + 0.3 + 0.1, "the fetch was already waiting when it came"


async def test_the_linger_counts_from_the_batch_not_from_its_handling() -> None:
    subscription = PullSubscription([(0.0, 1), (0.05, 3)])
    got = await taken(subscription, size=100, linger=LINGER, total=4, handling=LINGER + 0.1)
    assert [n for _, n in got] == [1, 3]
    assert subscription.fetched_at[1] < LINGER + 0.2, "handling longer than the linger: no wait on top"
