"""Group commit: one thread runs every write, and the commands that queue up
while a transaction is open are run together in the next one.

eventsourcing is synchronous, so the event loop never waits on the database:
handlers `await writer.run(work, key)`, and the work runs here, given the
group's batch: whatever `begin(keys)` yields for the keys of the group's
pieces (the transaction, what it can read ahead for all of them at once,
and what the group writes at its end). An expected error raised by one piece of work fails only that
piece (it raises before changing anything); any other error, in a piece or
when the batch is written, rolls the whole group back, and each piece is then
run again alone so that one bad command cannot take its neighbours down."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)


Batch = TypeVar("Batch")


@dataclass
class _Job(Generic[Batch]):
    work: Callable[[Batch], Any]
    key: Any
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] | None = None


class GroupCommitWriter(Generic[Batch]):
    def __init__(
        self,
        begin: Callable[[list[Any]], AbstractContextManager[Batch]],
        *,
        expected_errors: tuple[type[BaseException], ...],
        on_commit: Callable[[], None] = lambda: None,
        max_batch: int = 256,
    ) -> None:
        self._begin = begin
        self._expected = expected_errors
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job[Batch] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="command-writer", daemon=True)
        self.batches = 0
        """Transactions committed."""
        self.jobs = 0
        self.split = 0
        """Groups that failed together and were run again one by one."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    async def run(self, work: Callable[[Batch], Any], key: Any = None) -> Any:
        loop = asyncio.get_running_loop()
        job = _Job(work, key, loop, loop.create_future())
        self._queue.put(job)
        return await job.future

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first, *self._drain()]
            stop = batch[-1] is None
            jobs = [j for j in batch if j is not None]
            self._commit(jobs)
            if stop:
                return

    def _drain(self) -> Iterator[_Job | None]:
        for _ in range(self._max_batch - 1):
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            yield item
            if item is None:
                return

    def _commit(self, jobs: list[_Job]) -> None:
        try:
            self._run_in_one_transaction(jobs)
        except Exception as error:  # noqa: BLE001 - any failure of the group
            if len(jobs) == 1:
                jobs[0].outcome = (False, error)
            else:
                # A repeated command does this too (see CommandBatch), so it is no alarm.
                self.split += 1
                log.debug("group of %d writes failed (%s); running them one by one", len(jobs), error)
                for job in jobs:
                    self._commit([job])
                return
        else:
            self.batches += 1
            self.jobs += len(jobs)
            try:
                self._on_commit()
            except Exception:  # noqa: BLE001 - a wake-up must not fail the commit
                log.exception("on_commit hook failed")
        # One wake-up of each waiting loop per group, not one per job: each is a write to its self-pipe.
        settled: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in jobs:
            settled.setdefault(job.loop, []).append(job)
        for loop, done in settled.items():
            loop.call_soon_threadsafe(_settle, done)

    def _run_in_one_transaction(self, jobs: list[_Job[Batch]]) -> None:
        with self._begin([job.key for job in jobs]) as batch:
            for job in jobs:
                try:
                    job.outcome = (True, job.work(batch))
                except self._expected as error:
                    job.outcome = (False, error)


def _settle(jobs: list[_Job]) -> None:
    for job in jobs:
        assert job.outcome is not None
        ok, value = job.outcome
        if job.future.done():
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)
