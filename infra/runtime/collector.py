"""Python's cyclic garbage collector in the long-running processes."""

from __future__ import annotations

import gc

YOUNG = 10_000
"""Allocations between two collections of the young generation (Python's
default: 700). A command or an event allocates hundreds of short-lived
objects; the older generations follow at Python's ratios (10, 10), so
cyclic garbage (an exception's traceback, say) is still collected within
about a million allocations."""


def started() -> None:
    """Once a process has started: what it built so far (modules, settings,
    policies, connections) is frozen, never traversed by a collection again,
    and the young generation is collected every YOUNG allocations."""
    gc.freeze()
    gc.set_threshold(YOUNG, 10, 10)
