"""The garbage collector's schedule for processes whose engines hold many long-lived
state objects (the worker's user-state caches, an offline run's whole user base).

CPython runs a *full* collection after every 10 collections of the middle generation
(and when the objects that survived since the last one grew by a quarter). Each full
collection visits every tracked object, so its cost grows with the state held: profiled
on the high-cardinality offline trace (60,000 users, 89,413 events; ``python -m bench
offline``), full collections took ~45 % of the CPU time. The engine's state is almost
free of reference cycles (plain records, lists and dicts), so collecting the oldest
generation 100x less often frees the same memory a little later and changes no output.
Generations 0 and 1 keep their defaults: they are cheap and catch short-lived cycles.

>>> with long_lived_state():
...     gc.get_threshold()[2] >= FULL_EVERY
True
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Final

#: middle-generation collections between two full collections (CPython's default: 10)
FULL_EVERY: Final = 1000


def tune_for_long_lived_state() -> tuple[int, int, int]:
    """Collect the oldest generation at most every :data:`FULL_EVERY` middle-generation
    collections, for the rest of the process; returns the thresholds before."""
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], max(before[2], FULL_EVERY))
    return before


@contextlib.contextmanager
def long_lived_state() -> Iterator[None]:
    """:func:`tune_for_long_lived_state` for a block; the thresholds before come back after."""
    before = tune_for_long_lived_state()
    try:
        yield
    finally:
        gc.set_threshold(*before)


__all__ = ["FULL_EVERY", "long_lived_state", "tune_for_long_lived_state"]
