"""How a group of commands' events is recorded: eventsourcing-sqlalchemy's
recorder, with the group inserted in one statement at positions numbered by
us under the table's lock (gap-free, in commit order), chained in the same
transaction, and a forgotten customer's key destroyed with the commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy.exc
from eventsourcing.persistence import (
    StoredEvent,
)
from eventsourcing_sqlalchemy.factory import SQLAlchemyFactory
from eventsourcing_sqlalchemy.recorders import SQLAlchemyApplicationRecorder
from sqlalchemy import (
    Connection,
    Table,
    func,
    select,
)
from sqlalchemy.orm import Session

from infra.store.chain import extend
from infra.store.keyring import KeyRing, scrub
from projections.rows import insert_many
from projections.statements import on_driver

_LAST: dict[int, tuple[Table, Any]] = {}
"""The last-position query per events table, made once."""
FORGET_TOPIC = "ticketing.customer:Customer.Forgotten"


class GroupInsertRecorder(SQLAlchemyApplicationRecorder):
    """eventsourcing-sqlalchemy's recorder, with two changes to how a group's
    events are inserted:
    - one Core `INSERT` of all the rows instead of an ORM flush of one object
      per event (a group commit of many commands spends most of its time
      here otherwise);
    - the ids (the events' `position`) are numbered by us, after the last one,
      while the table is locked (PostgreSQL; SQLite has one writer anyway):
      a sequence would leave a gap for every rolled-back group, and the bus
      promises gap-free positions."""

    def _insert_stored_events(self, session: Session, stored_events: Sequence[StoredEvent],
                              **kwargs: Any) -> Sequence[int]:
        if not stored_events or not self._has_autoincrementing_ids:
            return super()._insert_stored_events(session, stored_events, **kwargs)
        self._lock_table(session)
        table = self.events_record_cls.__table__
        conn = session.connection()
        last = _last_position(conn, table)
        ids = list(range(last + 1, last + 1 + len(stored_events)))
        rows = [{"id": position, "originator_id": e.originator_id, "originator_version": e.originator_version,
                 "topic": e.topic, "state": e.state} for position, e in zip(ids, stored_events, strict=True)]
        insert_many(conn, table, rows)
        extend(conn, rows)  # the hash chain, in the same transaction
        forgotten = [e.originator_id for e in stored_events if e.topic == FORGET_TOPIC]
        if forgotten:  # their keys die with the commit of their `forgotten` events
            KeyRing.destroy(session.connection(), forgotten, datetime.now(UTC))
            sqlalchemy.event.listen(session, "after_commit", lambda _s: scrub(self.datastore.engine), once=True)
        self._notify_channel(session)
        return ids


class Factory(SQLAlchemyFactory):
    application_recorder_class = GroupInsertRecorder


def _last_position(conn: Connection, table: Table) -> int:
    """The last event's position (0 for none). On SQLite one statement on the
    driver's connection; elsewhere a statement built once per table. The
    command writer asks at every group, and building and compiling the
    statement each time, with the inserts', was a third of its Python time."""
    if conn.dialect.name == "sqlite":
        return int(on_driver(conn, "execute", f'SELECT coalesce(max(id), 0) FROM "{table.name}"', ()).fetchone()[0])
    query = _LAST.get(id(table))
    if query is None or query[0] is not table:
        query = _LAST[id(table)] = (table, select(func.coalesce(func.max(table.c.id), 0)))
    return int(conn.execute(query[1]).scalar_one())
