"""Persona model: features, determinism, checkpoints, labels, the service, and the single
writer's pure parts (merge order across partitions, record parsing and learning). The
stores and the lease have their contract suites in ``tests/stream/state/``.

Real River models throughout; traces are small (synthetic segments, or a short generated
clickstream through the offline sessionizer) so the file runs in a few seconds.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import subprocess
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

from intentstream.stream import codec
from intentstream.stream.personas.checkpoint import CheckpointError, read_checkpoint_meta
from intentstream.stream.personas.features import (
    CATEGORICAL_FEATURES,
    CATEGORIES,
    FEATURES,
    INTENT_GROUPS,
    NUMERIC_FEATURES,
    segment_features,
)
from intentstream.stream.personas.labels import STAGE_REQUIRES, cluster_label, stage_agrees
from intentstream.stream.personas.merge import PartitionMerger, SegmentRecord, checkpoint_meta, saved_offsets
from intentstream.stream.personas.model import PersonaModel
from intentstream.stream.personas.records import MalformedSegment, learn_records, parse_segment
from intentstream.stream.personas.scoring import adjusted_rand_index
from intentstream.stream.personas.service import PersonaService
from intentstream.stream.personas.stats import ClusterStats, UniqueCounter
from intentstream.stream.state.memory.personas import MemoryPersonaStore
from intentstream.stream.synth.segments import synthetic_segments, synthetic_truth
from intentstream.stream.settings import PersonaSettings, Settings

ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=None)
def _trace(users: int = 120, days: int = 3, seed: int = 5) -> tuple[dict, ...]:
    """Segments of a small generated clickstream, through the offline sessionizer."""
    from intentstream.stream.synth.clickstream import generate_lines
    from intentstream.stream.synth.config import GeneratorConfig
    from intentstream.stream.report.sources import segments_from_clickstream

    lines = enumerate(generate_lines(GeneratorConfig(users=users, days=days, seed=seed)), 1)
    return tuple(segments_from_clickstream(lines, Settings.defaults()))


def trace() -> list[dict]:
    return [dict(s) for s in _trace()]


def synth(users: int = 80, seed: int = 1, days: int = 4) -> list[dict]:
    return list(synthetic_segments(users, seed=seed, days=days))


# --------------------------------------------------------------------------- features


@pytest.mark.parametrize("source", ["trace", "synthetic"])
def test_feature_vector_shape_and_ranges(source):
    segs = trace() if source == "trace" else synth()
    assert len(segs) > 100
    for seg in segs:
        x = segment_features(seg)
        assert list(x) == list(FEATURES)
        assert all(isinstance(v, float) and math.isfinite(v) for v in x.values())
        assert x["log_duration"] >= 0 and x["log_interactions"] >= math.log1p(1) - 1e-12
        assert 0.0 <= x["intent_strength"] <= 1.0
        assert x["urgency"] in (0.0, 0.5, 1.0)
        shares = [x[f"share_{g}"] for g in INTENT_GROUPS]
        assert all(0.0 <= s <= 1.0 for s in shares) and sum(shares) <= 1.0 + 1e-9
        assert x["log_amount"] >= 0
        for name, vocab in CATEGORIES.items():
            hot = [x[f"{name}={v}"] for v in (*vocab, "other")]
            assert sorted(hot) == [0.0] * len(vocab) + [1.0], name
            assert x[f"{name}=other"] == 0.0, (name, seg[name])  # the sessionizer stays in the vocabulary
    assert len(FEATURES) == len(NUMERIC_FEATURES) + len(CATEGORICAL_FEATURES)


def test_features_accept_an_intent_segment_object_and_bad_values():
    from intentstream.stream.sessions.segments import IntentSegment

    seg = IntentSegment.from_dict(trace()[0])
    assert segment_features(seg) == segment_features(seg.to_dict())
    x = segment_features({"duration_min": -3, "interactions": float("nan"), "amount": "12", "type_counts": {"x": -1}})
    assert x["log_duration"] == x["log_interactions"] == x["log_amount"] == 0.0
    assert x["kyc_status=other"] == 1.0


# --------------------------------------------------------------------------- determinism


ESTIMATORS = ["kmeans", "dbstream", "streamkmeans", "clustream"]


def _cfg(estimator: str = "kmeans", **kw) -> PersonaSettings:
    extra = {"clustream_max_micro_clusters": 20, "clustream_time_gap": 50} if estimator == "clustream" else {}
    return PersonaSettings.defaults(estimator=estimator, **{**extra, **kw})


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_same_input_same_model(estimator):
    segs = synth(users=50)
    a, b = PersonaModel(_cfg(estimator)), PersonaModel(_cfg(estimator))
    assert [a.learn_one(s) for s in segs] == [b.learn_one(s) for s in segs]
    assert a.checkpoint() == b.checkpoint()
    assert dict(a.users) == dict(b.users)


_HASH_SCRIPT = """
import hashlib, sys
from intentstream.stream.personas.model import PersonaModel
from intentstream.stream.synth.segments import synthetic_segments
m = PersonaModel()
for s in synthetic_segments(60, seed=3, days=3):
    m.learn_one(s)
