"""Reading and writing a batch's rows at once: what every projection's
`apply` does with its tables (a select per table for the rows the batch
touches, an executemany for the inserts and one for the updates), and the
per-person month counters two projections keep."""

from __future__ import annotations

from itertools import chain
from typing import Any

from sqlalchemy import Column, Connection, Index, Integer, MetaData, String, Table, bindparam, select

from projections.statements import (
    binder,
    column_processors,
    many,
    on_driver,
    q_sql,
    repeated,
    select_in,
    statements,
    table_name,
    update_sql,
)


class Rows:
    """The rows of one table that a batch touches, read at once and written
    at once."""

    def __init__(self, conn: Connection, table: Table, key: Any, keys: set[str], *, by: Any = None,
                 where: Any = None) -> None:
        """The rows whose `key` is in `keys`; or, given `by`, whose `by`
        column is (and that match `where`)."""
        self.conn, self.table, self.key = conn, table, key
        self.rows: dict[str, dict[str, Any]] = {}
        ordered = list(keys)
        column = key if by is None else by
        for start in range(0, len(ordered), 500):
            chunk = ordered[start:start + 500]
            if conn.dialect.name == "sqlite":
                self.rows.update((row[key.name], row) for row in select_in(conn, table, column, chunk, where))
                continue
            query = select(table).where(column.in_(chunk))
            if where is not None:
                query = query.where(where)
            self.rows.update((row[key.name], dict(row)) for row in conn.execute(query).mappings())
        self.existing = set(self.rows)
        self.changed: set[str] = set()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def put(self, key: str, row: dict[str, Any]) -> None:
        self.rows[key] = row
        self.changed.add(key)

    def write(self) -> None:
        inserts = [self.rows[k] for k in self.changed if k not in self.existing]
        updates = [self.rows[k] | {"_key": k} for k in self.changed if k in self.existing]
        if inserts:
            insert_many(self.conn, self.table, inserts)
        if updates:
            if self.conn.dialect.name == "sqlite":
                sql, names = update_sql(self.table, self.key.name)
                many(self.conn, self.table, sql, names, [row | {self.key.name: row["_key"]} for row in updates])
                return
            columns = [c.name for c in self.table.columns if c.name != self.key.name]
            statement = (self.table.update().where(self.key == bindparam("_key"))
                         .values({name: bindparam(name) for name in columns}))
            self.conn.execute(statement, updates)


def insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT the rows (all with the same keys). On SQLite straight through
    the driver, each value through its column type's own bind processor
    (stored exactly as SQLAlchemy would store it), many rows a statement
    (`statements`), without SQLAlchemy's per-row statement machinery: most
    of a rebuild's cost."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), rows)
        return
    names = tuple(rows[0])
    values = list(map(binder(table, conn.dialect, names), rows))
    into = f"INSERT INTO {table_name(conn, table)} ({', '.join(q_sql(n) for n in names)}) VALUES "
    one = f"({', '.join('?' * len(names))})"
    for chunk in statements(conn, values, len(names)):
        on_driver(conn, "execute", repeated(into, one, ", ", len(chunk)), list(chain.from_iterable(chunk)))


def insert_missing(conn: Connection, table: Table, row: dict[str, Any]) -> None:
    """INSERT the row unless one with its primary key is there (left as it
    is): a projection's note of how it keeps its counters, checked at every
    batch. On SQLite one statement through the driver (INSERT OR IGNORE);
    SQLAlchemy's statement machinery was a tenth of a one-event batch."""
    if conn.dialect.name == "sqlite":
        names = tuple(row)
        on_driver(conn, "execute", f"INSERT OR IGNORE INTO {table_name(conn, table)} "
                  f"({', '.join(q_sql(n) for n in names)}) VALUES ({', '.join('?' * len(names))})",
                  binder(table, conn.dialect, names)(row))
        return
    key = [column == row[column.name] for column in table.primary_key.columns]
    if conn.execute(select(*table.primary_key.columns).where(*key)).first() is None:
        conn.execute(table.insert().values(row))


def delete_in(conn: Connection, column: Any, keys: list[Any]) -> None:
    """DELETE the rows of `column`'s table whose `column` is one of `keys`:
    on SQLite many keys a statement (`statements`)."""
    if not keys:
        return
    table = column.table
    if conn.dialect.name != "sqlite":
        for start in range(0, len(keys), 500):
            conn.execute(table.delete().where(column.in_(keys[start:start + 500])))
        return
    bind = column_processors(table, conn.dialect)[column.name]
    bound = [(bind(k) if bind else k,) for k in keys]
    where = f"DELETE FROM {table_name(conn, table)} WHERE {q_sql(column.name)} IN ("
    for chunk in statements(conn, bound, 1):
        on_driver(conn, "execute", repeated(where, "?", ", ", len(chunk)) + ")", [k for k, in chunk])






































def person_months(name: str, metadata: MetaData) -> Table:
    """A table of counts per month (in the department's time zone), person
    and figure: what the staff assessment sums (a quarter is three months'
    rows of the team, whatever the store's size)."""
    return Table(
        name,
        metadata,
        Column("key", String(300), primary_key=True),  # "month|figure|person"
        Column("month", String(7), nullable=False),  # 2026-11
        Column("person", String(200), nullable=False),
        Column("figure", String(40), nullable=False),
        Column("n", Integer, nullable=False),
        Index(f"ix_{name}_month", "month"),
    )


def add_up(conn: Connection, table: Table, counts: dict[tuple[str, str, str], int]) -> None:
    """Add (month, figure, person) -> n to a `person_months` table."""
    if not counts:
        return
    rows = {f"{month}|{figure}|{person}": (month, figure, person, n) for (month, figure, person), n in counts.items()}
    kept = Rows(conn, table, table.c.key, set(rows))
    for key, (month, figure, person, n) in rows.items():
        before = kept.get(key)
        kept.put(key, {"key": key, "month": month, "person": person, "figure": figure,
                       "n": n + (before["n"] if before else 0)})
    kept.write()
