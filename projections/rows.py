"""Reading and writing a batch's rows at once: what every projection's
`apply` does with its tables (a select per table for the rows the batch
touches, an executemany for the inserts and one for the updates), and the
per-person month counters two projections keep."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import Column, Connection, Index, Integer, MetaData, String, Table, bindparam, select
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.exc import DBAPIError


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
                self.rows.update((row[key.name], row) for row in _select_in(conn, table, column, chunk, where))
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
                sql, names = _update_sql(self.table, self.key.name)
                _many(self.conn, self.table, sql, names, [row | {self.key.name: row["_key"]} for row in updates])
                return
            columns = [c.name for c in self.table.columns if c.name != self.key.name]
            statement = (self.table.update().where(self.key == bindparam("_key"))
                         .values({name: bindparam(name) for name in columns}))
            self.conn.execute(statement, updates)


def insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT the rows (all with the same keys). On SQLite straight through
    the driver, each value through its column type's own bind processor
    (stored exactly as SQLAlchemy would store it), many rows a statement
    (`_statements`), without SQLAlchemy's per-row statement machinery: most
    of a rebuild's cost."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), rows)
        return
    names = tuple(rows[0])
    values = list(map(_binder(table, conn.dialect, names), rows))
    into = f"INSERT INTO {table_name(conn, table)} ({', '.join(_q(n) for n in names)}) VALUES "
    one = f"({', '.join('?' * len(names))})"
    for chunk in _statements(conn, values, len(names)):
        on_driver(conn, "execute", _repeated(into, one, ", ", len(chunk)), list(chain.from_iterable(chunk)))


def insert_missing(conn: Connection, table: Table, row: dict[str, Any]) -> None:
    """INSERT the row unless one with its primary key is there (left as it
    is): a projection's note of how it keeps its counters, checked at every
    batch. On SQLite one statement through the driver (INSERT OR IGNORE);
    SQLAlchemy's statement machinery was a tenth of a one-event batch."""
    if conn.dialect.name == "sqlite":
        names = tuple(row)
        on_driver(conn, "execute", f"INSERT OR IGNORE INTO {table_name(conn, table)} "
                  f"({', '.join(_q(n) for n in names)}) VALUES ({', '.join('?' * len(names))})",
                  _binder(table, conn.dialect, names)(row))
        return
    key = [column == row[column.name] for column in table.primary_key.columns]
    if conn.execute(select(*table.primary_key.columns).where(*key)).first() is None:
        conn.execute(table.insert().values(row))


def delete_in(conn: Connection, column: Any, keys: list[Any]) -> None:
    """DELETE the rows of `column`'s table whose `column` is one of `keys`:
    on SQLite many keys a statement (`_statements`)."""
    if not keys:
        return
    table = column.table
    if conn.dialect.name != "sqlite":
        for start in range(0, len(keys), 500):
            conn.execute(table.delete().where(column.in_(keys[start:start + 500])))
        return
    bind = _processors(table, conn.dialect)[column.name]
    bound = [(bind(k) if bind else k,) for k in keys]
    where = f"DELETE FROM {table_name(conn, table)} WHERE {_q(column.name)} IN ("
    for chunk in _statements(conn, bound, 1):
        on_driver(conn, "execute", _repeated(where, "?", ", ", len(chunk)) + ")", [k for k, in chunk])


ROWS_A_STATEMENT = 512
"""The most rows one statement writes on SQLite."""