print(hashlib.sha256(m.checkpoint()).hexdigest())
"""


def test_default_model_is_identical_across_processes_and_hash_seeds():
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", _HASH_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    m = PersonaModel()
    for s in synthetic_segments(60, seed=3, days=3):
        m.learn_one(s)
    digests.add(hashlib.sha256(m.checkpoint()).hexdigest())
    assert len(digests) == 1


def test_default_kmeans_uses_all_its_clusters_on_a_real_trace():
    model = PersonaModel()
    for s in trace():
        model.learn_one(s)
    assert len(model.clusters()) == model.settings.n_clusters  # no dead centers
    assert sum(st.segments for st in model.clusters()) == model.segments_seen == len(trace())
    assert sum(st.assigned for st in model.clusters()) == len(model.users)


# --------------------------------------------------------------------------- checkpoints


def plain(obj, depth=0):
    """An object graph as plain comparable values (pickle bytes of equal River models can
    differ in their memo layout, so checkpoints are compared by content)."""
    assert depth < 60
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, random.Random):
        return ("Random", obj.getstate())
    if isinstance(obj, dict):
        return (type(obj).__name__, {k: plain(v, depth + 1) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [plain(v, depth + 1) for v in obj])
    if isinstance(obj, (set, frozenset)):
        return (type(obj).__name__, sorted(map(repr, obj)))
    if callable(obj) and not hasattr(obj, "__dict__") or type(obj).__name__ == "partial":
        return ("callable", type(obj).__name__)
    fields = dict(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(obj, slot):
                fields[slot] = getattr(obj, slot)
    return (type(obj).__name__, {k: plain(v, depth + 1) for k, v in fields.items()})


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_checkpoint_restore_continues_exactly_like_an_uninterrupted_run(estimator):
    segs = trace()
    half = len(segs) // 2
    whole = PersonaModel(_cfg(estimator))
    whole_ids = [whole.learn_one(s) for s in segs]

    first = PersonaModel(_cfg(estimator))
    ids = [first.learn_one(s) for s in segs[:half]]
    blob = first.checkpoint(meta={"offsets": {"0": half}})
    del first
    resumed = PersonaModel.from_checkpoint(blob, _cfg(estimator))
    ids += [resumed.learn_one(s) for s in segs[half:]]

    assert ids == whole_ids  # no relabelling, no lost learning
    assert resumed.state_dict() == whole.state_dict()  # statistics and users' votes
    assert plain(resumed.pipeline) == plain(whole.pipeline)  # every number of the River model
    assert [resumed.predict_one(s) for s in segs] == [whole.predict_one(s) for s in segs]
    assert read_checkpoint_meta(blob) == {"offsets": {"0": half}}


def test_a_checkpoint_pickled_under_the_old_module_path_still_restores(monkeypatch):
    """Checkpoints written before the package layout (classes pickled as ``stream.personas``)
    restore after an upgrade: the model a deployment learned is not lost."""
    import types

    from intentstream.stream.personas import model as model_module

    model = PersonaModel(_cfg("kmeans"))
    segs = synth(users=10)
    for s in segs:
        model.learn_one(s)
    old = types.ModuleType("stream.personas")
    for name in ("FeatureScaler", "PersonaKMeans"):
        cls = getattr(model_module, name)
        monkeypatch.setattr(cls, "__module__", "stream.personas")
        setattr(old, name, cls)
    parent = types.ModuleType("stream")
    parent.personas = old
    monkeypatch.setitem(sys.modules, "stream", parent)
    monkeypatch.setitem(sys.modules, "stream.personas", old)
    blob = model.checkpoint()
    monkeypatch.undo()
    for name in ("stream", "stream.personas"):  # the old module path is gone, as after an upgrade
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert b"stream.personas" in blob
    restored = PersonaModel.from_checkpoint(blob, _cfg("kmeans"))
    assert [restored.predict_one(s) for s in segs] == [model.predict_one(s) for s in segs]


def test_restore_refuses_foreign_bytes_and_other_estimators():
    model = PersonaModel(_cfg("kmeans"))
    for s in synth(users=10):
        model.learn_one(s)
    blob = model.checkpoint()
    with pytest.raises(CheckpointError):
        PersonaModel.from_checkpoint(b"not a checkpoint", _cfg("kmeans"))
    with pytest.raises(CheckpointError):
        PersonaModel.from_checkpoint(blob, _cfg("kmeans", n_clusters=5))
    with pytest.raises(CheckpointError):
        PersonaModel.from_checkpoint(blob, _cfg("dbstream"))
    # knobs that do not shape the model may change across a restart
    again = PersonaModel.from_checkpoint(blob, _cfg("kmeans", checkpoint_every_s=5, report_min_users=2))
    assert again.segments_seen == model.segments_seen


def test_unknown_estimator_or_rule_fails_loudly():
    with pytest.raises(ValueError, match="estimator"):
        PersonaModel(_cfg("spectral"))
    with pytest.raises(ValueError, match="assignment"):
        PersonaModel(_cfg(assignment="vibes"))


# --------------------------------------------------------------------------- statistics


def test_unique_counter_is_exact_below_the_cap_and_close_above_it():
    uc = UniqueCounter(cap=1000)
    for i in range(1000):
        uc.add(f"user-{i % 700}")
    assert uc.exact and len(uc) == 700
    for i in range(50_000):
        uc.add(f"user-{i}")
    assert not uc.exact
    assert abs(len(uc) - 50_000) / 50_000 < 0.05
    again = UniqueCounter.from_dict(codec.loads(codec.dumps(uc.to_dict())))
    assert len(again) == len(uc) and again.to_dict() == uc.to_dict()
    for i in range(50_000):  # re-adding known users changes nothing
        again.add(f"user-{i}")
    assert len(again) == len(uc)


def test_cluster_stats_round_trip_and_bounded_timeline():
    st = ClusterStats(3)
    for i, seg in enumerate(synth(users=30)):
        seg["end_ms"] = 1_767_225_600_000 + i * 3_600_000
        st.add(seg, PersonaSettings.defaults(timeline_bucket_s=86_400, timeline_max_buckets=5))
    assert len(st.timeline) == 5 and max(st.timeline) == st.last_ms - st.last_ms % 86_400_000
    assert ClusterStats.from_dict(codec.loads(codec.dumps(st.to_dict()))).to_dict() == st.to_dict()
    assert sum(c for c in st.counts["urgency"].values()) == st.segments


def test_distinctive_rule_finds_the_rare_behaviour_majority_does_not():
    browse = {"user_id": "u", "duration_min": 9.0, "interactions": 25, "intent_strength": 0.1, "urgency": "low",
              "main_activity": "general_exploring", "type_counts": {"page_view": 25}}  # fmt: skip
    kyc = {"user_id": "u", "duration_min": 1.0, "interactions": 3, "intent_strength": 0.9, "urgency": "high",
           "main_activity": "kyc_focused", "kyc_status": "in_progress", "type_counts": {"kyc_start": 2, "kyc_submit": 1}}  # fmt: skip
    others = [dict(browse, user_id=f"o{i}") for i in range(30)]
    users = {}
    for rule in ("distinctive", "majority"):
        m = PersonaModel(_cfg(assignment=rule, n_clusters=2))
        for seg in [kyc, *others, browse, browse, browse, dict(kyc, user_id="k2")]:
            m.learn_one(seg)
        users[rule] = (m.assignment("u"), m.predict_one(kyc), m.predict_one(browse))
    assert users["distinctive"][0] == users["distinctive"][1] != users["distinctive"][2]
    assert users["majority"][0] == users["majority"][2]


def test_user_votes_are_windowed_so_users_can_move_on():
    m = PersonaModel(_cfg(assignment="majority", n_clusters=2, user_votes_window=4))
    a = {"user_id": "u", "duration_min": 30.0, "interactions": 80, "type_counts": {"page_view": 80}}
    b = {"user_id": "u", "duration_min": 0.1, "interactions": 2, "urgency": "high", "main_activity": "kyc_focused",
         "kyc_status": "in_progress", "type_counts": {"kyc_start": 2}}  # fmt: skip
    for seg in [a] * 10:
        m.learn_one(seg)
    first = m.assignment("u")
    for seg in [b] * 6:
        m.learn_one(seg)
    assert m.assignment("u") != first
    assert sum(st.assigned for st in m.clusters()) == 1


# --------------------------------------------------------------------------- labels


def _all_clusters() -> list[ClusterStats]:
    out = []
    for estimator in ("kmeans", "dbstream"):
        for k in (4, 12):
            for segs in (trace(), synth(users=120, seed=k)):
                m = PersonaModel(_cfg(estimator, n_clusters=k))
                for s in segs:
                    m.learn_one(s)
                out += m.clusters()
    return out


def _random_stats(rng: random.Random) -> ClusterStats:
    st = ClusterStats(0)
    stages = [*CATEGORIES["behaviour_stage"], "unknown_stage"]
    for _ in range(rng.randint(1, 12)):
        st.add({
            "behaviour_stage": rng.choice(stages), "urgency": rng.choice(["low", "medium", "high"]),
            "main_activity": rng.choice(CATEGORIES["main_activity"]),
            "kyc_status": rng.choice(CATEGORIES["kyc_status"]),
            "transaction_status": rng.choice(CATEGORIES["transaction_status"]),
        })  # fmt: skip
    return st


def test_labels_never_contradict_the_statuses_underneath():
    rng = random.Random(7)
    clusters = _all_clusters() + [_random_stats(rng) for _ in range(2000)]
    assert len(clusters) > 2000
    for st in clusters:
        label = cluster_label(st)
        tx, kyc = st.dominant("transaction_status")[0], st.dominant("kyc_status")[0]
        assert stage_agrees(label.stage, {"transaction_status": tx, "kyc_status": kyc}), (label, tx, kyc)
        if label.stage == "transacted":
            assert tx == "completed"
        if label.stage == "transacting":
            assert tx in ("in_progress", "failed")
        if label.stage == "verifying":
            assert kyc in ("in_progress", "rejected")
        assert label.urgency == st.dominant("urgency")[0] or st.dominant("urgency")[0] == "unknown"
        assert label.activity == st.dominant("main_activity")[0]
    assert set(STAGE_REQUIRES) <= set(CATEGORIES["behaviour_stage"])


def test_the_example_reports_contradiction_cannot_happen():
    # the example's cluster 0: "transacted" segments, transaction status mostly in progress
    st = ClusterStats(0)
    for stage, tx in [("transacted", "in_progress")] * 3 + [("transacted", "completed")]:
        st.add({"behaviour_stage": stage, "transaction_status": tx, "urgency": "medium", "main_activity": "coupon_oriented"})
    assert cluster_label(st).stage == "transacting"


def test_label_texts_zh_and_en():
    from intentstream.stream.personas.playbook import load_playbook

    vocab = load_playbook().vocab
    st = ClusterStats(0)
    st.add({"behaviour_stage": "transacted", "transaction_status": "completed", "urgency": "medium",
            "main_activity": "coupon_oriented"})  # fmt: skip
    label = cluster_label(st)
    assert label.text("zh", vocab) == "已完成交易·中紧迫·优惠券导向"
    assert label.text("en", vocab) == "transacted · medium urgency · coupon-oriented"
    assert label.title(7, "zh", vocab) == "聚类 7: 已完成交易·中紧迫"


def test_adjusted_rand_index():
    assert adjusted_rand_index([0, 0, 1, 1], ["a", "a", "b", "b"]) == 1.0
    assert abs(adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) - 0.24242424) < 1e-6  # sklearn's value
    truth = synthetic_truth(200, seed=1)
    rng = random.Random(0)
    shuffled = [rng.randrange(11) for _ in truth]
    assert abs(adjusted_rand_index(list(truth.values()), shuffled)) < 0.05


# --------------------------------------------------------------------------- the service


def test_service_checkpoints_by_count_and_by_time_and_resumes():
    cfg = _cfg(checkpoint_every_segments=50, checkpoint_every_s=10)
    store = MemoryPersonaStore()
    svc = PersonaService(cfg, store)
    segs = trace()
    done = []
    for i, seg in enumerate(segs[:120]):
        a = svc.on_segment(seg)
        assert a.cluster == svc.model.assignment(seg["user_id"])
        if svc.maybe_checkpoint(now_ms=0, meta={"offset": i}):
            done.append(i)
    assert done == [49, 99]  # every 50 segments
    assert svc.maybe_checkpoint(now_ms=9_999) is False
    assert svc.maybe_checkpoint(now_ms=10_000) is True  # 20 pending segments, 10 s later
    assert svc.maybe_checkpoint(now_ms=60_000) is False  # nothing new: no checkpoint
    assert store.assignments == dict(svc.model.users)
    labels = store.get_labels()
    assert set(labels) == {st.cluster_id for st in svc.model.clusters()}
    assert all(v["zh"] and v["en"] and v["stage"] for v in labels.values())

    resumed = PersonaService.start(Settings.defaults(personas=cfg), store)
    assert resumed.meta == {"offset": 119} and resumed.model.segments_seen == 120
    for seg in segs[120:]:
        resumed.on_segment(seg)
    whole = PersonaModel(cfg)
    for seg in segs:
        whole.learn_one(seg)
    assert resumed.model.state_dict() == whole.state_dict()
    assert plain(resumed.model.pipeline) == plain(whole.pipeline)


# --------------------------------------------------------------------------- the writer's pure parts


def test_merge_order_does_not_depend_on_fetch_timing():
    rng = random.Random(7)
    parts = {
        p: [SegmentRecord(p, o, ts, None) for o, ts in enumerate(sorted(rng.randrange(1000) for _ in range(40)))]
        for p in range(4)
    }
    parts[3] = [r._replace(timestamp=rng.randrange(1000)) for r in parts[3]]  # one producer's clock jumps around
    full = PartitionMerger(parts)
    for recs in parts.values():
        full.add(recs)
    expected = full.release(dict.fromkeys(parts, 10**9), grace_ms=0)
    assert len(expected) == 160
    for trial in range(20):
        merger, out, pos = PartitionMerger(parts), [], dict.fromkeys(parts, 0)
        while any(pos[p] < len(parts[p]) for p in parts):
            p = rng.choice([q for q in parts if pos[q] < len(parts[q])])
            n = rng.randint(1, 9)
            merger.add(parts[p][pos[p] : pos[p] + n])
            pos[p] += n
            # partitions fetched to their end are known to be so; others unknown
            horizons = {q: (10**9 if pos[q] >= len(parts[q]) else None) for q in parts}
            out += merger.release(horizons, grace_ms=0, limit=rng.randint(1, 20))
        out += merger.release(dict.fromkeys(parts, 10**9), grace_ms=0)
        assert out == expected, trial
    # and each partition keeps its offset order, even with one producer's clock unordered
    assert [r.offset for r in expected if r.partition == 3] == list(range(40))


def test_an_idle_partition_holds_records_back_for_the_grace_only():
    m = PartitionMerger([0, 1])
    m.add([SegmentRecord(0, 0, 5_000, None)])
    assert m.release({1: None}, grace_ms=2000) == []  # partition 1 not read to its end yet
    assert m.release({1: 6_000}, grace_ms=2000) == []  # read to its end, but too recently
    assert [r.offset for r in m.release({1: 7_001}, grace_ms=2000)] == [0]


def test_checkpoint_offsets_round_trip_through_the_meta():
    meta = codec.loads(codec.dumps(checkpoint_meta("segments", {2: 9, 0: 4}, "w1")))
    assert saved_offsets(meta, "segments") == {0: 4, 2: 9}
    assert saved_offsets(meta, "renamed") is None  # another topic's offsets: from the beginning
    assert saved_offsets({}, "segments") == {}


def test_malformed_segments_are_classified():
    good = codec.dumps(synth(users=1)[0])
    assert parse_segment(good)["user_id"]
    mistyped = codec.dumps({**codec.loads(good), "interactions": "many"})
    no_user = codec.dumps({**codec.loads(good), "user_id": ""})
    reasons = []
    for value in [b"not json", b"[1, 2]", b'{"user_id": "u-bad"}', None, mistyped, no_user, b""]:
        with pytest.raises(MalformedSegment) as info:
            parse_segment(value)
        reasons.append(info.value.reason)
    assert reasons == ["not_json", "not_object", "missing_field", "empty", "bad_field_type", "bad_field_type", "empty"]


def test_learning_records_skips_malformed_ones_and_advances_every_offset():
    segs = synth(users=20)[:30]
    records = [SegmentRecord(i % 3, i // 3, i, codec.dumps(s)) for i, s in enumerate(segs)]
    records.append(SegmentRecord(1, 10, 30, b"[1]"))  # skipped, and its offset still advances
    svc, offsets, counters = PersonaService(_cfg(), MemoryPersonaStore()), {}, Counter()
    learn_records(svc, records, offsets, counters)
    assert offsets == {0: 10, 1: 11, 2: 10}  # the last record taken of each partition, plus one
    assert counters == Counter({"learned": 30, "malformed": 1, "malformed.not_object": 1})
    whole = PersonaModel(_cfg())
    for s in segs:
        whole.learn_one(s)
    assert svc.model.state_dict() == whole.state_dict()
