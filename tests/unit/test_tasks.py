"""Stopping background tasks that do not take a cancellation at its word."""

from __future__ import annotations

import asyncio
import logging

import pytest

from infra.runtime.tasks import end

pytestmark = pytest.mark.anyio


async def swallowing(times: float, rounds: list[int], over: asyncio.Event | None = None) -> None:
    """A loop that, like one cancelled inside nats-py's flush, carries on
    after a cancellation (`times` of them), as a refresh loop would."""
    swallowed = 0
    while over is None or not over.is_set():
        rounds.append(1)
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            swallowed += 1
            if swallowed > times:
                raise


async def test_a_task_that_swallowed_its_cancellation_is_cancelled_again() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(swallowing(2, rounds))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(end([task]), 3)
    assert task.cancelled()
    before = len(rounds)
    await asyncio.sleep(0.05)
    assert len(rounds) == before


async def test_a_task_that_never_ends_is_left_behind_said_once_and_the_stop_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[int] = []
    over = asyncio.Event()
    stubborn = asyncio.create_task(swallowing(float("inf"), rounds, over), name="stubborn")
    fine = asyncio.create_task(asyncio.sleep(60), name="fine")
    with caplog.at_level(logging.ERROR, logger="infra.runtime.tasks"):
        await asyncio.wait_for(end([stubborn, fine], patience=0.6), 3)
    assert fine.cancelled() and not stubborn.done()
    assert [r.getMessage() for r in caplog.records] == ["stopping: stubborn did not end when cancelled; left behind"]
    over.set()
    await stubborn


async def test_tasks_that_end_by_themselves_within_the_grace_are_not_cancelled() -> None:
    quick = asyncio.create_task(asyncio.sleep(0.05, result="done"))
    await end([quick], grace=2)
    assert not quick.cancelled() and quick.result() == "done"
