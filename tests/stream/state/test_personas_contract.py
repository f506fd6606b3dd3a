"""The PersonaStore contract, run over every backend (``backend`` in conftest.py: memory,
and Redis as an integration test)."""

from __future__ import annotations

import pytest

from intentstream.stream.personas.model import PersonaModel
from intentstream.stream.personas.service import PersonaService
from intentstream.stream.settings import PersonaSettings
from intentstream.stream.state.memory.personas import MemoryPersonaStore
from intentstream.stream.state.personas import PersonaStore
from intentstream.stream.synth.segments import synthetic_segments

LABELS = {
    0: {"stage": "transacted", "urgency": "medium", "activity": "coupon_oriented", "zh": "已完成交易", "en": "transacted"},
    3: {"stage": "exploring", "urgency": "low", "activity": "general_exploring", "zh": "探索", "en": "exploring"},
}


@pytest.fixture
def store(backend) -> PersonaStore:
    """A fresh, empty persona store of the backend (Redis: a key prefix of its own)."""
    if backend.name == "memory":
        return MemoryPersonaStore()
    from intentstream.stream.state.redis.personas import RedisPersonaStore

    return RedisPersonaStore(backend.client, backend.prefix(), batch=7)  # small: writes span batches


def test_is_a_persona_store(store):
    assert isinstance(store, PersonaStore)


def test_empty_store(store):
    assert store.load_checkpoint() is None
    assert store.get_assignment("u1") is None
    assert store.get_assignments(["u1", "u2"]) == [None, None] and store.get_assignments([]) == []
    assert store.get_labels() == {}


def test_checkpoint_and_labels_are_replaced_together(store):
    blob = b"intentstream-personas/1\n\x00\xff" + bytes(range(256))  # any bytes, binary included
    store.save_checkpoint(blob, LABELS)
    assert store.load_checkpoint() == blob
    assert store.get_labels() == LABELS
    store.save_checkpoint(b"second", {7: LABELS[3]})
    assert store.load_checkpoint() == b"second"
    assert store.get_labels() == {7: LABELS[3]}  # no label of the previous checkpoint survives
    store.save_checkpoint(b"third", {})
    assert store.get_labels() == {}


def test_assignments_are_updated_user_by_user(store):
    first = {f"u{i}": i % 4 for i in range(20)}  # more than one batch
    store.set_assignments(first)
    store.set_assignments({"u3": 9, "new": 0})
    store.set_assignments({})
    assert store.get_assignment("u3") == 9 and store.get_assignment("u4") == 0 and store.get_assignment("new") == 0
    expected = {**first, "u3": 9, "new": 0}
    users = sorted(expected)
    assert store.get_assignments([*users, "nobody"]) == [expected[u] for u in users] + [None]
    assert store.load_checkpoint() is None  # assignments do not touch the checkpoint


def test_delete_all_forgets_everything(store):
    store.save_checkpoint(b"ckpt", LABELS)
    store.set_assignments({"u1": 1})
    store.delete_all()
    assert store.load_checkpoint() is None and store.get_assignment("u1") is None and store.get_labels() == {}


def test_the_service_resumes_from_the_store_exactly(store):
    cfg = PersonaSettings.defaults(checkpoint_every_segments=40)
    svc = PersonaService.start(cfg, store)
    segs = list(synthetic_segments(users=40, seed=4, days=2))[:100]
    for seg in segs:
        svc.on_segment(seg)
        svc.maybe_checkpoint(now_ms=0)
    svc.maybe_checkpoint(now_ms=0, force=True, meta={"p0": 100})
    users = sorted(svc.model.users)
    assert store.get_assignments(users) == [svc.model.users[u] for u in users]
    assert store.get_labels() == svc.labels()
    again = PersonaService.start(cfg, store)
    assert again.meta == {"p0": 100}
    assert again.model.state_dict(again.meta) == svc.model.state_dict(svc.meta)
    more = list(synthetic_segments(users=40, seed=5, days=2))[:50]
    whole = PersonaModel(cfg)
    assert [whole.learn_one(s) for s in segs + more][len(segs) :] == [again.model.learn_one(s) for s in more]
    assert again.model.state_dict() == whole.state_dict()  # the restored model continues exactly
