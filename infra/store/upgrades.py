"""One-time upgrades of a store written by an older version, run by `serve`
at start: contact data sealed with each customer's own key, and the hash
chain laid over events stored before it existed. Each runs in the store's own
transactions and touches nothing an upgraded store holds."""

from __future__ import annotations

from eventsourcing.persistence import (
    StoredEvent,
)
from sqlalchemy import (
    select,
)

from infra.store.chain import extend, head
from infra.store.mapper import plain_fields

SEALED_TOPICS = ("ticketing.customer:Customer.Registered", "ticketing.repair_job:RepairJob.Registered")


class Upgrades:
    """What `EventStore` does once for an older store."""

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
