"""Which cases a case is linked to, from the case summary: its callbacks and
follow-ups, the case it follows or calls back on, and a customer's cases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, or_, select

from projections.case_summary import case_summary

RELATIONS = {"callback": "callback", "complaint": "follow_up", "repair_job": "follow_up"}


def linked(conn: Connection, case_id: str) -> list[dict[str, Any]]:
    """[{case_id, kind, relation, status}], in the order they were registered."""
    c = case_summary.c
    own = conn.execute(select(c.kind, c.follows_case_id).where(c.case_id == case_id)).first()
    wanted = [c.follows_case_id == case_id, c.customer_id == case_id]
    if own is not None and own.follows_case_id:
        wanted.append(c.case_id == own.follows_case_id)
    found = []
    for row in conn.execute(select(c.case_id, c.kind, c.status, c.follows_case_id, c.customer_id)
                            .where(or_(*wanted)).order_by(c.registered_at, c.case_id)):
        if row.follows_case_id == case_id:
            relation = RELATIONS.get(row.kind, "follow_up")
        elif row.customer_id == case_id:
            relation = "case"
        else:
            relation = "callback_of" if own is not None and own.kind == "callback" else "follows"
        found.append({"case_id": row.case_id, "kind": row.kind, "relation": relation, "status": row.status})
    return found
