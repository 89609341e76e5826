"""The read models' rows bound straight to the driver (projections/rows.py)
hold exactly what SQLAlchemy itself would store."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Boolean, Column, Date, DateTime, Float, Integer, MetaData, String, Table, create_engine
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from projections import rows as rows_module
from projections import statements
from projections.rows import delete_in, insert_many
from projections.statements import bind_processor, binder

DIALECT = sqlite.dialect()
STORED = DateTime(timezone=True).dialect_impl(DIALECT)

zones = st.sampled_from([None, UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=5, minutes=45))])


@given(moment=st.datetimes(), zone=zones)
def test_a_datetime_is_written_as_sqlalchemy_writes_it(moment: datetime, zone: timezone | None) -> None:
    value = moment.replace(tzinfo=zone)
    assert bind_processor(STORED, DIALECT)(value) == STORED.bind_processor(DIALECT)(value)


@given(day=st.dates())
def test_a_date_in_a_datetime_column_and_none_go_through_as_before(day: date) -> None:
    fast, slow = bind_processor(STORED, DIALECT), STORED.bind_processor(DIALECT)
    assert fast(day) == slow(day)
    assert fast(None) is None


table = Table("t", MetaData(), Column("k", String(10), primary_key=True),
              Column("at", DateTime(timezone=True)), Column("day", Date), Column("n", Integer),
              Column("x", Float), Column("ok", Boolean), Column("s", String(50)))

rows = st.lists(st.fixed_dictionaries({
    "at": st.none() | st.datetimes(timezones=st.just(UTC)), "day": st.none() | st.dates(),
    "n": st.none() | st.integers(-(2**63), 2**63 - 1), "x": st.none() | st.floats(allow_nan=False),
    "ok": st.none() | st.booleans(), "s": st.none() | st.text(max_size=50)}), max_size=20)


@settings(deadline=None)  # a database each example: the first, cold, takes longer
@given(batch=rows)
def test_rows_inserted_through_the_driver_read_back_as_sqlalchemy_inserted_them(batch: list[dict]) -> None:
    keyed = [row | {"k": str(i)} for i, row in enumerate(batch)]
    ours, theirs = create_engine("sqlite://"), create_engine("sqlite://")
    for engine in (ours, theirs):
        table.metadata.create_all(engine)
    with ours.begin() as conn:
        insert_many(conn, table, keyed)
    with theirs.begin() as conn:
        if keyed:
            conn.execute(table.insert(), keyed)
    read = []
    for engine in (ours, theirs):
        with engine.connect() as conn:
            read.append(conn.exec_driver_sql(  # each value's storage class too: 1.0 == 1 in Python
                "SELECT k, at, day, n, x, ok, s, typeof(at), typeof(day), typeof(n), typeof(x), typeof(ok), "
                "typeof(s) FROM t ORDER BY k").all())
    assert read[0] == read[1]
    assert binder(table, DIALECT, ("k",))({"k": "a"}) == ("a",)


def test_a_driver_error_comes_out_as_sqlalchemys_and_nothing_is_written_outside_a_transaction() -> None:
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        insert_many(conn, table, [{"k": "a", "n": 1}])
    with pytest.raises(IntegrityError, match="UNIQUE"), engine.begin() as conn:
        insert_many(conn, table, [{"k": "b", "n": 2}, {"k": "a", "n": 3}])
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT k, n FROM t").all() == [("a", 1)]  # the batch rolled back whole
    with engine.connect() as conn, pytest.raises(RuntimeError, match="inside a transaction"):
        insert_many(conn, table, [{"k": "c", "n": 4}])  # SQLAlchemy would never commit it


@settings(deadline=None)
@given(keys=st.lists(st.text(max_size=10), unique=True, max_size=30), data=st.data())
def test_rows_deleted_by_their_keys_are_those_and_only_those(keys: list[str], data: st.DataObject) -> None:
    gone = data.draw(st.lists(st.sampled_from(keys), unique=True) if keys else st.just([]))
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        insert_many(conn, table, [{"k": k} for k in keys])
        delete_in(conn, table.c.k, [*gone, "never there"])
    with engine.connect() as conn:
        assert sorted(conn.exec_driver_sql("SELECT k FROM t").scalars()) == sorted(set(keys) - set(gone))


@pytest.mark.parametrize("n", [1, 7, 8, 9, 2 * statements.ROWS_A_STATEMENT + 3])
def test_a_batch_of_any_size_is_written_whole_in_statements_of_a_few_sizes(
        n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine)
    texts: set[str] = set()
    driver = statements.on_driver

    def seen(conn, method, sql, parameters):  # noqa: ANN001, ANN202 - the driver's call, recorded
        texts.add(sql)
        return driver(conn, method, sql, parameters)

    for module in (rows_module, statements):  # wherever a statement is sent from
        monkeypatch.setattr(module, "on_driver", seen)
    with engine.begin() as conn:
        insert_many(conn, table, [{"k": f"{i:05}", "n": i} for i in range(n)])
        delete_in(conn, table.c.k, [f"{i:05}" for i in range(0, n, 2)])
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT k, n FROM t ORDER BY k").all() == [
            (f"{i:05}", i) for i in range(1, n, 2)]
    assert len(texts) <= 2 * (statements.ROWS_A_STATEMENT.bit_length())  # powers of two: a few texts
