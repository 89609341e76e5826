"""Staff figures: per person and month (in the department's time zone), what
the staff assessment (ticketing/assessment.py) scores: cases handled,
first-contact resolutions, the callbacks' scores on their cases, reopenings,
follow-ups, escalations, customer disputes, callbacks done and missed; and
each person's role, from the events they act in. The service limits met and
missed per person are counted by the SLA projection, which runs the clocks
(projections/sla_tables.py, `sla_staff_month`). Who each figure belongs to is said in
ticketing/assessment.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Connection, MetaData, String, Table, select

from projections.base import UTC_ZONE, Envelope, counted_elsewhere, empty
from projections.case_summary import assignee_after
from projections.rows import Rows, add_up, insert_missing, person_months
from ticketing.assessment import ROLES

metadata = MetaData()

staff_case = Table(
    "staff_case",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("assignee", String(200)),
    Column("person", String(200)),  # whose work it is (person_after)
    Column("handler", String(200)),  # whose work it was at its last resolution
)

staff_person = Table(
    "staff_person",
    metadata,
    Column("person", String(200), primary_key=True),
    Column("role", String(20), nullable=False),  # the role they last acted in
)

staff_month = person_months("staff_month", metadata)

staff_zone = Table(
    "staff_zone",
    metadata,
    Column("name", String(20), primary_key=True),
    Column("zone", String(64), nullable=False),
)
"""The time zone the months were counted in: another one means a rebuild."""

CASE_KINDS = ("complaint", "repair_job")


def person_after(current: str | None, assignee: str | None, event: Envelope) -> str | None:
    """Whose work the case is once this event happened: its assignee; while
    nobody is assigned, the last person who took a step on it (a step of the
    product itself or of another system leaves it with whoever had it)."""
    if assignee:
        return assignee
    actor = event["actor"]
    return str(actor["id"]) if actor["role"] in ROLES else current


def month_of(event: Envelope, zone: ZoneInfo) -> str:
    return month_in(datetime.fromisoformat(event["occurred_at"]), zone)


def month_in(at: datetime, zone: ZoneInfo) -> str:
    """The month (2026-11) `at` falls in, in `zone` (not `strftime`: a
    rebuild asks it of most events, and that was most of its cost)."""
    local = at.astimezone(zone)
    return f"{local.year:04d}-{local.month:02d}"


class StaffFigures:
    name = "staff"
    metadata = metadata

    def __init__(self, zone: ZoneInfo = UTC_ZONE) -> None:
        self.zone = zone

    def stale(self, conn: Connection) -> bool:
        kept = conn.execute(select(staff_zone.c.zone).where(staff_zone.c.name == "months")).scalar()
        return counted_elsewhere(conn, self.name, kept, self.zone)

    def apply(self, conn: Connection, events: list[Envelope]) -> None:
        cases = Rows(conn, staff_case, staff_case.c.case_id,
                     {e["aggregate_id"] for e in events if e["aggregate_type"] in CASE_KINDS})
        roles: dict[str, str] = {}
        counts: Counter[tuple[str, str, str]] = Counter()
        for event in events:
            actor, name, data = event["actor"], event["type"].split(".", 1)[1], event["data"]
            if actor["role"] in ROLES:
                roles[actor["id"]] = actor["role"]
            if event["aggregate_type"] == "callback" and name in ("completed", "missed"):
                figure = f"callbacks_{'done' if name == 'completed' else 'missed'}"
                counts[(month_of(event, self.zone), figure, actor["id"])] += 1
            if event["aggregate_type"] not in CASE_KINDS:
                continue
            before = cases.get(event["aggregate_id"]) or {"case_id": event["aggregate_id"],
                                                         "kind": event["aggregate_type"], "assignee": None,
                                                         "person": None, "handler": None}
            assignee = assignee_after(before["assignee"], name, data)
            case = before | {"assignee": assignee, "person": person_after(before["person"], assignee, event)}
            month = None  # found only for an event that counts (a time zone's conversion is not cheap)
            for figure, person, n in _figures(name, data, case):
                month = month or month_of(event, self.zone)
                counts[(month, figure, person)] += n
            if name == "resolved":
                case["handler"] = case["person"]
            if case != before or event["aggregate_id"] not in cases.rows:
                cases.put(event["aggregate_id"], case)
        cases.write()
        self._roles(conn, roles)
        add_up(conn, staff_month, counts)
        insert_missing(conn, staff_zone, {"name": "months", "zone": self.zone.key})

    @staticmethod
    def _roles(conn: Connection, roles: dict[str, str]) -> None:
        people = Rows(conn, staff_person, staff_person.c.person, set(roles))
        for person, role in roles.items():
            if (people.get(person) or {}).get("role") != role:
                people.put(person, {"person": person, "role": role})
        people.write()

    def reset(self, conn: Connection) -> None:
        empty(conn, metadata)


def _figures(name: str, data: dict[str, Any], case: dict[str, Any]) -> Iterable[tuple[str, str, int]]:
    """What a case event counts, for whom: (figure, person, how much)."""
    handler, person = case["handler"], case["person"]
    if name == "registered" and data.get("about_staff"):
        yield "disputes", str(data["about_staff"]), 1
    elif person is None:
        return
    elif name == "resolved":
        yield f"handled_{case['kind']}", person, 1
        if data.get("first_contact") is not None:
            yield "first_contact_known", person, 1
            yield "first_contact_yes", person, int(bool(data["first_contact"]))
    elif name == "escalated":
        yield "escalated", person, 1
    elif handler is None:
        return
    elif name == "revisited" and data.get("score") is not None:
        yield "revisits", handler, 1
        yield "score_sum", handler, int(data["score"])
        yield "satisfied", handler, int(bool(data.get("satisfied")))
    elif name == "reopened":
        yield "reopened", handler, 1
    elif name == "follow_up_opened":
        yield "follow_ups", handler, 1


def people(conn: Connection) -> dict[str, str]:
    """Every person seen acting, with the role they last acted in."""
    return {row.person: row.role for row in conn.execute(select(staff_person))}


def month_figures(conn: Connection, tables: Iterable[Table], months: list[str]) -> dict[str, dict[str, Counter[str]]]:
    """month -> person -> figure -> n, summed from the `person_months` tables given."""
    found: dict[str, dict[str, Counter[str]]] = {month: {} for month in months}
    for table in tables:
        query = select(table.c.month, table.c.person, table.c.figure, table.c.n).where(table.c.month.in_(months))
        for month, person, figure, n in conn.execute(query):
            found[month].setdefault(person, Counter())[figure] += n
    return found
