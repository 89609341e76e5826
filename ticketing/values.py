"""Value types of the domain: the closed vocabularies and the checks on free
values (text, money, scores)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from enum import StrEnum

from ticketing.errors import FieldProblem, ValidationFailed

FORGOTTEN = "(forgotten)"
"""What a forgotten customer's contact data reads as, everywhere."""


class Role(StrEnum):
    """Who may speak on the bus. The first four are the department's people;
    `auditor` reads (queries and events) and commands nothing; `service` is
    another system, sending only the commands granted to it; `gateway` is a
    front-end that signs its own people in and acts on their behalf; `system`
    is the product itself and is never given to anyone."""

    AGENT = "agent"
    TECHNICIAN = "technician"
    SUPERVISOR = "supervisor"
    MANAGER = "manager"
    AUDITOR = "auditor"
    SERVICE = "service"
    GATEWAY = "gateway"
    SYSTEM = "system"


class Channel(StrEnum):
    PHONE = "phone"
    ONLINE = "online"
    WEB_FORM = "web_form"
    EMAIL = "email"
    LETTER = "letter"
    VISIT = "visit"
    WECHAT = "wechat"
    QR_CARD = "qr_card"


class Category(StrEnum):
    PRODUCT_QUALITY = "product_quality"
    SERVICE_ATTITUDE = "service_attitude"
    DELIVERY = "delivery"
    BILLING = "billing"
    TECHNICAL_GUIDANCE = "technical_guidance"
    OTHER = "other"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class ResponsibleParty(StrEnum):
    COMPANY = "company"
    CUSTOMER = "customer"
    THIRD_PARTY = "third_party"


class Severity(StrEnum):
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"


class Department(StrEnum):
    PRODUCTION = "production"
    TECHNICAL = "technical"
    LOGISTICS = "logistics"
    SALES = "sales"


class EscalationLevel(StrEnum):
    SUPERVISOR = "supervisor"
    MANAGER = "manager"


class JobKind(StrEnum):
    INSTALL = "install"
    REPAIR = "repair"
    MAINTENANCE = "maintenance"


class Tier(StrEnum):
    BASIC = "basic"
    VIP = "vip"
    STRATEGIC = "strategic"


class Metric(StrEnum):
    """The service limits a case runs against (see ticketing/sla/clock.py)."""

    FIRST_RESPONSE = "first_response"  # registered -> acknowledged
    PLAN = "plan"  # registered -> analysed
    RESOLUTION = "resolution"  # registered -> resolved
    CALLBACK = "callback"  # resolved -> revisited
    LOOP = "loop"  # registered -> revisited (complaints)


class Mark(StrEnum):
    """What a supervisor can mark a customer as."""

    MALICIOUS = "malicious"  # 恶意投诉
    EXTORTION = "extortion"  # 敲诈、勒索


class AttemptOutcome(StrEnum):
    """Why a callback attempt did not reach the customer."""

    NO_ANSWER = "no_answer"
    BUSY = "busy"
    WRONG_NUMBER = "wrong_number"
    CALL_LATER = "call_later"


class CaseType(StrEnum):
    """The case kinds a callback follows."""

    COMPLAINT = "complaint"
    REPAIR_JOB = "repair_job"


class Checks:
    """Collects every field problem of one command so the sender learns all of
    them at once, then raises them together."""

    def __init__(self) -> None:
        self.problems: list[FieldProblem] = []

    def fail(self, field: str, reason: str) -> None:
        self.problems.append(FieldProblem(field, reason))

    def text(self, field: str, value: str | None, *, required: bool = True,
             max_length: int = 4000) -> str | None:
        if value is None:
            if required:
                self.fail(field, "is required")
            return None
        stripped = value.strip()
        if required and not stripped:
            self.fail(field, "must not be blank")
        elif len(value) > max_length:
            self.fail(field, f"must be at most {max_length} characters")
        return stripped or None

    def choice(self, field: str, value: str | None, vocabulary: type[StrEnum], *,
               required: bool = True) -> str | None:
        if value is None:
            if required:
                self.fail(field, "is required")
            return None
        try:
            return vocabulary(value).value
        except ValueError:
            allowed = ", ".join(v.value for v in vocabulary)
            self.fail(field, f"must be one of: {allowed}")
            return None

    def score(self, field: str, value: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            self.fail(field, "must be an integer from 0 to 100")
        return value

    def money(self, field: str, value: str | Decimal | None) -> Decimal | None:
        if value is None:
            return None
        try:
            amount = Decimal(value)
        except (InvalidOperation, TypeError, ValueError):
            self.fail(field, "must be a decimal amount such as 120.50")
            return None
        if not amount.is_finite() or amount < 0:
            self.fail(field, "must be a non-negative amount")
            return None
        if amount.as_tuple().exponent < -2:  # type: ignore[operator]
            self.fail(field, "must have at most two decimal places")
            return None
        return amount.quantize(Decimal("0.01"))

    def done(self) -> None:
        if self.problems:
            raise ValidationFailed.of(self.problems)
