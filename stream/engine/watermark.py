"""The idle-partition rule, written once for the live worker and the offline runner.

A partition's watermark only moves with its own events. A partition that receives
nothing — live: for ``[triggers] idle_partition_s`` of wall-clock time; offline: at the
end of the input, where every partition is idle — adopts the highest watermark of all
partitions, so the sessions and timers that watermark passes close and fire instead of
waiting for the partition's next event. Watermarks never go back.

>>> idle_adoptions([100, 250, 90], idle=[0, 2])
[(0, 250), (2, 250)]
>>> idle_adoptions([100, 250, 90], idle=[1])   # the top partition has nothing to adopt
[]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def idle_adoptions(watermarks: Sequence[int], idle: Iterable[int]) -> list[tuple[int, int]]:
    """``(partition, new watermark)`` for each idle partition behind the highest of
    ``watermarks`` (indexed by partition), in partition order."""
    top = max(watermarks, default=0)
    return [(p, top) for p in sorted(idle) if watermarks[p] < top]
