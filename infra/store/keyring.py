"""Crypto-shredding: each customer's contact data (name, phone, address, a
repair job's site address) is sealed in the stored events with a key of the
customer's own, kept apart from the events in `ticketing_customer_keys` and
itself wrapped with the store's key. Forgetting a customer destroys that
key, in the same transaction as the customer's `forgotten` event: from then
on the sealed fields read as "(forgotten)" everywhere, while the stored
events - and so the hash chain - stay byte for byte what they were.

A sealed field in the stored state is `sealed:v1:<base64 AES-GCM of the
JSON value>`; a field stored before this existed is plain (inside the
event's store-key encryption) until the upgrade seals it."""

from __future__ import annotations

import base64
import logging
import threading
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.cipher import AESCipher
from eventsourcing.utils import Environment
from sqlalchemy import Column, DateTime, LargeBinary, MetaData, String, Table, select, text
from sqlalchemy.engine import Connection, Engine

from ticketing.values import FORGOTTEN

log = logging.getLogger(__name__)

PREFIX = "sealed:v1:"

keys_metadata = MetaData()
customer_keys = Table(
    "ticketing_customer_keys",
    keys_metadata,
    Column("customer_id", String(36), primary_key=True),
    Column("wrapped_key", LargeBinary),  # NULL once forgotten
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("forgotten_at", DateTime(timezone=True)),
)


def _cipher(key: str) -> AESCipher:
    return AESCipher(Environment(env={AESCipher.CIPHER_KEY: key}))


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


class KeyRing:
    """The customers' keys. Every call runs in the caller's transaction when
    there is one (the recorder's `transaction` joins it), so a key created
    for an event commits or rolls back with it; nothing is cached, so a key
    destroyed by one process is gone for every other at once."""

    def __init__(self, recorder: Any, master_key: str) -> None:
        self.recorder = recorder
        self.master = _cipher(master_key)
        keys_metadata.create_all(recorder.datastore.engine)

    def _conn(self, commit: bool) -> Any:
        return self.recorder.transaction(commit=commit)

    def _key(self, conn: Connection, customer_id: UUID, create: bool) -> AESCipher | None:
        """The customer's cipher; None once forgotten (or, without `create`, never made)."""
        row = conn.execute(select(customer_keys.c.wrapped_key, customer_keys.c.forgotten_at)
                           .where(customer_keys.c.customer_id == str(customer_id))).first()
        if row is None:
            if not create:
                return None
            key = AESCipher.create_key(32)
            conn.execute(customer_keys.insert().values(
                customer_id=str(customer_id), wrapped_key=self.master.encrypt(key.encode()),
                created_at=datetime.now(UTC)))
            return _cipher(key)
        if row.wrapped_key is None:
            return None
        return _cipher(self.master.decrypt(bytes(row.wrapped_key)).decode())

    def seal(self, customer_id: UUID, values: dict[str, Any]) -> dict[str, Any]:
        """The values sealed with the customer's key (made on first use); a
        forgotten customer's are not kept at all."""
        with self._conn(commit=True) as session:
            cipher = self._key(session.connection(), customer_id, create=True)
        if cipher is None:
            return {name: FORGOTTEN for name in values}
        return {name: PREFIX + base64.b64encode(cipher.encrypt(orjson.dumps(value))).decode()
                for name, value in values.items()}

    def unseal(self, customer_id: UUID, values: dict[str, Any]) -> dict[str, Any]:
        """The values opened; "(forgotten)" where the key is gone."""
        with self._conn(commit=False) as session:
            cipher = self._key(session.connection(), customer_id, create=False)
        if cipher is None:
            return {name: FORGOTTEN for name in values}
        return {name: orjson.loads(cipher.decrypt(base64.b64decode(value[len(PREFIX):])))
                for name, value in values.items()}

    @staticmethod
    def destroy(conn: Connection, customer_ids: list[UUID], at: datetime) -> None:
        """Destroy these customers' keys (in the transaction of their `forgotten` events)."""
        for customer_id in customer_ids:
            updated = conn.execute(customer_keys.update().where(customer_keys.c.customer_id == str(customer_id))
                                   .values(wrapped_key=None, forgotten_at=at)).rowcount
            if not updated:  # never had one: say it is forgotten, so none is made later
                conn.execute(customer_keys.insert().values(customer_id=str(customer_id), wrapped_key=None,
                                                           created_at=at, forgotten_at=at))


def scrub(engine: Engine) -> None:
    """After a key is destroyed: leave no copy of it in the database's files.
    SQLite (secure_delete is on for the store) keeps the old page in its WAL
    until a checkpoint: checkpoint and truncate it. PostgreSQL keeps the old
    row version until the table is rewritten: VACUUM FULL the (small) key
    table. Runs on a thread of its own, after the commit; a failure is logged."""
    def run() -> None:
        try:
            if engine.dialect.name == "sqlite":
                with engine.connect() as conn:
                    busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
                    if busy and busy[0]:
                        log.warning("a destroyed customer key may stay in the SQLite WAL until the next "
                                    "checkpoint (readers were busy)")
            elif engine.dialect.name == "postgresql":
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text(f"VACUUM FULL {customer_keys.name}"))
        except Exception as error:  # noqa: BLE001 - the key is destroyed; this only tidies copies
            log.warning("scrubbing the copies of a destroyed customer key failed: %s", type(error).__name__)

    threading.Thread(target=run, name="key-scrub", daemon=True).start()
