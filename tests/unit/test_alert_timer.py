"""The monitors' ticks: they begin `tick_seconds` apart, so a tick that took
long (waiting for its read model to catch up under load) is followed at
once rather than a whole pause later."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from infra.monitors.alerts import AlertTimer

pytestmark = pytest.mark.anyio


class Timed(AlertTimer):
    name = "timed"

    def __init__(self, tick_seconds: float, takes: list[float]) -> None:
        super().__init__(None, None, lambda: datetime.now(UTC), store_position=lambda: 0,  # type: ignore[arg-type]
                         projection="sla", tick_seconds=tick_seconds, signer=None)  # type: ignore[arg-type]
        self.takes = takes
        self.began: list[float] = []

    async def tick(self) -> int:
        self.began.append(asyncio.get_running_loop().time())
        await asyncio.sleep(self.takes[min(len(self.began), len(self.takes)) - 1])
        if len(self.began) == len(self.takes):
            self.stop()
        return 0


async def test_a_long_tick_is_followed_at_once() -> None:
    timer = Timed(0.3, takes=[0.5, 0.0, 0.0])
    await asyncio.wait_for(timer.run(), 5)
    gaps = [b - a for a, b in zip(timer.began, timer.began[1:], strict=False)]
    assert gaps[0] < 0.5 + 0.15, "the tick after a long one begins as it ends, not a pause later"
    assert gaps[1] >= 0.3 - 0.01, "a short tick is followed a pause after it began"
