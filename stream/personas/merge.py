"""The personas writer's order across partitions, and the offsets its checkpoints hold.

Kafka orders records only within a partition; in which order a consumer *sees* records of
different partitions depends on fetch timing, which differs between a live run and a
replay. So the writer does not learn in arrival order: :class:`PartitionMerger` releases
the partitions' records merged by (record timestamp, partition, offset), each partition
in offset order, taking the smallest head only once no partition can still deliver a
smaller one — every partition either has a record buffered, or was read to its end
(position = high watermark) at a time at least ``merge_grace_s`` after the candidate's
timestamp. That order is a function of the records alone, so a replay from a checkpoint
continues it exactly: the merge state is just the per-partition positions, which the
checkpoint's ``meta`` holds (:func:`checkpoint_meta`, :func:`saved_offsets`).

The one assumption: a record becomes visible to the writer less than ``merge_grace_s``
after its timestamp. A record delayed longer is learned when it arrives, so that stretch
of a live run may differ from a replay; both orders are valid. The price is up to
``merge_grace_s`` of latency while a partition is idle.

Pure: no consumer, no clock; the driver (``agents/personas.py``) passes the records it
fetched and each partition's horizon.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

__all__ = ["PartitionMerger", "SegmentRecord", "checkpoint_meta", "saved_offsets"]


class SegmentRecord(NamedTuple):
    """One fetched record of the ``segments`` topic (timestamp in epoch ms)."""

    partition: int
    offset: int
    timestamp: int
    value: bytes | None


class PartitionMerger:
    """Per-partition buffers of fetched records, released in a deterministic order.

    :meth:`release` repeatedly takes the head with the smallest (timestamp, partition,
    offset), but only while no partition could still deliver a smaller one: every
    partition has a buffered record, or its ``horizon`` (the wall-clock ms at which it was
    last seen read to its end; None = unknown, not at its end) is more than ``grace_ms``
    past the candidate's timestamp. Within a partition, offset order always holds. The
    released sequence depends only on the records, not on how they were fetched:

    >>> recs = {0: [(0, 10), (1, 30)], 1: [(0, 20), (1, 25)]}  # partition: [(offset, ts)]
    >>> def run(chunks):
    ...     m, out = PartitionMerger([0, 1]), []
    ...     for p, recs_ in chunks:
    ...         m.add(SegmentRecord(p, o, ts, None) for o, ts in recs_)
    ...         out += m.release({0: None, 1: None}, grace_ms=0)
    ...     out += m.release({0: 10**6, 1: 10**6}, grace_ms=0)  # both read to their end
    ...     return [(r.partition, r.offset) for r in out]
    >>> run([(0, recs[0]), (1, recs[1])]) == run([(1, recs[1][:1]), (0, recs[0]), (1, recs[1][1:])])
    True
    >>> run([(0, recs[0]), (1, recs[1])])
    [(0, 0), (1, 0), (1, 1), (0, 1)]
    >>> m = PartitionMerger([0, 1]); m.add([SegmentRecord(0, 0, 1000, None)])
    >>> m.release({1: 2500}, grace_ms=2000), len(m.release({1: 3500}, grace_ms=2000))
    ([], 1)
    """

    def __init__(self, partitions: Iterable[int]) -> None:
        self.buffers: dict[int, deque[SegmentRecord]] = {p: deque() for p in sorted(partitions)}

    def add(self, records: Iterable[SegmentRecord]) -> None:
        for r in records:
            self.buffers[r.partition].append(r)

    def size(self, partition: int) -> int:
        return len(self.buffers[partition])

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def release(self, horizons: Mapping[int, int | None], grace_ms: int, limit: int | None = None) -> list[SegmentRecord]:
        out: list[SegmentRecord] = []
        buffers = self.buffers
        while limit is None or len(out) < limit:
            best: SegmentRecord | None = None
            bound = math.inf  # a head at or after this could be preceded by a record not yet seen
            for p, buf in buffers.items():
                if buf:
                    r = buf[0]
                    if best is None or (r.timestamp, p, r.offset) < (best.timestamp, best.partition, best.offset):
                        best = r
                else:
                    h = horizons.get(p)
                    if h is None:
                        return out
                    bound = min(bound, h - grace_ms)
            if best is None or best.timestamp >= bound:
                return out
            buffers[best.partition].popleft()
            out.append(best)
        return out


def checkpoint_meta(topic: str, offsets: Mapping[int, int], writer: str) -> dict[str, Any]:
    """The ``meta`` a writer saves with its checkpoint: the topic, per partition the offset
    of the next record not yet learned, and the writer's name.

    >>> checkpoint_meta("segments", {1: 7, 0: 3}, "host:1")
    {'topic': 'segments', 'offsets': {'0': 3, '1': 7}, 'writer': 'host:1'}
    """
    return {"topic": topic, "offsets": {str(p): o for p, o in sorted(offsets.items())}, "writer": writer}


def saved_offsets(meta: Mapping[str, Any], topic: str) -> dict[int, int] | None:
    """Where to resume ``topic`` from a checkpoint's ``meta``: partition -> next offset
    (partitions without one: from the beginning). None when the offsets are another
    topic's (then read it from the beginning).

    >>> saved_offsets({"topic": "segments", "offsets": {"0": 3}}, "segments"), saved_offsets({}, "segments")
    ({0: 3}, {})
    >>> saved_offsets({"topic": "old", "offsets": {"0": 3}}, "segments") is None
    True
    """
    saved_topic = meta.get("topic")
    if saved_topic is not None and saved_topic != topic:
        return None
    return {int(p): int(o) for p, o in (meta.get("offsets") or {}).items()}
