"""What each running part (relay, projection runner, monitor, policy) keeps
about itself for the health report: its last error and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass
class PartState:
    last_error: str | None = None
    last_error_at: datetime | None = None

    def failed(self, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.last_error, self.last_error_at = text[:500], datetime.now(UTC)

    def as_dict(self) -> dict[str, Any]:
        return {"last_error": self.last_error,
                "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None}
