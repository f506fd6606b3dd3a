"""The SessionStore contract, run over every backend (``backend`` in conftest.py: memory,
and Redis as an integration test)."""

from __future__ import annotations

import pytest

from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig
from intentstream.stream.state import CommitBatch, LedgerRequest, LedgerStore, Limits, OutboxEntry, PartitionMeta, SessionStore
from intentstream.stream.state.memory import MemorySessionStore


@pytest.fixture
def store(backend) -> SessionStore:
    return backend.sessions()


def entry(seq: int, id_: str, value: bytes = b"{}", key: bytes | None = b"u1", topic: str = "segments") -> OutboxEntry:
    return OutboxEntry(seq, id_, topic, key, value)


def test_is_a_session_store(store):
    assert isinstance(store, SessionStore)


def test_the_ledger_beside_it_keeps_what_was_recorded(store):
    ledger = store.ledger()
    assert isinstance(ledger, LedgerStore)
    req = LedgerRequest("a1", "alice", "churn_risk", 1767607200000, (("email", 1767607200000),), "email", payload=b"p")
    first = ledger.apply(req, Limits.from_settings())
    assert (first.status, first.channel, first.duplicate) == ("sent", "email", False)
    again = store.ledger().apply(req, Limits.from_settings())  # asked again: the same ledger state
    assert again.duplicate and (again.channel, again.payload) == ("email", b"p")


def test_empty_store(store):
    assert store.load_partition(0) == PartitionMeta()
    assert store.load_users(0, ["a", "b"]) == {}
    assert store.load_users(0, []) == {}
    assert store.due_users(0, 1 << 62) == []
    assert store.outbox(0) == []
    assert store.output_offsets(0) == {}


def test_commit_then_read_back(store):
    meta = PartitionMeta(hi=41, wm=1767607200000, ob=2)
    users = {"alice": b'[1,"state"]', "bob": b"\x00\xffbinary"}
    store.commit(2, CommitBatch(meta, users, {"alice": 1767607300000, "bob": None}, [entry(0, "s1:0"), entry(1, "s2:0")]))
    assert store.load_partition(2) == meta
    assert store.load_users(2, ["alice", "bob", "carol"]) == users
    assert store.due_users(2, 1767607300000) == ["alice"]
    assert store.due_users(2, 1767607299999) == []
    assert [e.id for e in store.outbox(2)] == ["s1:0", "s2:0"]


def test_later_commit_overwrites_users_and_meta(store):
    store.commit(0, CommitBatch(PartitionMeta(hi=1), {"a": b"v1"}))
    store.commit(0, CommitBatch(PartitionMeta(hi=5, wm=9), {"a": b"v2", "b": b"w"}))
    assert store.load_partition(0) == PartitionMeta(hi=5, wm=9)
    assert store.load_users(0, ["a", "b"]) == {"a": b"v2", "b": b"w"}


def test_due_index_order_update_and_removal(store):
    store.commit(1, CommitBatch(PartitionMeta(), dues={"c": 30, "b": 20, "a": 20, "d": 40}))
    assert store.due_users(1, 30) == ["a", "b", "c"]  # by (due, user)
    store.commit(1, CommitBatch(PartitionMeta(), dues={"a": None, "d": 5, "b": 25}))
    assert store.due_users(1, 30) == ["d", "b", "c"]
    assert store.due_users(1, 4) == []
    store.commit(1, CommitBatch(PartitionMeta(), dues={"zz": None}))  # removing an absent user is fine
    assert store.due_users(1, 100) == ["d", "b", "c"]


def test_partitions_are_separate(store):
    store.commit(0, CommitBatch(PartitionMeta(hi=3), {"a": b"x"}, {"a": 10}, [entry(0, "s:0")]))
    store.commit(1, CommitBatch(PartitionMeta(hi=7), {"b": b"y"}, {"b": 10}, [entry(0, "t:0")]))
    assert store.load_partition(0).hi == 3 and store.load_partition(1).hi == 7
    assert store.due_users(0, 100) == ["a"] and store.due_users(1, 100) == ["b"]
    assert [e.id for e in store.outbox(0)] == ["s:0"] and [e.id for e in store.outbox(1)] == ["t:0"]


def test_outbox_entries_round_trip_exactly(store):
    entries = [
        entry(0, "dlq:0:17", b"\xff\x00not utf-8\n\nlines", key=None, topic="clickstream.dlq"),
        entry(1, "abc:0", b'{"user_id":"\xc3\xa9"}', key="é".encode()),
    ]
    store.commit(0, CommitBatch(PartitionMeta(ob=2), outbox=entries))
    assert store.outbox(0) == entries


def test_outbox_is_ordered_by_seq_and_idempotent_by_id(store):
    store.commit(0, CommitBatch(PartitionMeta(ob=3), outbox=[entry(2, "c"), entry(0, "a"), entry(1, "b")]))
    store.commit(0, CommitBatch(PartitionMeta(ob=3), outbox=[entry(1, "b")]))  # the same id again
    assert [(e.seq, e.id) for e in store.outbox(0)] == [(0, "a"), (1, "b"), (2, "c")]


def test_ack_outbox_drops_entries_and_records_output_offsets(store):
    store.commit(0, CommitBatch(PartitionMeta(ob=3), outbox=[entry(0, "a"), entry(1, "b"), entry(2, "c")]))
    store.ack_outbox(0, ["a", "c", "unknown"], {("segments", 4): 120, ("clickstream.dlq", 0): 7})
    assert [e.id for e in store.outbox(0)] == ["b"]
    store.ack_outbox(0, ["b"], {("segments", 4): 121})
    assert store.outbox(0) == []
    assert store.output_offsets(0) == {("segments", 4): 121, ("clickstream.dlq", 0): 7}
    store.ack_outbox(0, [])  # nothing to do is fine


def test_many_users_in_one_commit(store):
    users = {f"u{i:05d}": f"state {i}".encode() for i in range(2000)}
    store.commit(3, CommitBatch(PartitionMeta(hi=1999), users, {u: i for i, u in enumerate(users)}))
    assert store.load_users(3, users) == users
    assert store.due_users(3, 9) == [f"u{i:05d}" for i in range(10)]


def test_the_engine_gives_the_same_segments_on_every_store(store):
    lines = list(generate_lines(GeneratorConfig(users=30, days=2, seed=5)))
    reference = PartitionEngine(MemorySessionStore(), 0)
    engine = PartitionEngine(store, 0)
    got, want = [], []
    for start in range(0, len(lines), 97):
        batch = [(start + i, raw) for i, raw in enumerate(lines[start : start + 97])]
        got += [s.to_dict() for s in engine.process(batch).segments]
        want += [s.to_dict() for s in reference.process(batch).segments]
    got += [s.to_dict() for s in engine.flush().segments]
    want += [s.to_dict() for s in reference.flush().segments]
    assert got == want and len(got) > 20
    assert [e.id for e in engine.pending_outbox()] == [e.id for e in reference.pending_outbox()]
    # a fresh engine (empty cache) on the same store continues from the stored state
    again = PartitionEngine(store, 0)
    assert again.process([(len(lines) - 1, lines[-1])]).counters["redelivered"] == 1
