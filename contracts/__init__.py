"""The public language of the bus: envelopes, commands, replies and events of
v1 (no I/O, nothing of ours imported). JSON Schemas in `schemas/` are
generated from these models by `python -m contracts.generate`."""
