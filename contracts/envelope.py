"""The envelope of every event, the command request, and the replies."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    StrictStr,
    model_serializer,
)

from contracts.types import Role, Time, Version


class Via(BaseModel):
    """The gateway through which a person acted."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr = Field(min_length=1, max_length=200)
    role: Literal["gateway"] = "gateway"


class Actor(BaseModel):
    """Who acted: always the authenticated user, or the person a gateway
    signed in (then `via` names the gateway)."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr = Field(min_length=1, max_length=200)
    role: Role
    via: Via | None = None

    @model_serializer(mode="wrap")
    def _without_empty_via(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`via` only when a gateway acted: the envelope stays as it was for everyone else."""
        data: dict[str, Any] = handler(self)
        if data.get("via") is None:
            data.pop("via", None)
        return data


class ClaimedActor(BaseModel):
    """Who the sender says acts. Optional: the actor is the authenticated
    user; a body naming anyone else is refused (`forbidden`), but for a
    gateway naming the person it signed in."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr = Field(min_length=1, max_length=200)
    role: Role


class AskedQuery(BaseModel):
    """Every query's body: the actor is optional, as on a command."""

    model_config = ConfigDict(extra="forbid")

    actor: ClaimedActor | None = Field(default=None, description="optional: a gateway names the person it "
                                       "signed in (whose role must be one that may ask); anyone else is the "
                                       "authenticated user")


class EventEnvelope(BaseModel):
    id: UUID
    type: str = Field(examples=["complaint.registered"])
    schema_version: StrictInt = 1
    aggregate_type: str
    aggregate_id: UUID
    aggregate_version: StrictInt
    position: StrictInt = Field(description="place in the store's total order")
    occurred_at: Time
    actor: Actor
    correlation_id: UUID
    causation_id: UUID | None
    data: dict[str, Any]
    hash: str | None = Field(default=None, description="SHA-256 of this event as stored, chained to the one "
                             "before it: hash(n) = sha256(previous_hash || position || aggregate_id || "
                             "aggregate_version || stored topic || stored state)")
    previous_hash: str | None = Field(default=None, description="the hash of the event before it in the store's "
                                      "total order (64 zeros for the first)")


class CommandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command_id: UUID = Field(description="chosen by the sender; the idempotency key")
    actor: ClaimedActor | None = Field(default=None, description="optional: the authenticated user acts")
    aggregate_id: UUID | None = None
    expected_version: Version | None = None
    correlation_id: UUID | None = Field(default=None, description="defaults to command_id")
    causation_id: UUID | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class OkReply(BaseModel):
    ok: Literal[True] = True
    aggregate_id: UUID
    version: StrictInt
    events: list[UUID]


ErrorCode = Literal["validation_error", "not_found", "invalid_transition", "conflict",
                    "forbidden", "unavailable"]


class ErrorDetail(BaseModel):
    field: str
    reason: str


class Error(BaseModel):
    code: ErrorCode
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorReply(BaseModel):
    ok: Literal[False] = False
    error: Error
