"""The event store: an eventsourcing application persisted through
eventsourcing-sqlalchemy, plus two tables that must commit atomically with the
events: the idempotency records (command id -> first reply) and the relay's
position."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy.exc
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.utils import Environment
from eventsourcing_sqlalchemy.factory import SQLAlchemyFactory
from eventsourcing_sqlalchemy.recorders import SQLAlchemyApplicationRecorder
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    select,
)
from sqlalchemy.orm import Session

from handlers.batch import StoredReply
from infra.store.chain import Link, chain_metadata, extend, head, links
from infra.store.database import owner_only, tune_sqlite
from infra.store.keyring import KeyRing, scrub
from infra.store.mapper import DateAsISO, plain_fields
from projections.rows import insert_many
from projections.statements import on_driver

metadata = MetaData()

FORGET_TOPIC = "ticketing.customer:Customer.Forgotten"
SEALED_TOPICS = ("ticketing.customer:Customer.Registered", "ticketing.repair_job:RepairJob.Registered")
"""The events with contact fields sealed per customer (their classes' `sealed`)."""

command_replies = Table(
    "ticketing_command_replies",
    metadata,
    Column("command_id", String(36), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("reply", LargeBinary, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

relay_positions = Table(
    "ticketing_relay_position",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
)


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


class EventStore(Application):
    """The product's event store. Configured only from the `env` it is given,
    never from stray environment variables of the libraries."""

    name = "ticketing"

    def __init__(self, url: str, cipher_key: str | None = None, busy_timeout_ms: int = 10_000) -> None:
        env = {"PERSISTENCE_MODULE": "infra.store.event_store:Factory", "SQLALCHEMY_URL": url,
               "MAPPER_TOPIC": "infra.store.mapper:ConfidentialMapper"}
        if cipher_key:
            env.update(CIPHER_TOPIC="eventsourcing.cipher:AESCipher", CIPHER_KEY=cipher_key)
        owner_only(url)
        super().__init__(env=env)
        self.opened_with = (url, cipher_key)
        """What another process opens this store with (the rebuild's decoder)."""
        engine = self.recorder.datastore.engine
        tune_sqlite(engine, durable=True, busy_timeout_ms=busy_timeout_ms)
        metadata.create_all(engine)
        chain_metadata.create_all(engine)
        if cipher_key:
            self.mapper.keyring = KeyRing(self.recorder, cipher_key)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    def save(self, *aggregates: Any, **kwargs: Any) -> Any:
        """eventsourcing's `save` (pinned at 9.5.6), for aggregates only: its
        `ProcessingEvent.collect_events` first tests each object against two
        runtime Protocols, which Python 3.11 does attribute by attribute
        (30 us an aggregate: 3-4 % of the command writer's time). Everything
        saved here is an aggregate."""
        processing_event: ProcessingEvent[Any] = ProcessingEvent()
        for aggregate in aggregates:
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)
        return recordings

    def construct_env(self, name: str, env: Any = None) -> Environment:
        return Environment(name, dict(env or {}))

    @property
    def engine(self) -> Any:
        return self.recorder.datastore.engine

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction; nested calls (the application's own saves among
        them) join it, so everything inside commits or rolls back together.
        Database errors come out as eventsourcing's persistence errors, whether
        they happen in the body or at commit."""
        try:
            with self.recorder.transaction(commit=True) as session:
                yield session
        except sqlalchemy.exc.IntegrityError as error:
            raise IntegrityError(str(error.orig)) from error
        except sqlalchemy.exc.SQLAlchemyError as error:
            raise OperationalError(str(error)) from error

    # ---- idempotency --------------------------------------------------------

    def stored_replies(self, command_ids: list[UUID]) -> dict[UUID, StoredReply]:
        """The replies already given to any of these commands."""
        with self.recorder.transaction(commit=False) as session:
            rows = session.connection().execute(
                select(command_replies).where(command_replies.c.command_id.in_([str(i) for i in command_ids]))
            ).all()
        return {UUID(row.command_id): StoredReply(UUID(row.command_id), row.fingerprint, bytes(row.reply),
                                                  row.recorded_at) for row in rows}

    def remember_replies(self, session: Session, replies: list[StoredReply]) -> None:
        insert_many(session.connection(), command_replies, [
            {"command_id": str(r.command_id), "fingerprint": r.fingerprint, "reply": r.reply,
             "recorded_at": r.recorded_at} for r in replies])

    # ---- the notification log, for the relay and rebuilds --------------------

    def notifications(self, after: int, limit: int) -> list[Notification]:
        """The stored events after position `after`, at most `limit`, in order
        (what the relay publishes)."""
        with self.engine.connect() as conn:
            return [Notification(id=row[0], originator_id=_uuid(row[1]), originator_version=row[2],
                                 topic=row[3], state=row[4]) for row in self.stored(conn, after, None, limit)]

    def stored(self, conn: Connection, after: int, end: int | None, limit: int) -> list[tuple[Any, ...]]:
        """The rows (position, aggregate id, version, topic, state) of the
        events after `after` (up to `end`), at most `limit`, in order: with one
        statement on SQLite's own connection (the aggregate id as its 16
        stored bytes) or SQLAlchemy Core elsewhere, not through the recorder's
        ORM query, whose row objects were a twelfth of the worker's time
        under load (the relay reads every event once, a rebuild every one)."""
        table = self.events_table
        if conn.dialect.name == "sqlite":
            bound = "" if end is None else " AND id <= ?"
            return conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                f'SELECT id, originator_id, originator_version, topic, state FROM "{table.name}" '
                f"WHERE id > ?{bound} ORDER BY id LIMIT ?",
                (after, limit) if end is None else (after, end, limit)).fetchall()
        query = select(table.c.id, table.c.originator_id, table.c.originator_version, table.c.topic,
                       table.c.state).where(table.c.id > after)
        if end is not None:
            query = query.where(table.c.id <= end)
        rows = conn.execute(query.order_by(table.c.id).limit(limit))
        return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    # ---- the hash chain (infra/store/chain.py) ---------------------------------

    @property
    def events_table(self) -> Any:
        return self.recorder.events_record_cls.__table__

    def links(self, after: int, limit: int) -> dict[int, Link]:
        with self.engine.connect() as conn:
            return links(conn, after, limit)

    def chain_head(self) -> tuple[int, str]:
        with self.engine.connect() as conn:
            return head(conn)

    def chain_unchained(self, page: int = 5000) -> int:
        """Chain a store written before the chain existed (a one-time upgrade,
        in one transaction); returns how many events were chained. A store
        whose chain has begun is never extended here: every event the
        product records is chained in its own transaction, so one beyond the
        head was put in by someone else, and `audit verify` names it."""
        chained = after = 0
        with self.transaction() as session:
            conn = session.connection()
            if head(conn)[0]:
                return 0
            table = self.events_table
            while True:
                rows = [dict(r._mapping) for r in conn.execute(
                    select(table.c.id, table.c.originator_id, table.c.originator_version, table.c.topic,
                           table.c.state).where(table.c.id > after).order_by(table.c.id).limit(page))]
                if not rows:
                    return chained
                extend(conn, rows)
                chained, after = chained + len(rows), rows[-1]["id"]

    def seal_unsealed(self, page: int = 1000) -> int:
        """Seal with each customer's own key the contact data of the events
        stored before per-customer keys existed (a one-time upgrade, run
        before the chain links them: a chained event is never rewritten).
        Returns how many events were sealed."""
        if self.mapper.keyring is None:
            return 0
        table, sealed, after = self.events_table, 0, 0
        while True:
            with self.transaction() as session:
                conn = session.connection()
                chained, _ = head(conn)
                rows = conn.execute(select(table).where(table.c.id > max(after, chained),
                                                        table.c.topic.in_(SEALED_TOPICS))
                                    .order_by(table.c.id).limit(page)).all()
                if not rows:
                    return sealed
                for row in rows:
                    event = self.mapper.still_sealed(StoredEvent(
                        row.originator_id, row.originator_version, row.topic, bytes(row.state)))
                    if plain_fields(event):
                        state = self.mapper.to_stored_event(event).state
                        conn.execute(table.update().where(table.c.id == row.id).values(state=state))
                        sealed += 1
                after = rows[-1].id

    def case_notifications(self, case_id: UUID) -> list[Notification]:
        """A case's events with their positions in the total order."""
        records = self.recorder.events_record_cls
        with self.recorder.transaction(commit=False) as session:
            rows = session.query(records).filter(records.originator_id == case_id)\
                .order_by(records.originator_version).all()
            return [Notification(id=r.id, originator_id=r.originator_id,
                                 originator_version=r.originator_version, topic=r.topic,
                                 state=bytes(r.state)) for r in rows]

    def relay_position(self, name: str) -> int:
        with self.recorder.transaction(commit=False) as session:
            value = session.execute(
                select(relay_positions.c.position).where(relay_positions.c.name == name)
            ).scalar()
        return int(value or 0)

    def save_relay_position(self, name: str, position: int) -> None:
        with self.recorder.transaction(commit=True) as session:
            updated = session.execute(
                relay_positions.update().where(relay_positions.c.name == name).values(position=position)
            ).rowcount
            if not updated:
                session.execute(relay_positions.insert().values(name=name, position=position))


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


_LAST: dict[int, tuple[Table, Any]] = {}


def _uuid(stored: Any) -> UUID:
    """An aggregate id as the database gives it back: 16 bytes (SQLite), a UUID or its text."""
    if stored.__class__ is UUID:
        return stored
    if isinstance(stored, bytes | memoryview) and len(stored) == 16:
        return UUID(bytes=bytes(stored))
    return UUID(str(stored))
