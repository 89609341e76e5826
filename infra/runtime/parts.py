"""The worker's parts (what each keeps about itself: `infra.common.part_state`)."""

from __future__ import annotations

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
