"""One group commit's worth of commands: what they read (cases, earlier
replies) and what they write at the end, in one transaction."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from ticketing.case import Case


@dataclass(frozen=True)
class StoredReply:
    """The first reply to a command, kept so a repeat gets it again."""

    command_id: UUID
    fingerprint: str
    reply: bytes
    recorded_at: datetime


class Store(Protocol):
    """What command handling needs of the event store."""

    repository: Any

    def transaction(self) -> Any: ...
    def save(self, *aggregates: Any) -> Any: ...
    def stored_replies(self, command_ids: list[UUID]) -> dict[UUID, StoredReply]: ...
    def remember_replies(self, session: Any, replies: list[StoredReply]) -> None: ...


class CaseCache:
    """Cases as last committed, least recently used first; only the command
    writer's thread touches it. A batch takes a case out and gives it back
    only once its transaction has committed, so a case changed by a group that
    rolled back is read again from the store. Another instance may have
    changed a case since: the store's version check refuses the write
    (IntegrityError), the group rolls back, and the command runs again on the
    case read anew (`CommandService`); a command expecting a later version
    than the cached one reads it anew first."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._cases: OrderedDict[UUID, Case] = OrderedDict()

    def take(self, case_id: UUID) -> Case | None:
        return self._cases.pop(case_id, None)

    def give_back(self, cases: Iterable[Case]) -> None:
        for case in cases:
            self._cases[case.id] = case
        while len(self._cases) > self.size:
            self._cases.popitem(last=False)


class CommandBatch:
    """The commands of one group-commit transaction. A later command sees what
    an earlier one did (same case, same command id), and everything is written
    at the end: every changed case in one save, every reply in one insert.

    Repeated commands: a batch of one command reads its earlier reply first.
    A batch of many reads nothing ahead (repeats are rare, and the read would
    cost every group): a command that fails looks its earlier reply up then,
    and a repeat that succeeds again collides with its earlier reply's key
    when the batch is written, so the group rolls back and the writer runs
    each command again alone, reading first."""

    def __init__(self, store: Store, cache: CaseCache, earlier: dict[UUID, StoredReply] | None) -> None:
        self.store = store
        self.cache = cache
        self.cases: dict[UUID, Case] = {}
        self.earlier = earlier
        self.replies: dict[UUID, StoredReply] = {}

    def stored_reply(self, command_id: UUID) -> StoredReply | None:
        """The reply already given to this command, as far as known before running it."""
        return self.replies.get(command_id) or (self.earlier or {}).get(command_id)

    def look_up(self, command_id: UUID) -> StoredReply | None:
        """The reply already given to this command, from the store if need be."""
        if self.earlier is None:
            return self.store.stored_replies([command_id]).get(command_id)
        return self.stored_reply(command_id)

    def get(self, case_id: UUID) -> Case:
        """Raises AggregateNotFoundError."""
        if case_id not in self.cases:
            self.cases[case_id] = self.cache.take(case_id) or self.store.repository.get(case_id)
        return self.cases[case_id]

    def get_fresh(self, case_id: UUID) -> Case:
        """The case as the store holds it now, not as this process last saw it."""
        self.cases[case_id] = self.store.repository.get(case_id)
        return self.cases[case_id]

    def record(self, case: Case, reply: StoredReply) -> None:
        self.cases[case.id] = case
        self.replies[reply.command_id] = reply

    def write(self, session: Any) -> None:
        changed = [case for case in self.cases.values() if case.pending_events]
        if changed:
            self.store.save(*changed)
        if self.replies:
            self.store.remember_replies(session, list(self.replies.values()))


class CommandBatches:
    """What the command writer runs each group in: one transaction, the
    group's earlier replies read in one query, the cache of cases."""

    def __init__(self, store: Store, cache_size: int = 10_000) -> None:
        self.store = store
        self.cache = CaseCache(cache_size)

    @contextmanager
    def __call__(self, command_ids: list[UUID]) -> Iterator[CommandBatch]:
        with self.store.transaction() as session:
            earlier = self.store.stored_replies(command_ids) if len(command_ids) == 1 else None
            batch = CommandBatch(self.store, self.cache, earlier)
            yield batch
            batch.write(session)
        self.cache.give_back(batch.cases.values())
