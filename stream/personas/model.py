"""Personas: online clustering of closed intent segments, cluster statistics and labels.

A closed :class:`~intentstream.stream.sessions.segments.IntentSegment` (or its ``to_dict()`` form) becomes a
fixed-shape feature vector (:func:`segment_features`), a River pipeline scales it and
assigns it to a cluster, and per-cluster statistics (:class:`ClusterStats`) accumulate what
the persona report shows. A user's persona is the majority cluster of their recent
segments.

Feature vector (:data:`FEATURES`, always all keys, in this order)
------------------------------------------------------------------
Numeric, standardised online by ``river.preprocessing.StandardScaler``:

========================  ==============================================================
``log_duration``          ``log1p(duration_min)``                              (>= 0)
``log_interactions``      ``log1p(interactions)``                              (>= 0)
``intent_strength``       the segment's intent strength, clipped to [0, 1]
``urgency``               low 0, medium 0.5, high 1 (unknown: 0.5)
``share_<intent>``        share of the segment's events (``type_counts``) whose type votes
                          for each intent: browsing, coupon, purchase, kyc, account
                          (:data:`TYPE_INTENT`, the sessionizer's table); generic
                          interactions count in the total only; all 0 for no events
``log_amount``            ``log1p(amount)`` (0 without an amount)
========================  ==============================================================

Categorical, one-hot (0 or 1, times ``categorical_weight``, not standardised, so a rare
category does not dominate the distance): ``main_activity=<v>``, ``kyc_status=<v>``,
``transaction_status=<v>``, ``behaviour_stage=<v>`` for every value of
:data:`CATEGORIES` plus ``=other`` for values outside the vocabulary.

Model and identity
------------------
The default estimator is River's online ``KMeans`` (:class:`PersonaKMeans`: seeded from
the first distinct segments, running-mean learning rate, a distance loop that does not
depend on string hashing): its cluster ids are its centers, so a cluster keeps its id for
the life of the model. DBSTREAM and
CluStream renumber their macro clusters when they recluster, which costs them in the
measured per-user agreement (``bench/personas.py``, ``docs/personas.md``). Every
estimator is seeded, so the same segments in the same order give the same model.

Single writer
-------------
River models cannot be merged, so exactly one process learns: the personas agent consumes
the ``segments`` topic (all partitions), calls :meth:`PersonaService.on_segment` for each
segment, and :meth:`PersonaService.maybe_checkpoint` regularly, which writes users'
clusters, cluster labels and a checkpoint (:meth:`PersonaModel.checkpoint`) to the store
(``stream/state/redis/personas.py``). Trigger workers only read users' clusters. On restart
the agent restores the last checkpoint: clusters keep their ids and learning continues
exactly where the checkpoint left off (replay the segments after the checkpoint, e.g. from
the Kafka offsets saved in the checkpoint's ``meta``).

Trust boundary
--------------
A checkpoint holds a ``pickle`` of the River pipeline, and unpickling runs code. Only
restore checkpoints this product wrote to its own Redis (or a file it wrote); never accept
one from users or other systems. The statistics and user votes travel as JSON beside it.

>>> from intentstream.stream.settings import PersonaSettings
>>> model = PersonaModel(PersonaSettings(n_clusters=3))
>>> seg = {"user_id": "u1", "duration_min": 4.0, "interactions": 12, "intent_strength": 0.7,
...        "urgency": "medium", "main_activity": "coupon_oriented", "kyc_status": "not_started",
...        "transaction_status": "completed", "behaviour_stage": "transacted",
...        "lifecycle_stage": "growth", "type_counts": {"coupon_view": 6, "page_view": 6},
...        "end_ms": 1767607200000}
>>> cid = model.learn_one(seg)
>>> model.predict_one(seg) == cid == model.assignment("u1")
True
>>> model.stats[cid].segments, model.label(cid).stage
(1, 'transacted')
>>> clone = PersonaModel.from_checkpoint(model.checkpoint(), PersonaSettings(n_clusters=3))
>>> clone.predict_one(seg) == cid and clone.stats[cid].to_dict() == model.stats[cid].to_dict()
True
"""

from __future__ import annotations

import base64
import hashlib
import math
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from river import base, cluster, preprocessing

from intentstream.stream import codec
from intentstream.stream.sessions.segments import (
    BEHAVIOUR_STAGES,
    INTENTS,
    KYC_STATUSES,
    LIFECYCLE_STAGES,
    MAIN_ACTIVITY,
    TRANSACTION_STATUSES,
    URGENCIES,
)
from intentstream.stream.sessions.segments import TYPE_INTENT as _TYPE_VOTES
from intentstream.stream.settings import PersonaSettings

__all__ = [
    "CATEGORIES",
    "FEATURES",
    "NUMERIC_FEATURES",
    "STATUS_FIELDS",
    "Assignment",
    "CheckpointError",
    "ClusterStats",
    "FeatureScaler",
    "MemoryPersonaStore",
    "PersonaKMeans",
    "PersonaLabel",
    "PersonaModel",
    "PersonaService",
    "PersonaStore",
    "UniqueCounter",
    "adjusted_rand_index",
    "make_estimator",
    "make_pipeline",
    "persona_label",
    "segment_features",
]

