"""Per-cluster statistics: what the report and the cluster labels read.

:class:`ClusterStats` accumulates, for one cluster, every segment assigned to it: counts,
sums of the numeric fields, the distribution of each of :data:`STATUS_FIELDS`, a bounded
timeline, the distinct users with segments there (:class:`UniqueCounter`) and the number
of users whose cluster persona it is (``assigned``). Plain values, JSON round trip
(``to_dict`` / ``from_dict``) for the checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from intentstream.stream.personas.features import CATEGORIES, as_mapping, non_negative
from intentstream.stream.sessions.segments import INTENTS, LIFECYCLE_STAGES, URGENCIES
from intentstream.stream.settings import PersonaSettings, default_settings

__all__ = ["FIELD_ORDER", "MAX_DISTINCT", "STATUS_FIELDS", "ClusterStats", "UniqueCounter"]

#: Segment fields whose value distribution every cluster keeps (:class:`ClusterStats`).
STATUS_FIELDS: Final = (
    "behaviour_stage", "urgency", "main_activity", "kyc_status", "transaction_status", "lifecycle_stage", "intent",
)  # fmt: skip

#: Distinct values a cluster's counter keeps per field; further values count as "other".
MAX_DISTINCT: Final = 32


class UniqueCounter:
    """Distinct users, exact up to ``cap``, then a HyperLogLog sketch (bounded memory).

    Below the cap it keeps the ids themselves (exact). Past it, the ids are folded into
    4096 one-byte registers (precision 12: about 1.6% standard error) and dropped, so a
    cluster costs at most ``cap`` ids or 4 KiB however many users it sees. Hashes are
    BLAKE2b, so counts are the same in every process.

    >>> uc = UniqueCounter(cap=100)
    >>> for i in range(50):
    ...     uc.add(f"u{i % 20}")
    >>> len(uc), uc.exact
    (20, True)
    >>> for i in range(20_000):
    ...     uc.add(f"u{i}")
    >>> uc.exact, abs(len(uc) - 20_000) < 20_000 * 0.05
    (False, True)
    """

    P: Final = 12
    M: Final = 1 << 12

    __slots__ = ("cap", "ids", "registers")

    def __init__(self, cap: int):
        self.cap = cap
        self.ids: set[str] | None = set()
        self.registers: bytearray | None = None

    @property
    def exact(self) -> bool:
        return self.ids is not None

    def add(self, user_id: str) -> None:
        if self.ids is not None:
            self.ids.add(user_id)
            if len(self.ids) > self.cap:
                self.registers = bytearray(self.M)
                for uid in sorted(self.ids):
                    self._add_hash(uid)
                self.ids = None
        else:
            self._add_hash(user_id)

    def _add_hash(self, user_id: str) -> None:
        h = int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big")
        idx = h >> (64 - self.P)
        rest = h & ((1 << (64 - self.P)) - 1)
        rank = (64 - self.P) - rest.bit_length() + 1
        regs = self.registers
        assert regs is not None
        if rank > regs[idx]:
            regs[idx] = rank

    def __len__(self) -> int:
        if self.ids is not None:
            return len(self.ids)
        regs = self.registers
        assert regs is not None
        m = self.M
        estimate = (0.7213 / (1 + 1.079 / m)) * m * m / sum(2.0**-r for r in regs)
        zeros = regs.count(0)
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)
        return int(round(estimate))

    def to_dict(self) -> dict[str, Any]:
        if self.ids is not None:
            return {"cap": self.cap, "ids": sorted(self.ids)}
        assert self.registers is not None
        return {"cap": self.cap, "hll": base64.b64encode(bytes(self.registers)).decode("ascii")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UniqueCounter:
        uc = cls(cap=int(data["cap"]))
        if "hll" in data:
            uc.ids = None
            uc.registers = bytearray(base64.b64decode(data["hll"]))
        else:
            uc.ids = set(data["ids"])
        return uc


def _top(counts: Mapping[str, int], order: Iterable[str] = ()) -> list[tuple[str, int]]:
    """Values by count, descending; ties by vocabulary order, then by name."""
    rank = {v: i for i, v in enumerate(order)}
    return sorted(counts.items(), key=lambda kv: (-kv[1], rank.get(kv[0], len(rank)), kv[0]))


#: Vocabulary order of each status field (ties in dominance go to the earlier value).
FIELD_ORDER: Final[dict[str, tuple[str, ...]]] = {
    **CATEGORIES,
    "urgency": URGENCIES[::-1],
    "lifecycle_stage": LIFECYCLE_STAGES,
    "intent": INTENTS,
}


def _zero_sums() -> dict[str, float]:
    return dict.fromkeys(("duration_min", "interactions", "intent_strength", "amount"), 0.0)


def _empty_counts() -> dict[str, dict[str, int]]:
    return {name: {} for name in STATUS_FIELDS}


@dataclass
class ClusterStats:
    """Incremental statistics of one cluster: what the report and the labels read.

    ``segments`` and the sums count every segment assigned to the cluster; ``users`` counts
    distinct users with at least one such segment (:class:`UniqueCounter`); ``assigned``
    counts users whose current cluster persona is this one, exactly.
    ``counts[field]`` is the distribution of each of :data:`STATUS_FIELDS`;
    ``timeline`` maps a bucket start (epoch ms of event time) to segments in it.

    >>> st = ClusterStats(0)
    >>> st.add({"user_id": "a", "duration_min": 2.0, "interactions": 4, "intent_strength": 0.5,
    ...         "urgency": "high", "transaction_status": "completed", "end_ms": 90_000_000})
    >>> st.add({"user_id": "b", "duration_min": 4.0, "interactions": 8, "intent_strength": 0.7,
    ...         "urgency": "high", "transaction_status": "in_progress", "end_ms": 90_000_000})
    >>> st.segments, len(st.users), st.mean("duration_min"), st.dominant("urgency")
    (2, 2, 3.0, ('high', 1.0))
    >>> st.dominant("transaction_status"), st.timeline
    (('in_progress', 0.5), {86400000: 2})
    """

    cluster_id: int
    segments: int = 0
    assigned: int = 0
    users: UniqueCounter = field(default_factory=lambda: UniqueCounter(default_settings().personas.unique_users_exact_cap))
    sums: dict[str, float] = field(default_factory=_zero_sums)
    counts: dict[str, dict[str, int]] = field(default_factory=_empty_counts)
    timeline: dict[int, int] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None

    def add(self, segment: Any, cfg: PersonaSettings | None = None) -> None:
        """Count one segment; its end time goes to a timeline bucket of ``[personas]
        timeline_bucket_s``, keeping the latest ``timeline_max_buckets`` (``cfg`` default:
        :func:`~intentstream.stream.settings.default_settings`)."""
        cfg = cfg or default_settings().personas
        seg = as_mapping(segment)
        self.segments += 1
        uid = seg.get("user_id")
        if isinstance(uid, str):
            self.users.add(uid)
        sums = self.sums
        sums["duration_min"] += non_negative(seg.get("duration_min"))
        sums["interactions"] += non_negative(seg.get("interactions"))
        sums["intent_strength"] += min(1.0, non_negative(seg.get("intent_strength")))
        sums["amount"] += non_negative(seg.get("amount"))
        for name in STATUS_FIELDS:
            value = seg.get(name)
            key = value if isinstance(value, str) and value else "unknown"
            c = self.counts[name]
            if key not in c and len(c) >= MAX_DISTINCT:
                key = "other"
            c[key] = c.get(key, 0) + 1
        t = seg.get("end_ms")
        if isinstance(t, int) and not isinstance(t, bool):
            bucket_ms = max(1, cfg.timeline_bucket_s) * 1000
            bucket = t - t % bucket_ms
            self.timeline[bucket] = self.timeline.get(bucket, 0) + 1
            if len(self.timeline) > cfg.timeline_max_buckets:
                del self.timeline[min(self.timeline)]
            self.first_ms = t if self.first_ms is None else min(self.first_ms, t)
            self.last_ms = t if self.last_ms is None else max(self.last_ms, t)

    def mean(self, name: str) -> float:
        """Mean of ``duration_min``, ``interactions``, ``intent_strength`` or ``amount``."""
        return self.sums[name] / self.segments if self.segments else 0.0

    def distribution(self, name: str) -> list[tuple[str, float]]:
        """(value, share of segments) of a status field, most common first."""
        n = self.segments or 1
        return [(v, c / n) for v, c in _top(self.counts[name], FIELD_ORDER.get(name, ()))]

    def dominant(self, name: str) -> tuple[str, float]:
        """The most common value of a status field and its share (``("unknown", 0.0)`` if empty)."""
        dist = self.distribution(name)
        return dist[0] if dist else ("unknown", 0.0)

    def share(self, name: str, value: str) -> float:
        return self.counts[name].get(value, 0) / self.segments if self.segments else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "segments": self.segments,
            "assigned": self.assigned,
            "users": self.users.to_dict(),
            "sums": dict(self.sums),
            "counts": {k: dict(v) for k, v in self.counts.items()},
            "timeline": sorted(self.timeline.items()),
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterStats:
        st = cls(int(data["cluster_id"]), users=UniqueCounter.from_dict(data["users"]))
        st.segments = int(data["segments"])
        st.assigned = int(data["assigned"])
        st.sums.update({k: float(v) for k, v in data["sums"].items()})
        for k, v in data["counts"].items():
            st.counts[k] = {str(a): int(b) for a, b in v.items()}
        st.timeline = {int(b): int(n) for b, n in data["timeline"]}
        st.first_ms = data.get("first_ms")
        st.last_ms = data.get("last_ms")
        return st
