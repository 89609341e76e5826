"""The domain: case aggregates, their events and rules. No I/O, no bus."""
