"""The operator's and the auditor's queries about the product itself:
`health` (each part, up or not, and how far behind the store it is) and
`audit.verify` (the store's hash chain and its anchors)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import AskedQuery
from contracts.types import Time


class Health(AskedQuery):
    model_config = ConfigDict(extra="forbid")


class Part(BaseModel):
    name: str
    """`store`, `nats`, `relay`, `projection:<name>`, `monitor:<name>`, `policy:<name>`, `worker`."""
    up: bool
    position: int | None = None
    """The last store position this part has dealt with (the store's head, for the store)."""
    lag_events: int | None = None
    lag_seconds: float | None = None
    """How long ago the oldest event this part has not dealt with happened."""
    parked: int | None = None
    """Messages this part parked on its dead-letter subject."""
    last_error: str | None = None
    last_error_at: Time | None = None


class InstanceUp(BaseModel):
    """An instance of the product seen lately (several share a PostgreSQL store)."""

    name: str
    host: str
    pid: int
    up_seconds: float


class LeaseHolding(BaseModel):
    """Who runs one of the worker's parts: the lease's holder (`<instance>/<part>`) and its epoch, which grows
    with every new holder."""

    name: str
    holder: str
    epoch: int
    host: str | None = None
    pid: int | None = None
    held_seconds: float | None = None
    expires_in_seconds: float
    live: bool
    """Not run out: its holder renewed it in time."""


class HealthReply(BaseModel):
    ok: Literal[True] = True
    at: Time
    healthy: bool
    """Every part up."""
    head: int | None
    """The store's last position."""
    parts: list[Part]
    instances: list[InstanceUp] = Field(default_factory=list)
    """On PostgreSQL: the instances seen lately."""
    leases: list[LeaseHolding] = Field(default_factory=list)
    """On PostgreSQL: who holds each part of the worker."""


class AuditKey(AskedQuery):
    """The product's audit key: check anchors, alerts and case bundles with it (pin it out of band too)."""

    model_config = ConfigDict(extra="forbid")


class AuditKeyReply(BaseModel):
    ok: Literal[True] = True
    key: str
    """The public half of the audit key: an nkey (Ed25519) beginning with A."""
    signature_header: str = "Ticketing-Signature"
    """The header of a signed message: base64 of the Ed25519 signature of its subject, a line feed and its
    payload (the alerts). Anchors and bundles carry `key` and `signature` in the document, over its canonical
    JSON without them (sorted keys, no spaces)."""


class AuditVerify(AskedQuery):
    """Walk the whole store and check its hash chain and anchors (auditors)."""

    model_config = ConfigDict(extra="forbid")


class AuditFinding(BaseModel):
    position: int
    check: Literal["altered", "removed", "inserted", "link", "anchor"]
    detail: str
    case_id: str | None = None
    event_type: str | None = None


class AuditVerifyReply(BaseModel):
    ok: Literal[True] = True
    intact: bool
    events: int
    intact_to: int
    head_hash: str
    anchors_checked: int
    anchored_at: str | None
    anchored_position: int | None
    seconds: float
    finding: AuditFinding | None
    notes: list[str]
    policies_altered: list[str] = Field(default_factory=list)
    """SLA policy records whose text no longer has their hash (then not intact)."""
    anchors_refused: int = 0
    """Anchors whose signature does not hold under the product's audit key (not counted)."""
    unproven_after: int | None = None
    """The events after this position are vouched for by no signed anchor yet (null: every event is)."""