FEATURE_VERSION: Final = 1

#: Intent of each voting event type (from :mod:`intentstream.stream.sessions.segments`); other types (app_open,
#: message_*, unknown) are generic interactions and count towards no intent share.
TYPE_INTENT: Final[dict[str, str]] = {typ: INTENTS[i] for typ, (i, _) in _TYPE_VOTES.items()}
INTENT_GROUPS: Final = INTENTS
URGENCY_LEVELS: Final[dict[str, float]] = {"low": 0.0, "medium": 0.5, "high": 1.0}

#: The vocabulary of each categorical segment field that is one-hot encoded.
CATEGORIES: Final[dict[str, tuple[str, ...]]] = {
    "main_activity": tuple(MAIN_ACTIVITY.values()),
    "kyc_status": KYC_STATUSES,
    "transaction_status": TRANSACTION_STATUSES,
    "behaviour_stage": tuple(BEHAVIOUR_STAGES),
}
#: Segment fields whose value distribution every cluster keeps (:class:`ClusterStats`).
STATUS_FIELDS: Final = (
    "behaviour_stage", "urgency", "main_activity", "kyc_status", "transaction_status", "lifecycle_stage", "intent",
)  # fmt: skip

NUMERIC_FEATURES: Final = (
    "log_duration", "log_interactions", "intent_strength", "urgency",
    *(f"share_{g}" for g in INTENT_GROUPS), "log_amount",
)  # fmt: skip
CATEGORICAL_FEATURES: Final = tuple(f"{name}={v}" for name, vals in CATEGORIES.items() for v in (*vals, "other"))
FEATURES: Final = NUMERIC_FEATURES + CATEGORICAL_FEATURES

#: Distinct values a cluster's counter keeps per field; further values count as "other".
MAX_DISTINCT: Final = 32


def _as_mapping(segment: Any) -> Mapping[str, Any]:
    if isinstance(segment, Mapping):
        return segment
    return segment.to_dict()


