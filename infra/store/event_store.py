"""The event store: an eventsourcing application persisted through
eventsourcing-sqlalchemy, plus two tables that must commit atomically with the
events: the idempotency records (command id -> first reply) and the relay's
position."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import sqlalchemy.exc
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    Notification,
    OperationalError,
)
from eventsourcing.utils import Environment
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
    select,
)
from sqlalchemy.orm import Session

from handlers.batch import StoredReply
from infra.store.chain import Link, chain_metadata, head, links
from infra.store.database import owner_only, tune_sqlite
from infra.store.keyring import KeyRing
from infra.store.mapper import DateAsISO
from infra.store.upgrades import Upgrades
from projections.rows import insert_many

metadata = MetaData()

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






class EventStore(Upgrades, Application):
    """The product's event store. Configured only from the `env` it is given,
    never from stray environment variables of the libraries."""

    name = "ticketing"

    def __init__(self, url: str, cipher_key: str | None = None, busy_timeout_ms: int = 10_000) -> None:
        env = {"PERSISTENCE_MODULE": "infra.store.recorder:Factory", "SQLALCHEMY_URL": url,
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






def _uuid(stored: Any) -> UUID:
    """An aggregate id as the database gives it back: 16 bytes (SQLite), a UUID or its text."""
    if stored.__class__ is UUID:
        return stored
    if isinstance(stored, bytes | memoryview) and len(stored) == 16:
        return UUID(bytes=bytes(stored))
    return UUID(str(stored))
