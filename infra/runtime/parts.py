"""The worker's parts, and what each (relay, projection runner, monitor,
policy) keeps about itself for the health report: its last error and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PARTS = ("projections", "relay")
"""The worker's parts, each a process of its own under `serve`:
"projections" (the projection runner and the read models' checkpoints, the
read models' one writer but for the monitors' ledgers) and "relay" (the
relay, the policies, the SLA and dangerous-customer monitors and the
chain's anchors). Apart, the projections' apply thread has an interpreter
to itself: in one process it took turns on the GIL with the relay and the
monitors, and a batch whose SQLite statements each gave the GIL back
waited up to a switch interval for it at every one."""


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
