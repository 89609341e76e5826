"""The store's hash chain: tamper evidence for the history.

Every stored event gets a row in `ticketing_event_chain`, written in the same
transaction as the event: its position, the SHA-256 of its canonical content
as stored (position, aggregate id, version, topic, and the stored state bytes,
so encrypted contact data stays encrypted) chained to the hash of the event
before it in the store's total order:

    hash(n) = sha256(hash(n-1) || n || originator_id || version || topic || state)

The last row is the chain's head, recorded with each commit. Anyone who can
write the database could alter an event and its chain consistently; the
anchors (the head published to a JetStream stream of its own, outside the
database) catch that."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.engine import Connection

from projections.rows import insert_many
from projections.statements import on_driver

GENESIS = "0" * 64
"""The `previous_hash` of the first event."""

chain_metadata = MetaData()
event_chain = Table(
    "ticketing_event_chain",
    chain_metadata,
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("hash", String(64), nullable=False),
    Column("previous_hash", String(64), nullable=False),
)


def link(previous: str, position: int, originator_id: Any, version: int, topic: str, state: bytes) -> str:
    digest = hashlib.sha256(previous.encode())
    digest.update(f"|{position}|{originator_id}|{version}|{topic}|".encode())
    digest.update(state)
    return digest.hexdigest()


def head(conn: Connection, before: int | None = None) -> tuple[int, str]:
    """(position, hash) of the chain's last link (before `before`, if given); (0, GENESIS) when empty.
    On SQLite through the driver: the command writer asks at every group."""
    if conn.dialect.name == "sqlite" and conn.in_transaction():
        bound = "" if before is None else " WHERE position < ?"
        row = on_driver(conn, "execute", f'SELECT position, hash FROM "{event_chain.name}"{bound} '
                        "ORDER BY position DESC LIMIT 1", () if before is None else (before,)).fetchone()
    else:
        query = select(event_chain.c.position, event_chain.c.hash).order_by(event_chain.c.position.desc()).limit(1)
        if before is not None:
            query = query.where(event_chain.c.position < before)
        row = conn.execute(query).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def extend(conn: Connection, rows: Sequence[dict[str, Any]]) -> str:
    """Chain rows just inserted (position, originator_id, originator_version,
    topic, state; in position order, right after the head). Returns the new head."""
    last, previous = head(conn)
    if rows and last != rows[0]["id"] - 1:
        raise ChainGap(f"the chain ends at {last} but the next event is at {rows[0]['id']}: "
                       f"run `ticketing audit upgrade` to chain the store as it is")
    links = []
    for row in rows:
        current = link(previous, row["id"], row["originator_id"], row["originator_version"], row["topic"],
                       bytes(row["state"]))
        links.append({"position": row["id"], "hash": current, "previous_hash": previous})
        previous = current
    insert_many(conn, event_chain, links)
    return previous


class ChainGap(RuntimeError):
    pass


@dataclass(frozen=True)
class Link:
    position: int
    hash: str
    previous_hash: str


def links(conn: Connection, after: int, limit: int) -> dict[int, Link]:
    """The chain's links after position `after`, at most `limit` (on SQLite
    with one statement on the driver's connection: the relay reads them for
    every event it publishes)."""
    if conn.dialect.name == "sqlite":
        rows = conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
            f'SELECT position, hash, previous_hash FROM "{event_chain.name}" WHERE position > ? '
            "ORDER BY position LIMIT ?", (after, limit)).fetchall()
    else:
        rows = conn.execute(select(event_chain.c.position, event_chain.c.hash, event_chain.c.previous_hash)
                            .where(event_chain.c.position > after).order_by(event_chain.c.position)
                            .limit(limit)).all()
    return {int(r[0]): Link(int(r[0]), r[1], r[2]) for r in rows}


def walk(conn: Connection, events: Table, page: int = 5000) -> Iterator[tuple[Any, Link | None]]:
    """Every stored event with its chain link (or None), and every link
    without its event (then the event row is None), in position order: from
    the lowest position either table holds, so a row put in at position 0
    or below (SQLite takes any integer) is walked too."""
    lowest = [conn.execute(select(func.min(events.c.id))).scalar(),
              conn.execute(select(func.min(event_chain.c.position))).scalar()]
    after = min([0, *(int(p) - 1 for p in lowest if p is not None)])
    while True:
        stored = conn.execute(select(events.c.id, events.c.originator_id, events.c.originator_version,
                                     events.c.topic, events.c.state).where(events.c.id > after)
                              .order_by(events.c.id).limit(page)).all()
        chained = links(conn, after, page)
        if not stored and not chained:
            return
        end = max([r.id for r in stored] + list(chained))
        if stored and chained and len(stored) == page:
            end = min(end, stored[-1].id)
        if chained and len(chained) == page:
            end = min(end, max(chained))
        by_position = {r.id: r for r in stored if r.id <= end}
        for position in sorted(set(by_position) | {p for p in chained if p <= end}):
            yield by_position.get(position), chained.get(position)
        after = end
