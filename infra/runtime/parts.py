"""The worker's parts, and what each (relay, projection runner, monitor,
policy) keeps about itself for the health report: its last error and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PARTS = ("projections", "relay", "monitors")
"""The worker's parts, each a process of its own under `serve`:
"projections" (the projection runner and the read models' checkpoints, the
read models' one writer but for the monitors' ledgers), "relay" (the relay
and the chain's anchors) and "monitors" (the SLA and dangerous-customer
monitors and the policies). Apart, each has an interpreter to itself: in one
process the projections' apply thread took turns on the GIL with the relay
and the monitors, and a batch whose SQLite statements each gave the GIL
back waited up to a switch interval for it at every one; and the relay,
sharing one with the monitors, stalled 50-200 ms whenever a look of theirs
ran (every second under load): a tenth of the events reached the bus that
much later."""


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
