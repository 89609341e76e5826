"""The SLA timer's questions, asked several times a second, and a live
batch's read of its cases' running limits are answered from an index range
of what is due or of those cases, never by walking the running limits
(SQLite's query plans, read with EXPLAIN QUERY PLAN)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from infra.store.database import make_engine
from projections.rows import Rows
from projections.sla_reads import due_alerts, unrecorded_breaches
from projections.sla_tables import RUNNING_CLOCKS, ledger_metadata, metadata, sla_clock


def test_the_timers_queries_search_what_is_due(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'readmodels.db'}")
    metadata.create_all(engine)
    ledger_metadata.create_all(engine)
    asked: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _asked(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            asked.append((statement, parameters))

    with engine.connect() as conn:
        due_alerts(conn, datetime(2026, 11, 27, 9, tzinfo=UTC))
        unrecorded_breaches(conn)
    assert len(asked) == 4
    with engine.connect() as conn:
        for statement, parameters in asked:
            plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            clock = [step for step in plan if " sla_clock " in f" {step} "]
            assert clock and all(step.startswith("SEARCH") for step in clock), plan
            assert not any("deadline>" in step for step in clock), f"walks every limit not yet late: {plan}"
    engine.dispose()


def test_a_batch_reads_its_cases_running_limits_by_the_case_index(tmp_path: Path) -> None:
    """What `SlaLimits.apply` reads for each batch: found by case, the
    running state only filtering (SQLite, without statistics, took the
    two-value IN on the state for the narrower path and walked every running
    limit of the store for each batch)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'readmodels.db'}")
    metadata.create_all(engine)
    asked: list[str] = []
    with engine.begin() as conn:
        conn.connection.dbapi_connection.set_trace_callback(asked.append)
        Rows(conn, sla_clock, sla_clock.c.clock_id, {"case-1", "case-2"}, by=sla_clock.c.case_id,
             where=RUNNING_CLOCKS)
        conn.connection.dbapi_connection.set_trace_callback(None)
    [statement] = [s for s in asked if s.lstrip().upper().startswith("SELECT")]
    with engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement)]
    assert plan == ["SEARCH sla_clock USING INDEX ix_sla_clock_case_id (case_id=?)"], plan
    engine.dispose()
