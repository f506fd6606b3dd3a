"""The persona model: online clustering of closed intent segments into cluster personas.

Two kinds of persona appear in this product; this package is about the second:

* the **behaviour persona** of one segment: its behaviour stage and main activity, set by
  the sessionizer (``stream/sessions/segments.py``);
* the **cluster persona** of a user: the id of a River cluster (and that cluster's
  :class:`~intentstream.stream.personas.labels.ClusterLabel`), learned here from the
  user's recent segments.

:class:`PersonaModel` turns each segment into its feature vector
(:func:`~intentstream.stream.personas.features.segment_features`), scales and clusters it
with the River pipeline (:func:`make_pipeline`), adds it to the cluster's
:class:`~intentstream.stream.personas.stats.ClusterStats` and to the user's votes, from
which it picks the user's cluster persona. It never touches I/O; its state
travels as a checkpoint (:mod:`intentstream.stream.personas.checkpoint`).

The River pipeline is ``FeatureScaler | estimator`` (:func:`make_pipeline`);
:func:`make_estimator` picks the estimator ``[personas] estimator`` names. The default is
:class:`PersonaKMeans`, River's online ``KMeans`` seeded from the first distinct
segments, with a running-mean learning rate and a distance loop that does not depend on
string hashing: its cluster ids are its centers, so a cluster keeps its id for the life
of the model. DBSTREAM and CluStream renumber their macro clusters when they recluster,
which costs them in the measured per-user agreement (``bench/personas.py``,
``docs/personas.md``). Every estimator is seeded, so the same segments in the same order
give the same model.

River models cannot be merged, so exactly one process learns (the single writer,
:mod:`intentstream.stream.personas.service` and ``agents/personas.py``); on restart it
restores the last checkpoint: clusters keep their ids and learning continues exactly
where the checkpoint left off.

>>> from intentstream.stream.settings import PersonaSettings, default_settings
>>> model = PersonaModel(PersonaSettings.defaults(n_clusters=3))
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
>>> clone = PersonaModel.from_checkpoint(model.checkpoint(), PersonaSettings.defaults(n_clusters=3))
>>> clone.predict_one(seg) == cid and clone.stats[cid].to_dict() == model.stats[cid].to_dict()
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

from river import base, cluster, preprocessing

from intentstream.stream.personas.checkpoint import decode_checkpoint, encode_checkpoint, model_fingerprint
from intentstream.stream.personas.features import NUMERIC_FEATURES, as_mapping, segment_features
from intentstream.stream.personas.labels import ClusterLabel, cluster_label
from intentstream.stream.personas.stats import ClusterStats, UniqueCounter
from intentstream.stream.settings import PersonaSettings, default_settings

__all__ = [
    "ASSIGNMENT_RULES",
    "ESTIMATORS",
    "FeatureScaler",
    "PersonaKMeans",
    "PersonaModel",
    "make_estimator",
    "make_pipeline",
]

#: How a user's cluster persona is chosen from their votes (``[personas] assignment``).
ASSIGNMENT_RULES: Final = ("distinctive", "majority")


# --------------------------------------------------------------------------- the River pipeline
# FeatureScaler and PersonaKMeans are pickled into every checkpoint under this module's
# path (intentstream.stream.personas.model): moving them makes stored checkpoints unreadable.


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
                # River declares its centers defaultdicts; this model's are plain dicts (read with .get)
                self.centers[c] = dict(x)  # type: ignore[assignment]
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


def make_estimator(cfg: PersonaSettings) -> base.Clusterer:
    """The River clusterer that ``cfg.estimator`` names, with its configured parameters.

    >>> make_estimator(PersonaSettings.defaults(estimator="dbstream")).__class__.__name__
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


# --------------------------------------------------------------------------- the model


class PersonaModel:
    """Online clustering of segments into cluster personas, with a River-like surface.

    ``learn_one(segment)`` scales and clusters one closed segment, updates that cluster's
    :class:`ClusterStats` and the user's votes (one per segment, per cluster), and returns
    the segment's cluster id; ``predict_one(segment)`` only predicts.
    ``assignment(user_id)`` is the user's cluster persona, from their recent votes (halved once a
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
    >>> cfg = PersonaSettings.defaults(n_clusters=4)
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
        self.settings = cfg = settings or default_settings().personas
        if cfg.assignment not in ASSIGNMENT_RULES:
            raise ValueError(f"unknown [personas] assignment {cfg.assignment!r}; known: {', '.join(ASSIGNMENT_RULES)}")
        self.pipeline = make_pipeline(cfg)
        self._scaler, self._estimator = self.pipeline.steps.values()
        self._learn_predict = getattr(self._estimator, "learn_predict_one", None)
        self.stats: dict[int, ClusterStats] = {}
        self._votes: dict[str, dict[int, int]] = {}
        self._assigned: dict[str, int] = {}
        self.segments_seen = 0

    # -- learning -------------------------------------------------------------------------

    def learn_one(self, segment: Any) -> int:
        """Learn one closed segment; returns the cluster it was assigned to."""
        seg = as_mapping(segment)
        x = segment_features(seg)
        self._scaler.learn_one(x)
        z = self._scaler.transform_one(x)
        if self._learn_predict is not None:
            cid = int(self._learn_predict(z))
        else:
            self._estimator.learn_one(z)
            cid = int(self._estimator.predict_one(z) or 0)
        self.segments_seen += 1
        self._ensure_stats(cid).add(seg, self.settings)
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
        """The user's current cluster persona (cluster id), or None for a user never seen."""
        return self._assigned.get(user_id)

    @property
    def users(self) -> Mapping[str, int]:
        """Every user seen and their current cluster (read-only view)."""
        return self._assigned

    def label(self, cluster_id: int) -> ClusterLabel:
        return cluster_label(self.stats[cluster_id])

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
        return encode_checkpoint(self.state_dict(meta), self.pipeline)

    def restore(self, data: bytes) -> dict[str, Any]:
        """Replace this model's state with a checkpoint's; returns the checkpoint's ``meta``.

        Raises :class:`~intentstream.stream.personas.checkpoint.CheckpointError` for foreign
        bytes or a checkpoint of another estimator configuration. Only restore checkpoints
        the product wrote itself (the model part is a pickle; see
        :mod:`intentstream.stream.personas.checkpoint`).
        """
        state, pipeline = decode_checkpoint(data, self.settings)
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