def _num(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


def segment_features(segment: Any) -> dict[str, float]:
    """The feature vector of one segment (a mapping or an object with ``to_dict()``).

    All keys of :data:`FEATURES`, in that order, always present; missing or malformed
    fields count as zero / "other".

    >>> x = segment_features({"duration_min": 0, "interactions": 3, "intent_strength": 2.0,
    ...                       "urgency": "high", "type_counts": {"page_view": 2, "kyc_start": 1},
    ...                       "kyc_status": "in_progress", "behaviour_stage": "shopping"})
    >>> list(x) == list(FEATURES)
    True
    >>> x["intent_strength"], x["urgency"], round(x["share_kyc"], 3), x["log_amount"]
    (1.0, 1.0, 0.333, 0.0)
    >>> x["kyc_status=in_progress"], x["behaviour_stage=other"], x["main_activity=other"]
    (1.0, 1.0, 1.0)
    """
    seg = _as_mapping(segment)
    x: dict[str, float] = {
        "log_duration": math.log1p(_num(seg.get("duration_min"))),
        "log_interactions": math.log1p(_num(seg.get("interactions"))),
        "intent_strength": min(1.0, _num(seg.get("intent_strength"))),
        "urgency": URGENCY_LEVELS.get(seg.get("urgency"), 0.5),  # type: ignore[arg-type]
    }
    shares = dict.fromkeys(INTENT_GROUPS, 0.0)
    counts = seg.get("type_counts") or {}
    total = 0.0
    if isinstance(counts, Mapping):
        for typ, n in counts.items():
            n = _num(n)
            intent = TYPE_INTENT.get(typ)
            if intent is not None:
                shares[intent] += n
            total += n
    for g in INTENT_GROUPS:
        x[f"share_{g}"] = shares[g] / total if total else 0.0
    x["log_amount"] = math.log1p(_num(seg.get("amount")))
    for name, vocab in CATEGORIES.items():
        value = seg.get(name)
        hit = value if value in vocab else "other"
        for v in (*vocab, "other"):
            x[f"{name}={v}"] = 1.0 if v == hit else 0.0
    return x


# --------------------------------------------------------------------------- the pipeline


class FeatureScaler(base.Transformer):
    """Standardise the numeric features online; pass one-hot features through, weighted.

    ``river.preprocessing.StandardScaler`` on the keys of ``numeric`` (their order is
    kept); every other key is multiplied by ``categorical_weight``. Output keys follow the
    input's order, so downstream distance sums are reproducible.

    >>> fs = FeatureScaler(numeric=("a",), categorical_weight=0.5)
    >>> for a in (1.0, 3.0):
    ...     fs.learn_one({"a": a, "c=x": 1.0})
    >>> fs.transform_one({"a": 3.0, "c=x": 1.0})
    {'a': 1.0, 'c=x': 0.5}
    """

    def __init__(self, numeric: tuple[str, ...] = NUMERIC_FEATURES, categorical_weight: float = 1.0):
        self.numeric = tuple(numeric)
        self.categorical_weight = categorical_weight
        self.scaler = preprocessing.StandardScaler()

    def learn_one(self, x: dict) -> None:
        self.scaler.learn_one({k: x[k] for k in self.numeric if k in x})

    def transform_one(self, x: dict) -> dict:
        z = self.scaler.transform_one({k: x[k] for k in self.numeric if k in x})
        w = self.categorical_weight
        return {k: (z[k] if k in z else v * w) for k, v in x.items()}


class PersonaKMeans(cluster.KMeans):
    """River's online ``KMeans``, seeded from the data, with a reproducible distance loop.

    Three changes to ``river.cluster.KMeans``, all measured in ``bench/personas.py``:

    * **Initialisation from the data**: the first ``n_clusters`` distinct points become
      the centers, in arrival order (River draws them at random from N(mu, sigma), and on
      standardised segment features one center then wins nearly every point: one cluster
      in practice). Until all are set, points join the nearest center set so far.
    * **Learning rate** ``max(halflife, 1 / n)`` for a center's ``n``-th point: a running
      mean while the cluster is young, an exponential moving average (River's fixed
      ``halflife`` step) once it has ``1 / halflife`` points, so centers keep following
      drift.
    * **Order**: River sums the distance over a ``set`` of keys, whose order (and so the
      rounding, and which center wins a near tie) depends on the process's string hash
      seed. Here the sum follows ``x``'s key order, then the center's other keys.

    The same points in the same order give the same clusters in every process, and a
    cluster keeps its id for the life of the model.

    >>> km = PersonaKMeans(n_clusters=2, halflife=0.1)
    >>> [km.learn_predict_one({"a": a}) for a in (0.0, 0.0, 5.0, 0.2, 5.2, 0.1)]
    [0, 0, 1, 0, 1, 0]
    >>> round(km.centers[1]["a"], 2), km.counts
    (5.1, {0: 4, 1: 2})
    """

    def __init__(self, n_clusters: int = 8, halflife: float = 0.05, mu: float = 0, sigma: float = 1, p: int = 2, seed: int | None = None):
        super().__init__(n_clusters=n_clusters, halflife=halflife, mu=mu, sigma=sigma, p=p, seed=seed)
        self.centers = {}
        self.counts: dict[int, int] = {}

    def _distance(self, center: Mapping[str, float], x: Mapping[str, float]) -> float:
        p = self.p
        d = 0.0
        for k, xk in x.items():
            d += abs(center.get(k, 0.0) - xk) ** p
        if len(center) > len(x):
            for k, ck in center.items():
                if k not in x:
                    d += abs(ck) ** p
        return d

    def predict_one(self, x: dict) -> int:
        best, best_d = 0, math.inf
        for c, center in self.centers.items():
            d = self._distance(center, x)
            if d < best_d:
                best, best_d = c, d
        return best

    def learn_predict_one(self, x: dict) -> int:
        if len(self.centers) < self.n_clusters:
            if not self.centers or all(self._distance(c, x) > 0 for c in self.centers.values()):
                c = len(self.centers)
                self.centers[c] = dict(x)
                self.counts[c] = 1
                return c
        c = self.predict_one(x)
        n = self.counts[c] = self.counts.get(c, 0) + 1
        rate = max(self.halflife, 1.0 / n)
        center = self.centers[c]
        for k, xk in x.items():
            ck = center.get(k, 0.0)
            center[k] = ck + rate * (xk - ck)
        return c

    def learn_one(self, x: dict) -> None:
        self.learn_predict_one(x)


ESTIMATORS: Final = ("kmeans", "dbstream", "clustream", "streamkmeans")
ASSIGNMENT_RULES: Final = ("distinctive", "majority")


def make_estimator(cfg: PersonaSettings) -> base.Clusterer:
    """The River clusterer that ``cfg.estimator`` names, with its configured parameters.

    >>> make_estimator(PersonaSettings(estimator="dbstream")).__class__.__name__
    'DBSTREAM'
    """
    name = cfg.estimator
    if name == "kmeans":
        return PersonaKMeans(n_clusters=cfg.n_clusters, halflife=cfg.kmeans_halflife, seed=cfg.seed)
    if name == "dbstream":
        return cluster.DBSTREAM(
            clustering_threshold=cfg.dbstream_clustering_threshold,
            fading_factor=cfg.dbstream_fading_factor,
            cleanup_interval=cfg.dbstream_cleanup_interval,
            intersection_factor=cfg.dbstream_intersection_factor,
            minimum_weight=cfg.dbstream_minimum_weight,
        )
    if name == "clustream":
        return cluster.CluStream(
            n_macro_clusters=cfg.n_clusters,
            max_micro_clusters=cfg.clustream_max_micro_clusters,
            time_gap=cfg.clustream_time_gap,
            seed=cfg.seed,
            halflife=cfg.kmeans_halflife,
        )
    if name == "streamkmeans":
        return cluster.STREAMKMeans(
            chunk_size=cfg.streamkmeans_chunk_size,
            n_clusters=cfg.n_clusters,
            halflife=cfg.kmeans_halflife,
            seed=cfg.seed,
        )
    raise ValueError(f"unknown persona estimator {name!r}; known: {', '.join(ESTIMATORS)}")


def make_pipeline(cfg: PersonaSettings):
    """``FeatureScaler | estimator`` (a ``river.compose.Pipeline``)."""
    return FeatureScaler(categorical_weight=cfg.categorical_weight) | make_estimator(cfg)


def model_fingerprint(cfg: PersonaSettings) -> dict[str, Any]:
    """What a checkpoint must agree with to be restored: the features and the estimator."""
    params = {k: v for k, v in sorted(vars(cfg).items()) if k.startswith(cfg.estimator + "_")}
    if cfg.estimator in ("kmeans", "clustream", "streamkmeans"):
        params["kmeans_halflife"] = cfg.kmeans_halflife
    return {
        "features": FEATURE_VERSION,
        "estimator": cfg.estimator,
        "n_clusters": cfg.n_clusters,
        "seed": cfg.seed,
        "categorical_weight": cfg.categorical_weight,
        "params": params,
    }


# --------------------------------------------------------------------------- statistics


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

    def __init__(self, cap: int = 10_000):
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
    counts users whose current persona (majority cluster) is this one, exactly.
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
    users: UniqueCounter = field(default_factory=UniqueCounter)
    sums: dict[str, float] = field(default_factory=_zero_sums)
    counts: dict[str, dict[str, int]] = field(default_factory=_empty_counts)
    timeline: dict[int, int] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None

    def add(self, segment: Any, bucket_ms: int = 86_400_000, max_buckets: int = 90) -> None:
        seg = _as_mapping(segment)
        self.segments += 1
        uid = seg.get("user_id")
        if isinstance(uid, str):
            self.users.add(uid)
        sums = self.sums
        sums["duration_min"] += _num(seg.get("duration_min"))
        sums["interactions"] += _num(seg.get("interactions"))
        sums["intent_strength"] += min(1.0, _num(seg.get("intent_strength")))
        sums["amount"] += _num(seg.get("amount"))
        for name in STATUS_FIELDS:
            value = seg.get(name)
            key = value if isinstance(value, str) and value else "unknown"
            c = self.counts[name]
            if key not in c and len(c) >= MAX_DISTINCT:
                key = "other"
            c[key] = c.get(key, 0) + 1
        t = seg.get("end_ms")
        if isinstance(t, int) and not isinstance(t, bool):
            bucket = t - t % bucket_ms
            self.timeline[bucket] = self.timeline.get(bucket, 0) + 1
            if len(self.timeline) > max_buckets:
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
        st = cls(int(data["cluster_id"]))
        st.segments = int(data["segments"])
        st.assigned = int(data["assigned"])
        st.users = UniqueCounter.from_dict(data["users"])
        st.sums.update({k: float(v) for k, v in data["sums"].items()})
        for k, v in data["counts"].items():
            st.counts[k] = {str(a): int(b) for a, b in v.items()}
        st.timeline = {int(b): int(n) for b, n in data["timeline"]}
        st.first_ms = data.get("first_ms")
        st.last_ms = data.get("last_ms")
        return st


# --------------------------------------------------------------------------- labels

#: A behaviour stage may name a cluster only when the cluster's dominant status agrees.
STAGE_REQUIRES: Final[dict[str, tuple[str, frozenset[str]]]] = {
    "transacted": ("transaction_status", frozenset({"completed"})),
    "transacting": ("transaction_status", frozenset({"in_progress", "failed"})),
    "verifying": ("kyc_status", frozenset({"in_progress", "rejected"})),
}


def stage_agrees(stage: str, dominant: Mapping[str, str]) -> bool:
    """True unless ``stage`` claims a status the cluster's dominant statuses deny.

    >>> stage_agrees("transacted", {"transaction_status": "in_progress"})
    False
    >>> stage_agrees("exploring", {"transaction_status": "in_progress"})
    True
    """
    rule = STAGE_REQUIRES.get(stage)
    return rule is None or dominant.get(rule[0]) in rule[1]


def _stage_from_statuses(dominant: Mapping[str, str]) -> str:
    tx, kyc = dominant.get("transaction_status"), dominant.get("kyc_status")
    if tx == "completed":
        return "transacted"
    if tx in ("in_progress", "failed"):
        return "transacting"
    if kyc in ("in_progress", "rejected"):
        return "verifying"
    return "exploring"


@dataclass(frozen=True)
class PersonaLabel:
    """Dominant behaviour stage, urgency and main activity of a cluster (vocabulary keys).

    Rendered by :meth:`text` / :meth:`title` with the playbook's vocabulary:

    >>> from intentstream.stream.personas.playbook import load_playbook
    >>> lab = PersonaLabel("transacted", "medium", "coupon_oriented")
    >>> vocab = load_playbook().vocab
    >>> lab.text("zh", vocab), lab.text("en", vocab)
    ('已完成交易·中紧迫·优惠券导向', 'transacted · medium urgency · coupon-oriented')
    >>> lab.title(0, "zh", vocab), lab.title(0, "en", vocab)
    ('聚类 0: 已完成交易·中紧迫', 'Cluster 0: transacted · medium urgency')
    """

    stage: str
    urgency: str
    activity: str

    def parts(self, lang: str, vocab: Any) -> tuple[str, str, str]:
        return (
            vocab.term("behaviour_stage", self.stage, lang),
            vocab.term("urgency", self.urgency, lang),
            vocab.term("main_activity", self.activity, lang),
        )

    def text(self, lang: str, vocab: Any) -> str:
        return vocab.separator(lang).join(self.parts(lang, vocab))

    def title(self, cluster_id: int, lang: str, vocab: Any) -> str:
        stage, urgency, _ = self.parts(lang, vocab)
        return f"{vocab.cluster_word(lang)} {cluster_id}: {stage}{vocab.separator(lang)}{urgency}"


def persona_label(stats: ClusterStats) -> PersonaLabel:
    """The label of a cluster: its most common behaviour stage that agrees with its dominant
    transaction and KYC statuses (:func:`stage_agrees`), else a stage derived from those
    statuses; its dominant urgency and main activity.

    >>> st = ClusterStats(0)
    >>> for tx in ("in_progress", "in_progress", "completed"):
    ...     st.add({"behaviour_stage": "transacted", "transaction_status": tx, "urgency": "low",
    ...             "main_activity": "purchase_focused"})
    >>> persona_label(st)   # "transacted" would contradict the dominant "in_progress"
    PersonaLabel(stage='transacting', urgency='low', activity='purchase_focused')
    """
    dominant = {name: stats.dominant(name)[0] for name in ("transaction_status", "kyc_status")}
    stage = next(
        (v for v, _ in stats.distribution("behaviour_stage") if v != "unknown" and stage_agrees(v, dominant)),
        None,
    )
    if stage is None:
        stage = _stage_from_statuses(dominant)
    urgency = stats.dominant("urgency")[0]
    activity = stats.dominant("main_activity")[0]
    return PersonaLabel(stage, urgency if urgency != "unknown" else "medium", activity)


# --------------------------------------------------------------------------- the model


class CheckpointError(ValueError):
    """Bytes that are not a persona checkpoint, or one made for another estimator."""


_MAGIC: Final = b"intentstream-personas/1\n"


class PersonaModel:
    """Online persona clustering with a River-like surface (see the module docstring).

    ``learn_one(segment)`` scales and clusters one closed segment, updates that cluster's
    :class:`ClusterStats` and the user's votes (one per segment, per cluster), and returns
    the segment's cluster id; ``predict_one(segment)`` only predicts.
    ``assignment(user_id)`` is the user's persona, from their recent votes (halved once a
    user's total passes ``user_votes_window``) by the ``assignment`` rule:

    * ``distinctive`` (default): the cluster with the highest ``votes / cluster segments``,
      i.e. where the user over-indexes most against everyone. Every persona spends most
      segments browsing, so plain majority puts nearly everyone in the browsing cluster;
      this rule doubles the adjusted Rand index against the planted personas
      (``bench/personas.py``).
    * ``majority``: the cluster of most of the user's recent segments.

    Ties keep the current persona, then prefer the newest segment's cluster, then the
    lowest id.

    Deterministic: the same settings and the same segments in the same order give the
    same clusters, statistics and checkpoint, and ``from_checkpoint(checkpoint())``
    continues exactly like the original.

    >>> from intentstream.stream.synth.segments import synthetic_segments
    >>> cfg = PersonaSettings(n_clusters=4)
    >>> segs = list(synthetic_segments(users=40, seed=1))
    >>> a, b = PersonaModel(cfg), PersonaModel(cfg)
    >>> [a.learn_one(s) for s in segs] == [b.learn_one(s) for s in segs]
    True
    >>> a.checkpoint() == b.checkpoint(), a.segments_seen == len(segs)
    (True, True)
    >>> len(a.users) == len({s["user_id"] for s in segs}) == sum(st.assigned for st in a.clusters())
    True
    """

    def __init__(self, settings: PersonaSettings | None = None):
        self.settings = cfg = settings or PersonaSettings()
        if cfg.assignment not in ASSIGNMENT_RULES:
            raise ValueError(f"unknown [personas] assignment {cfg.assignment!r}; known: {', '.join(ASSIGNMENT_RULES)}")
        self.pipeline = make_pipeline(cfg)
        self._scaler, self._estimator = self.pipeline.steps.values()
        self._learn_predict = getattr(self._estimator, "learn_predict_one", None)
        self.stats: dict[int, ClusterStats] = {}
        self._votes: dict[str, dict[int, int]] = {}
        self._assigned: dict[str, int] = {}
        self.segments_seen = 0
        self._bucket_ms = max(1, cfg.timeline_bucket_s) * 1000

    # -- learning -------------------------------------------------------------------------

    def learn_one(self, segment: Any) -> int:
        """Learn one closed segment; returns the cluster it was assigned to."""
        seg = _as_mapping(segment)
        x = segment_features(seg)
        self._scaler.learn_one(x)
        z = self._scaler.transform_one(x)
        if self._learn_predict is not None:
            cid = int(self._learn_predict(z))
        else:
            self._estimator.learn_one(z)
            cid = int(self._estimator.predict_one(z) or 0)
        self.segments_seen += 1
        self._ensure_stats(cid).add(seg, self._bucket_ms, self.settings.timeline_max_buckets)
        uid = seg.get("user_id")
        if isinstance(uid, str):
            self._vote(uid, cid)
        return cid

    def learn_many(self, segments: Iterable[Any]) -> list[int]:
        return [self.learn_one(s) for s in segments]

    def predict_one(self, segment: Any) -> int:
        """The cluster a segment would join now (no learning)."""
        z = self._scaler.transform_one(segment_features(segment))
        return int(self._estimator.predict_one(z) or 0)

    def _vote(self, uid: str, cid: int) -> tuple[int | None, int]:
        votes = self._votes.get(uid)
        if votes is None:
            votes = self._votes[uid] = {}
        votes[cid] = votes.get(cid, 0) + 1
        if sum(votes.values()) > self.settings.user_votes_window:
            for c in list(votes):
                votes[c] //= 2
                if not votes[c]:
                    del votes[c]
            votes[cid] = votes.get(cid, 0) or 1  # the newest segment always keeps its vote
        prev = self._assigned.get(uid)
        if self.settings.assignment == "majority":
            best = max(votes, key=lambda c: (votes[c], c == prev, c == cid, -c))
        else:  # distinctive: the user's votes relative to each cluster's share of all segments
            stats = self.stats
            best = max(votes, key=lambda c: (votes[c] / stats[c].segments, c == prev, c == cid, -c))
        return self._assign(uid, prev, best)

    def _assign(self, uid: str, prev: int | None, best: int) -> tuple[int | None, int]:
        if best != prev:
            self._assigned[uid] = best
            if prev is not None:
                self.stats[prev].assigned -= 1
            self._ensure_stats(best).assigned += 1
        return prev, best

    def _ensure_stats(self, cid: int) -> ClusterStats:
        st = self.stats.get(cid)
        if st is None:
            st = self.stats[cid] = ClusterStats(cid, users=UniqueCounter(self.settings.unique_users_exact_cap))
        return st

    # -- reading ----------------------------------------------------------------------------

    def assignment(self, user_id: str) -> int | None:
        """The user's current persona (cluster id), or None for a user never seen."""
        return self._assigned.get(user_id)

    @property
    def users(self) -> Mapping[str, int]:
        """Every user seen and their current cluster (read-only view)."""
        return self._assigned

    def label(self, cluster_id: int) -> PersonaLabel:
        return persona_label(self.stats[cluster_id])

    def clusters(self) -> list[ClusterStats]:
        """Clusters with at least one segment, by id."""
        return [self.stats[c] for c in sorted(self.stats) if self.stats[c].segments]

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON part of a checkpoint: fingerprint, statistics, votes and ``meta``."""
        return {
            "fingerprint": model_fingerprint(self.settings),
            "segments_seen": self.segments_seen,
            "meta": dict(meta or {}),
            "stats": [self.stats[c].to_dict() for c in sorted(self.stats)],
            # user -> [persona, cluster, votes, cluster, votes, ...]
            "users": {
                u: [self._assigned[u], *(n for c in sorted(v) for n in (c, v[c]))] for u, v in self._votes.items()
            },
        }

    def checkpoint(self, meta: Mapping[str, Any] | None = None) -> bytes:
        """Everything needed to continue: the pickled River pipeline and the JSON state.

        ``meta`` (JSON-serialisable, e.g. the Kafka offsets already learned) comes back
        from :func:`read_checkpoint_meta` / :attr:`PersonaService.meta`.
        """
        header = codec.dumps(self.state_dict(meta))
        return _MAGIC + len(header).to_bytes(8, "big") + header + pickle.dumps(self.pipeline, protocol=5)

    def restore(self, data: bytes) -> dict[str, Any]:
        """Replace this model's state with a checkpoint's; returns the checkpoint's ``meta``.

        Raises :class:`CheckpointError` for foreign bytes or a checkpoint of another
        estimator configuration. Only restore checkpoints the product wrote itself (see
        the module docstring: the model part is a pickle).
        """
        state, blob = _split(data)
        if state["fingerprint"] != model_fingerprint(self.settings):
            raise CheckpointError(
                f"checkpoint was made with {state['fingerprint']}, settings ask for {model_fingerprint(self.settings)}"
            )
        pipeline = pickle.loads(blob)  # trusted: written by this product to its own store
        self.pipeline = pipeline
        self._scaler, self._estimator = pipeline.steps.values()
        self._learn_predict = getattr(self._estimator, "learn_predict_one", None)
        self.segments_seen = int(state["segments_seen"])
        cap = self.settings.unique_users_exact_cap
        self.stats = {}
        for d in state["stats"]:
            st = ClusterStats.from_dict(d)
            st.users.cap = cap
            self.stats[st.cluster_id] = st
        self._votes, self._assigned = {}, {}
        for u, packed in state["users"].items():
            self._assigned[u] = int(packed[0])
            self._votes[u] = {int(packed[i]): int(packed[i + 1]) for i in range(1, len(packed), 2)}
        return dict(state["meta"])

    @classmethod
    def from_checkpoint(cls, data: bytes, settings: PersonaSettings | None = None) -> PersonaModel:
        model = cls(settings)
        model.restore(data)
        return model


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 8:
        raise CheckpointError("not a persona checkpoint")
    at = len(_MAGIC)
    n = int.from_bytes(data[at : at + 8], "big")
    try:
        state = codec.loads(data[at + 8 : at + 8 + n])
    except codec.JSONDecodeError as exc:
        raise CheckpointError(f"corrupt checkpoint header: {exc}") from exc
    return state, data[at + 8 + n :]


def read_checkpoint_meta(data: bytes) -> dict[str, Any]:
    """The ``meta`` of a checkpoint, without unpickling the model."""
    return dict(_split(data)[0]["meta"])


# --------------------------------------------------------------------------- the service


class PersonaStore(Protocol):
    """Where the single writer keeps its checkpoint and publishes users' clusters.

    Implementations: :class:`MemoryPersonaStore` (offline runs, tests) and
    ``intentstream.stream.state.redis.personas.RedisPersonaStore`` (live).
    """

    def load_checkpoint(self) -> bytes | None: ...

    def save_checkpoint(self, checkpoint: bytes, labels: Mapping[int, Mapping[str, str]]) -> None: ...

    def set_assignments(self, assignments: Mapping[str, int]) -> None: ...

    def get_assignment(self, user_id: str) -> int | None: ...

    def get_labels(self) -> dict[int, dict[str, str]]: ...


class MemoryPersonaStore:
    """In-memory :class:`PersonaStore`.

    >>> store = MemoryPersonaStore()
    >>> store.set_assignments({"u1": 3})
    >>> store.get_assignment("u1"), store.get_assignment("nobody"), store.load_checkpoint()
    (3, None, None)
    """

    def __init__(self) -> None:
        self.checkpoint: bytes | None = None
        self.assignments: dict[str, int] = {}
        self.labels: dict[int, dict[str, str]] = {}

    def load_checkpoint(self) -> bytes | None:
        return self.checkpoint

    def save_checkpoint(self, checkpoint: bytes, labels: Mapping[int, Mapping[str, str]]) -> None:
        self.checkpoint = bytes(checkpoint)
        self.labels = {int(c): dict(v) for c, v in labels.items()}

    def set_assignments(self, assignments: Mapping[str, int]) -> None:
        self.assignments.update(assignments)

    def get_assignment(self, user_id: str) -> int | None:
        return self.assignments.get(user_id)

    def get_labels(self) -> dict[int, dict[str, str]]:
        return {c: dict(v) for c, v in self.labels.items()}


@dataclass(frozen=True)
class Assignment:
    """What one segment did: its cluster, and the user's persona before and after."""

    user_id: str
    segment_id: str | None
    segment_cluster: int
    cluster: int
    previous: int | None

    @property
    def changed(self) -> bool:
        return self.cluster != self.previous


class PersonaService:
    """The single writer's pure API: learn segments, publish users' clusters, checkpoint.

    The personas agent calls :meth:`on_segment` for each segment from the ``segments``
    topic and :meth:`maybe_checkpoint` after each batch (and on a timer) with the current
    time in ms; the service does no I/O of its own beyond its :class:`PersonaStore`.
    Changed assignments are written to the store on every :meth:`maybe_checkpoint`; the
    checkpoint itself (with cluster labels for readers) after ``checkpoint_every_segments``
    segments or ``checkpoint_every_s`` seconds.

    >>> from intentstream.stream.synth.segments import synthetic_segments
    >>> from intentstream.stream.settings import Settings
    >>> store = MemoryPersonaStore()
    >>> svc = PersonaService.start(Settings(), store)
    >>> segs = list(synthetic_segments(users=10, seed=3))
    >>> a = svc.on_segment(segs[0])
    >>> a.user_id == segs[0]["user_id"] and a.previous is None and a.changed
    True
    >>> svc.maybe_checkpoint(now_ms=0)  # first call: nothing due yet, assignments flushed
    False
    >>> store.get_assignment(a.user_id) == a.cluster
    True
    >>> svc.maybe_checkpoint(now_ms=60_000), store.load_checkpoint() is not None
    (True, True)
    >>> PersonaService.start(Settings(), store).model.segments_seen
    1
    """

    def __init__(self, settings: Any, store: PersonaStore, model: PersonaModel | None = None, meta: Mapping | None = None):
        self.settings: PersonaSettings = getattr(settings, "personas", settings)
        self.store = store
        self.model = model or PersonaModel(self.settings)
        self.meta: dict[str, Any] = dict(meta or {})
        self._pending: dict[str, int] = {}
        self._since_checkpoint = 0
        self._last_checkpoint_ms: int | None = None

    @classmethod
    def start(cls, settings: Any, store: PersonaStore) -> PersonaService:
        """A service resumed from the store's checkpoint, or a fresh one.

        A checkpoint made for another estimator configuration raises
        :class:`CheckpointError`; delete it deliberately to start over.
        """
        cfg: PersonaSettings = getattr(settings, "personas", settings)
        data = store.load_checkpoint()
        if data is None:
            return cls(cfg, store)
        model = PersonaModel(cfg)
        meta = model.restore(data)
        return cls(cfg, store, model, meta)

    def on_segment(self, segment: Any) -> Assignment:
        seg = _as_mapping(segment)
        uid = seg.get("user_id")
        before = self.model.assignment(uid) if isinstance(uid, str) else None
        cid = self.model.learn_one(seg)
        after = self.model.assignment(uid) if isinstance(uid, str) else cid
        if isinstance(uid, str) and after != before:
            self._pending[uid] = after  # type: ignore[assignment]
        self._since_checkpoint += 1
        return Assignment(str(uid), seg.get("segment_id"), cid, after if after is not None else cid, before)

    def maybe_checkpoint(self, now_ms: int, *, force: bool = False, meta: Mapping[str, Any] | None = None) -> bool:
        """Flush changed assignments; checkpoint when due (or ``force``). True if it did.

        ``now_ms`` is the caller's clock (wall or event time, epoch ms); the first call
        starts the time interval. ``meta`` replaces the metadata saved with the checkpoint.
        """
        if meta is not None:
            self.meta = dict(meta)
        if self._pending:
            self.store.set_assignments(self._pending)
            self._pending = {}
        if self._last_checkpoint_ms is None:
            self._last_checkpoint_ms = now_ms
        cfg = self.settings
        due = (
            force
            or self._since_checkpoint >= cfg.checkpoint_every_segments
            or (self._since_checkpoint and now_ms - self._last_checkpoint_ms >= cfg.checkpoint_every_s * 1000)
        )
        if not due:
            return False
        self.store.save_checkpoint(self.model.checkpoint(self.meta), self.labels())
        self._since_checkpoint = 0
        self._last_checkpoint_ms = now_ms
        return True

    def labels(self) -> dict[int, dict[str, str]]:
        """Each cluster's label keys and zh/en texts, as readers of the store get them."""
        from intentstream.stream.personas.playbook import load_playbook

        vocab = load_playbook(self.settings.playbook or None).vocab
        out: dict[int, dict[str, str]] = {}
        for st in self.model.clusters():
            lab = persona_label(st)
            out[st.cluster_id] = {
                "stage": lab.stage,
                "urgency": lab.urgency,
                "activity": lab.activity,
                "zh": lab.text("zh", vocab),
                "en": lab.text("en", vocab),
            }
        return out


# --------------------------------------------------------------------------- scoring


def adjusted_rand_index(truth: Iterable[Any], predicted: Iterable[Any]) -> float:
    """Adjusted Rand index of two labelings of the same items (1 = identical partitions,
    about 0 = chance; label names do not matter).

    >>> adjusted_rand_index("aabb", [1, 1, 0, 0]), adjusted_rand_index("aaaa", [0, 0, 0, 0])
    (1.0, 1.0)
    >>> round(adjusted_rand_index("aabbcc", [0, 1, 0, 1, 0, 1]), 3)
    -0.364
    """
    pairs = list(zip(truth, predicted, strict=True))
    n = len(pairs)
    if n < 2:
        return 1.0

    def comb2(k: int) -> float:
        return k * (k - 1) / 2

    cells: dict[tuple[Any, Any], int] = {}
    rows: dict[Any, int] = {}
    cols: dict[Any, int] = {}
    for t, p in pairs:
        cells[(t, p)] = cells.get((t, p), 0) + 1
        rows[t] = rows.get(t, 0) + 1
        cols[p] = cols.get(p, 0) + 1
    index = sum(comb2(v) for v in cells.values())
    a = sum(comb2(v) for v in rows.values())
    b = sum(comb2(v) for v in cols.values())
    expected = a * b / comb2(n)
    top = (a + b) / 2
    if top == expected:
        return 1.0
    return (index - expected) / (top - expected)
