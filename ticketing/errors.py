"""Domain errors. Each carries a code the bus reply uses and, where one field
is at fault, the field and the reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    field: str
    reason: str


class DomainError(Exception):
    code = "domain_error"

    def __init__(self, message: str, problems: tuple[FieldProblem, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems


class ValidationFailed(DomainError):
    code = "validation_error"

    @classmethod
    def of(cls, problems: list[FieldProblem]) -> ValidationFailed:
        fields = ", ".join(p.field for p in problems)
        return cls(f"invalid fields: {fields}", tuple(problems))

    @classmethod
    def of_message(cls, field: str, reason: str) -> ValidationFailed:
        return cls(f"{field} {reason}", (FieldProblem(field, reason),))


class InvalidTransition(DomainError):
    code = "invalid_transition"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"