def _statements(conn: Connection, values: list[tuple[Any, ...]], width: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows' values in chunks, one statement each: the driver lets the
    GIL go around each statement it steps (taking it back while another
    thread runs waits up to a switch interval), so a few statements for a
    batch, not one per row; and SQLite binds each value once, where rows
    passed as one JSON array (json_each) had every row parsed again for
    each column (a rebuild's inserts took three times as long). Each chunk
    a power of two of rows, at most ROWS_A_STATEMENT and SQLite's limit of
    parameters: a few statement texts, each prepared once and cached by the
    driver."""
    most = max(1, min(ROWS_A_STATEMENT, _parameters(conn) // width))
    most = 1 << (most.bit_length() - 1)
    done, n = 0, len(values)
    while done < n:
        k = min(most, 1 << ((n - done).bit_length() - 1))
        yield values[done:done + k]
        done += k


def _parameters(conn: Connection) -> int:
    """How many parameters one statement may have on this SQLite connection."""
    return int(conn.connection.dbapi_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


@lru_cache(maxsize=1024)
def _repeated(head: str, item: str, between: str, n: int) -> str:
    return head + between.join([item] * n)


def _q(name: str) -> str:
    return f'"{name}"'


def _many(conn: Connection, table: Table, sql: str, names: list[str], rows: list[dict[str, Any]]) -> None:
    on_driver(conn, "executemany", sql.format(table=table_name(conn, table)),
               list(map(_binder(table, conn.dialect, tuple(names)), rows)))


def on_driver(conn: Connection, method: str, sql: str, parameters: Any) -> Any:
    """Run a statement on SQLite's own connection, inside the transaction
    `conn` has begun (the driver's implicit one: SQLAlchemy commits or rolls
    it back), without SQLAlchemy's per-statement result machinery (a live
    batch runs a few dozen: it was a ninth of one). Its errors come out as
    SQLAlchemy's (`OperationalError`, `IntegrityError`, ...), as from
    `conn.execute`."""
    if not conn.in_transaction():
        raise RuntimeError("rows are read and written inside a transaction")
    try:
        return getattr(conn.connection.dbapi_connection, method)(sql, parameters)
    except sqlite3.Error as error:
        raise DBAPIError.instance(sql, parameters, error, sqlite3.Error) from error


_BINDERS: dict[tuple[int, str, tuple[str, ...]], Callable[[dict[str, Any]], Any]] = {}


def _binder(table: Table, dialect: Any, names: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """A row's values for these columns, in order, each through its bind
    processor: the values taken at once, then only the columns with a
    processor passed through it (a rebuild binds millions)."""
    key = (id(table), dialect.name, names)
    found = _BINDERS.get(key)
    if found is None:
        processors = _processors(table, dialect)
        take = itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
        steps = [(i, processor) for i, name in enumerate(names) if (processor := processors[name]) is not None]
        if not steps:
            found = take
        else:
            def found(row: dict[str, Any]) -> tuple[Any, ...]:
                values = list(take(row))
                for i, processor in steps:
                    values[i] = processor(values[i])
                return tuple(values)
        _BINDERS[key] = found
    return found


_PROCESSORS: dict[tuple[int, str], dict[str, Any]] = {}
_READERS: dict[tuple[int, str], list[Any]] = {}
_CONDITIONS: dict[int, tuple[Any, str]] = {}


def _select_in(conn: Connection, table: Table, column: Any, keys: list[Any], where: Any) -> list[dict[str, Any]]:
    """`select(table).where(column.in_(keys), where)` as dicts, on SQLite
    straight through the driver (each value through its column type's
    result processor, as SQLAlchemy reads it): a live batch runs a dozen of
    these, and SQLAlchemy's statement machinery was most of their cost.
    `where`, if any, is a module-level condition (compiled once)."""
    names = [c.name for c in table.columns]
    readers = _result_processors(table, conn.dialect)
    key_bind = _processors(table, conn.dialect)[column.name]
    rows = on_driver(conn, "execute", select_in_sql(conn, table, column, len(keys), where),
                      tuple(key_bind(k) if key_bind else k for k in keys)).fetchall()
    steps = list(zip(names, readers, strict=True))
    return [{n: (r(v) if r is not None else v) for (n, r), v in zip(steps, row, strict=True)} for row in rows]


def select_in_sql(conn: Connection, table: Table, column: Any, n: int, where: Any = None) -> str:
    """The statement `_select_in` runs for `n` keys. The rows are found by
    their keys: `where` only filters them, behind a unary `+` that keeps
    SQLite's planner from reaching them through an index of its own. Without
    statistics the planner takes an equality or IN on a few values for the
    narrower path: `state IN ('running', 'paused')` led it through the
    running limits' deadline index, a walk over every running limit for each
    batch (93 ms a batch at 80,000, growing with them; by the case's own
    index: 1.7 ms)."""
    condition = ""
    if where is not None:
        compiled = _CONDITIONS.get(id(where))
        if compiled is None or compiled[0] is not where:
            if len(_CONDITIONS) > 64:
                _CONDITIONS.clear()
            compiled = _CONDITIONS[id(where)] = (where, str(where.compile(
                dialect=conn.dialect, compile_kwargs={"literal_binds": True})))
        condition = f" AND +({compiled[1]})"
    return (f"SELECT {_columns(table)} FROM {table_name(conn, table)} "
            f"WHERE {_q(column.name)} IN ({', '.join('?' * n)}){condition}")


@lru_cache(maxsize=256)
def _columns(table: Table) -> str:
    return ", ".join(_q(c.name) for c in table.columns)


@lru_cache(maxsize=256)
def _update_sql(table: Table, key: str) -> tuple[str, list[str]]:
    """The UPDATE `Rows.write` runs on SQLite (`{table}` left to fill in), and its parameters' names."""
    columns = [c.name for c in table.columns if c.name != key]
    return (f"UPDATE {{table}} SET {', '.join(f'{_q(c)} = ?' for c in columns)} WHERE {_q(key)} = ?",
            [*columns, key])


def _result_processors(table: Table, dialect: Any) -> list[Any]:
    key = (id(table), dialect.name)
    found = _READERS.get(key)
    if found is None:
        found = _READERS[key] = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in table.columns]
    return found


def table_name(conn: Connection, table: Table) -> str:
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(table.schema, table.schema)
    return f"{_q(schema)}.{_q(table.name)}" if schema else _q(table.name)


def _processors(table: Table, dialect: Any) -> dict[str, Any]:
    key = (id(table), dialect.name)
    found = _PROCESSORS.get(key)
    if found is None:
        found = _PROCESSORS[key] = {c.name: _bind_processor(c.type.dialect_impl(dialect), dialect)
                                    for c in table.columns}
    return found


def _bind_processor(kind: Any, dialect: Any) -> Any:
    """The type's bind processor; for SQLite's DATETIME in its default
    format, one that writes the same text with one tuple format (not a dict
    of seven fields) for the datetimes it is given, and leaves anything else
    to SQLAlchemy's."""
    processor = kind.bind_processor(dialect)
    if type(kind) is not SQLITE_DATETIME or kind._storage_format != SQLITE_DATETIME._storage_format:
        return processor

    def process(value: Any) -> Any:
        if value is None:
            return None
        if value.__class__ is datetime:  # its wall time, any offset dropped: "2026-11-27 09:20:50.123456"
            return value.isoformat(" ", "microseconds")[:26]
        return processor(value)
    return process


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
