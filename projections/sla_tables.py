"""What the SLA read model holds: one row per case and one per limit and cycle
(with the indexes the timer and the queries read by), day counters of the
limits met and missed, and the staff's month counters. The projection that
fills them is `projections.sla`."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from projections.base import READ_BY_APPLY
from projections.rows import person_months

metadata = MetaData()


sla_case = Table(
    "sla_case",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("customer_id", String(36), nullable=False),
    Column("tier", String(20), nullable=False),
    Column("priority", String(10), nullable=False),
    Column("assignee", String(200)),
    Column("person", String(200)),  # whose work it is (projections.staff.person_after)
    Column("cycle", Integer, nullable=False),
    Index("ix_sla_case_customer_id", "customer_id", info={READ_BY_APPLY: True}),  # a tier change retargets its cases
)


sla_customer = Table(
    "sla_customer",
    metadata,
    Column("customer_id", String(36), primary_key=True),
    Column("tier", String(20), nullable=False),
)


sla_clock = Table(
    "sla_clock",
    metadata,
    Column("clock_id", String(120), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("metric", String(20), nullable=False),
    Column("cycle", Integer, nullable=False),
    # running, paused; met, missed (stopped after its deadline), ended (the
    # case ended without the step)
    Column("state", String(10), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("paused_at", DateTime(timezone=True)),
    Column("paused_seconds", Float, nullable=False),
    Column("limit_seconds", Integer, nullable=False),
    Column("calendar", String(100), nullable=False),
    Column("deadline", DateTime(timezone=True)),
    Column("warning_at", DateTime(timezone=True)),
    Column("breached_at", DateTime(timezone=True)),
    Column("stopped_at", DateTime(timezone=True)),
    Column("elapsed_seconds", Float),
    Column("recorded", Boolean, nullable=False),  # the breach is on the case (its `sla_breached` event)
    Index("ix_sla_clock_case_id", "case_id", info={READ_BY_APPLY: True}),  # a batch's cases' limits
    # What the timer asks several times a second, each answered from an index
    # whatever the history's size: running limits by deadline and by warning
    # instant, breaches not yet on their case.
    Index("ix_sla_clock_running_deadline", "state", "deadline"),
    Index("ix_sla_clock_state_breached", "state", "breached_at"),  # the dashboard's count of what is late
    Index("ix_sla_clock_breached", "breached_at"),  # sla.breaches, the latest first
    Index("ix_sla_clock_running_warning", "state", "warning_at"),
    Index("ix_sla_clock_unrecorded", "recorded", "breached_at"),
)


sla_on_time = Table(
    "sla_on_time",
    metadata,
    Column("key", String(80), primary_key=True),  # "day|kind|metric"
    Column("day", Date, nullable=False),  # when the limits stopped, in the department's time zone
    Column("kind", String(20), nullable=False),
    Column("metric", String(20), nullable=False),
    Column("met", Integer, nullable=False),
    Column("missed", Integer, nullable=False),
    Index("ix_sla_on_time_metric_day", "metric", "day"),
)
"""Day counters of the limits stopped met or missed: what the on-time figures sum."""


sla_counted_under = Table(
    "sla_counted_under",
    metadata,
    Column("name", String(20), primary_key=True),  # COUNTERS
    Column("digest", String(64), nullable=False),
)
"""The time zone the day counters are kept in."""


sla_staff_month = person_months("sla_staff_month", metadata)
"""Limits met and missed (`met.METRIC`, `missed.METRIC`) per month they
stopped in and person who had the case then: the staff assessment's."""


COUNTERS = "zone.2"
"""The name the counters' time zone is kept under; a new name when a counter
is added (2: per person), so a read model without it is rebuilt at start."""


RUNNING = ("running", "paused")


RUNNING_CLOCKS = sla_clock.c.state.in_(RUNNING)
"""The limits still counting (a condition the batches reuse: compiled once)."""


DEFAULT_TIER = "basic"


DEFAULT_PRIORITY = "normal"  # callbacks have none


# ---- the alert ledger ---------------------------------------------------------
# Which alerts were raised, kept apart from the read model above: a rebuild
# replaces the read model but must not raise an alert again.

ledger_metadata = MetaData()

sla_alert = Table(
    "sla_alert",
    ledger_metadata,
    Column("clock_id", String(120), primary_key=True),
    Column("alert", String(10), primary_key=True),  # warning | breached
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True)),  # a breach: when the case took its sla_breached event
    Index("ix_sla_alert_unrecorded", "alert", "recorded_at"),
)

sla_policy_counted = Table(
    "sla_policy_counted",
    ledger_metadata,
    Column("digest", String(64), primary_key=True),
)
"""The policy the running limits were last counted against as a whole (by
the monitor at its start), so a start under the same policy need not
recount them all. Beside the read model: the monitor's, not the events'."""
