"""Who may ask what, and who may act for whom: the part of the role tables
that is not a case kind's state table (those say who may run each command).
The bus permissions each identity gets are derived from these tables and the
state tables together, so a role can never publish where the domain would
refuse it anyway."""

from __future__ import annotations

from ticketing.errors import Forbidden
from ticketing.values import Role

PEOPLE = frozenset({Role.AGENT, Role.TECHNICIAN, Role.SUPERVISOR, Role.MANAGER})
GRANTABLE = PEOPLE | {Role.AUDITOR, Role.SERVICE, Role.GATEWAY}
"""Roles a user can be given; `system` is the product's own."""
SIGNED_IN = PEOPLE | {Role.AUDITOR}
"""Whom a gateway (the web console, a front-end) may sign in and name as the
actor: the people, and auditors (who ask, and act on nothing)."""

_STAFF_READERS = frozenset({Role.AGENT, Role.SUPERVISOR, Role.MANAGER, Role.AUDITOR})
QUERIES: dict[str, frozenset[Role]] = {
    # query                  who may ask
    "case.history": PEOPLE | {Role.AUDITOR, Role.SERVICE},
    "customer.get": PEOPLE | {Role.AUDITOR, Role.SERVICE},
    "sla.open": PEOPLE | {Role.AUDITOR, Role.SERVICE},
    "sla.breaches": _STAFF_READERS | {Role.SERVICE},
    "dashboard": _STAFF_READERS,
    "report": frozenset({Role.SUPERVISOR, Role.MANAGER, Role.AUDITOR}),
    "customers.dangerous": _STAFF_READERS,
    "health": frozenset({Role.SUPERVISOR, Role.MANAGER, Role.AUDITOR, Role.SERVICE}),
    "audit.verify": frozenset({Role.AUDITOR, Role.MANAGER}),
    "audit.key": PEOPLE | {Role.AUDITOR, Role.SERVICE},
    "sla.simulate": frozenset({Role.SUPERVISOR, Role.MANAGER, Role.AUDITOR}),
    "staff.assessment": PEOPLE | {Role.AUDITOR},
}
TEAM_READERS = frozenset({Role.SUPERVISOR, Role.MANAGER, Role.AUDITOR})
"""Who sees everyone's assessment; the others see only their own card."""
"""A gateway may ask whatever the people it signs in may (and then as them)."""

EVENT_READERS = frozenset({Role.SUPERVISOR, Role.MANAGER, Role.AUDITOR, Role.SERVICE, Role.GATEWAY})
"""Who may subscribe to the events (and keep durable consumers of them)."""
ALERT_READERS = frozenset({Role.AGENT, Role.SUPERVISOR, Role.MANAGER, Role.AUDITOR, Role.SERVICE, Role.GATEWAY})
"""Who may subscribe to the alerts (SLA warnings and breaches, dangerous customers)."""
CONSUMER_KEEPERS = frozenset({Role.AUDITOR, Role.SERVICE, Role.GATEWAY})
AUDIT_READERS = frozenset({Role.AUDITOR})
"""Who may read the hash chain's anchors (the TICKETING_AUDIT stream)."""
"""Who may keep a durable JetStream consumer (named after the user) on the event and alert streams."""


def speaks_for(role: Role) -> frozenset[Role]:
    """The roles an identity of `role` may name as the actor of a request:
    a gateway names the person it signed in; the product names its own parts
    (`sla-monitor`, `policy:callbacks`) with its own role."""
    if role is Role.GATEWAY:
        return SIGNED_IN
    if role is Role.SYSTEM:
        return frozenset({Role.SYSTEM})
    return frozenset()


def may_ask(role: Role, query: str) -> bool:
    if role is Role.SYSTEM:
        return True
    if role is Role.GATEWAY:
        return any(person in QUERIES[query] for person in SIGNED_IN)
    return role in QUERIES[query]


def acting(user: str, role: Role, claimed_id: str | None, claimed_role: str | None) -> tuple[str, Role, str | None]:
    """(actor id, actor role, gateway) of a request from the authenticated
    `user` of `role` whose body claims an actor (or none). A claim other than
    the user itself is refused unless the role may speak for the claimed one."""
    if claimed_id is None and claimed_role is None:
        return user, role, None
    if claimed_id == user and claimed_role == role.value:
        return user, role, None
    allowed = speaks_for(role)
    try:
        claimed = Role(claimed_role) if claimed_role is not None else None
    except ValueError:
        claimed = None
    if claimed is None or claimed not in allowed or not claimed_id:
        raise Forbidden(f"you are {user} ({role.value}); a {role.value} may not act as "
                        f"{claimed_id} ({claimed_role})")
    return claimed_id, claimed, (user if role is Role.GATEWAY else None)
