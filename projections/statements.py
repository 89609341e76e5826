"""Many rows in one statement, run on the database driver itself: a statement
for a page of rows (as many as the driver's parameter limit allows), the
values bound by SQLAlchemy's own processors, results turned back into
Python values. What `projections.rows` reads and writes with."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.exc import DBAPIError

ROWS_A_STATEMENT = 512
"""The most rows one statement writes on SQLite."""


# Made once per table, dialect and columns (a rebuild binds millions of rows):
_BINDERS: dict[tuple[int, str, tuple[str, ...]], Callable[[dict[str, Any]], Any]] = {}
_PROCESSORS: dict[tuple[int, str], dict[str, Any]] = {}
_READERS: dict[tuple[int, str], list[Any]] = {}
_CONDITIONS: dict[int, tuple[Any, str]] = {}


def statements(conn: Connection, values: list[tuple[Any, ...]], width: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows' values in chunks, one statement each: the driver lets the
    GIL go around each statement it steps (taking it back while another
    thread runs waits up to a switch interval), so a few statements for a
    batch, not one per row; and SQLite binds each value once, where rows
    passed as one JSON array (json_each) had every row parsed again for
    each column (a rebuild's inserts took three times as long). Each chunk
    a power of two of rows, at most ROWS_A_STATEMENT and SQLite's limit of
    parameters: a few statement texts, each prepared once and cached by the
    driver."""
    most = max(1, min(ROWS_A_STATEMENT, parameters(conn) // width))
    most = 1 << (most.bit_length() - 1)
    done, n = 0, len(values)
    while done < n:
        k = min(most, 1 << ((n - done).bit_length() - 1))
        yield values[done:done + k]
        done += k


def parameters(conn: Connection) -> int:
    """How many parameters one statement may have on this SQLite connection."""
    return int(conn.connection.dbapi_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


@lru_cache(maxsize=1024)
def repeated(head: str, item: str, between: str, n: int) -> str:
    return head + between.join([item] * n)


def q_sql(name: str) -> str:
    return f'"{name}"'


def many(conn: Connection, table: Table, sql: str, names: list[str], rows: list[dict[str, Any]]) -> None:
    on_driver(conn, "executemany", sql.format(table=table_name(conn, table)),
               list(map(binder(table, conn.dialect, tuple(names)), rows)))


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


def binder(table: Table, dialect: Any, names: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """A row's values for these columns, in order, each through its bind
    processor: the values taken at once, then only the columns with a
    processor passed through it (a rebuild binds millions)."""
    key = (id(table), dialect.name, names)
    found = _BINDERS.get(key)
    if found is None:
        processors = column_processors(table, dialect)
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


def select_in(conn: Connection, table: Table, column: Any, keys: list[Any], where: Any) -> list[dict[str, Any]]:
    """`select(table).where(column.in_(keys), where)` as dicts, on SQLite
    straight through the driver (each value through its column type's
    result processor, as SQLAlchemy reads it): a live batch runs a dozen of
    these, and SQLAlchemy's statement machinery was most of their cost.
    `where`, if any, is a module-level condition (compiled once)."""
    names = [c.name for c in table.columns]
    readers = result_processors(table, conn.dialect)
    key_bind = column_processors(table, conn.dialect)[column.name]
    rows = on_driver(conn, "execute", select_in_sql(conn, table, column, len(keys), where),
                      tuple(key_bind(k) if key_bind else k for k in keys)).fetchall()
    steps = list(zip(names, readers, strict=True))
    return [{n: (r(v) if r is not None else v) for (n, r), v in zip(steps, row, strict=True)} for row in rows]


def select_in_sql(conn: Connection, table: Table, column: Any, n: int, where: Any = None) -> str:
    """The statement `select_in` runs for `n` keys. The rows are found by
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
    return (f"SELECT {columns(table)} FROM {table_name(conn, table)} "
            f"WHERE {q_sql(column.name)} IN ({', '.join('?' * n)}){condition}")


@lru_cache(maxsize=256)
def columns(table: Table) -> str:
    return ", ".join(q_sql(c.name) for c in table.columns)


@lru_cache(maxsize=256)
def update_sql(table: Table, key: str) -> tuple[str, list[str]]:
    """The UPDATE `Rows.write` runs on SQLite (`{table}` left to fill in), and its parameters' names."""
    columns = [c.name for c in table.columns if c.name != key]
    return (f"UPDATE {{table}} SET {', '.join(f'{q_sql(c)} = ?' for c in columns)} WHERE {q_sql(key)} = ?",
            [*columns, key])


def result_processors(table: Table, dialect: Any) -> list[Any]:
    key = (id(table), dialect.name)
    found = _READERS.get(key)
    if found is None:
        found = _READERS[key] = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in table.columns]
    return found


def table_name(conn: Connection, table: Table) -> str:
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(table.schema, table.schema)
    return f"{q_sql(schema)}.{q_sql(table.name)}" if schema else q_sql(table.name)


def column_processors(table: Table, dialect: Any) -> dict[str, Any]:
    key = (id(table), dialect.name)
    found = _PROCESSORS.get(key)
    if found is None:
        found = _PROCESSORS[key] = {c.name: bind_processor(c.type.dialect_impl(dialect), dialect)
                                    for c in table.columns}
    return found


def bind_processor(kind: Any, dialect: Any) -> Any:
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
