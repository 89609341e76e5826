"""Field types shared by every message."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
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
    """RFC 3339 in UTC with a Z, a 4-digit year and always six digits of microseconds."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


EARLIEST_YEAR, LATEST_YEAR = 1900, 2999
"""The years a request's time or date may name: four digits, from purchases
long past to plans far ahead, and nothing a calendar cannot count with."""


def _sane_year(value: datetime | dt.date) -> datetime | dt.date:
    year = value.astimezone(UTC).year if isinstance(value, datetime) else value.year
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise ValueError(f"the year must be between {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


Time = Annotated[AwareDatetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]
Instant = Annotated[AwareDatetime, AfterValidator(_sane_year),
                    PlainSerializer(rfc3339, return_type=str, when_used="json"),
                    Field(description=f"RFC 3339 with a time zone; the year {EARLIEST_YEAR}-{LATEST_YEAR}")]
"""A time in a request: RFC 3339 with a time zone, a year in range."""
Day = Annotated[dt.date, AfterValidator(_sane_year),
                Field(description=f"YYYY-MM-DD; the year {EARLIEST_YEAR}-{LATEST_YEAR}")]
"""A date in a request, a year in range."""
Text = Annotated[StrictStr, Field(max_length=4000)]
ShortText = Annotated[StrictStr, Field(max_length=200)]
CaseKind = Literal["complaint", "repair_job", "callback"]
Count = Annotated[StrictInt, Field(ge=1, le=1000)]
"""How many a page of a list may hold."""
PERIOD_PATTERN = r"^\d{4}-(\d{2}|[Qq][1-4])$"
PERIOD_HINT = "a month like 2026-11 or a quarter like 2026-Q4"
PeriodName = Annotated[StrictStr, Field(pattern=PERIOD_PATTERN, examples=["2026-11", "2026-Q4"],
                                        description=PERIOD_HINT)]
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
