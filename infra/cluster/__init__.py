"""What runs once across instances, and who holds it.

Decides: which instance runs each of the worker's parts (the relay and the
anchors, the projections, the monitors and policies) at a time, by a lease
with an epoch in the read models' PostgreSQL database (`leases.py`); whether
a write one of them makes is still its to make (the fence, checked in the
write's own transaction); which instances are up (`instances.py`).

Moves nothing else: the parts themselves are `infra/runtime/worker.py`'s. On
SQLite the product runs as one instance (a second is refused at start), so
its parts hold no lease."""
