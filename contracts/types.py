"""Field types shared by every message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StrictStr,
)


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with a Z and always six digits of microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Time = Annotated[AwareDatetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]
Text = Annotated[StrictStr, Field(max_length=4000)]
ShortText = Annotated[StrictStr, Field(max_length=200)]
Money = Annotated[StrictStr, Field(pattern=r"^\d{1,12}(\.\d{1,2})?$", examples=["120.50"])]
Score = Annotated[StrictInt, Field(ge=0, le=100)]
Version = Annotated[StrictInt, Field(ge=0)]
Flag = StrictBool

Role = Literal["agent", "technician", "supervisor", "manager", "auditor", "service", "gateway", "system"]
Channel = Literal["phone", "online", "web_form", "email", "letter", "visit", "wechat", "qr_card"]
Category = Literal["product_quality", "service_attitude", "delivery", "billing",
                   "technical_guidance", "other"]
Priority = Literal["low", "normal", "high", "urgent"]
ResponsibleParty = Literal["company", "customer", "third_party"]
Severity = Literal["minor", "major", "critical"]
Department = Literal["production", "technical", "logistics", "sales"]
EscalationLevel = Literal["supervisor", "manager"]
AttemptOutcome = Literal["no_answer", "busy", "wrong_number", "call_later"]
CaseType = Literal["complaint", "repair_job"]
Tier = Literal["basic", "vip", "strategic"]
JobKind = Literal["install", "repair", "maintenance"]
Mark = Literal["malicious", "extortion"]
Metric = Literal["first_response", "plan", "resolution", "callback", "loop"]
Seconds = Annotated[StrictInt, Field(ge=1)]
Cycle = Annotated[StrictInt, Field(ge=1)]


class Command(BaseModel):
    """Base of command `data`: unknown fields are refused, so a typo is an error."""

    model_config = ConfigDict(extra="forbid")


class EventData(BaseModel):
    """Base of event `data`: consumers ignore fields added in later versions."""

    model_config = ConfigDict(extra="ignore")
