"""The partition engine: exactly-once in effect across redeliveries and crashes."""

from __future__ import annotations

import copy

import pytest

from intentstream.stream import codec
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig
from intentstream.stream.state import CommitBatch
from intentstream.stream.state.memory import MemorySessionStore

T0 = 1767607200000
MIN = 60_000


def e(eid, minute, typ="page_view", user="u1", **extra):
    return codec.dumps({"event_id": eid, "user_id": user, "ts": T0 + round(minute * MIN), "type": typ, **extra})


def batches(lines, size, first=0):
    return [[(first + s + i, raw) for i, raw in enumerate(lines[s : s + size])] for s in range(0, len(lines), size)]


class Crash(Exception):
    pass


class CrashingStore(MemorySessionStore):
    """Dies (like kill -9) in the commit of step number ``crash_at``, before or after
    writing; ``partial`` writes the users only (a Redis Cluster write cut short)."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0
        self.crash_at: int | None = None
        self.after = False
        self.partial = False

    def commit(self, partition: int, batch: CommitBatch) -> None:
        n = self.commits
        self.commits += 1
        if n == self.crash_at:
            if self.partial:  # the Cluster write order: outbox, users | dues, meta
                super().commit(partition, CommitBatch(self.load_partition(partition), batch.users, {}, batch.outbox))
            elif self.after:
                super().commit(partition, batch)
            raise Crash(f"killed in commit {n}")
        super().commit(partition, batch)


def snapshot(store: MemorySessionStore):
    return copy.deepcopy((store._meta, store._users, {p: dict(i._due) for p, i in store._due.items()}, store._outbox))


def published(engine: PartitionEngine) -> list[bytes]:
    """What the agent does after each step: publish the outbox, then ack it."""
    entries = engine.pending_outbox()
    engine.ack([x.id for x in entries])
    return [x.value for x in entries if x.topic == "segments"]


LINES = list(generate_lines(GeneratorConfig(users=40, days=2, seed=9)))


def clean_run(lines=LINES, size=50):
    eng = PartitionEngine(MemorySessionStore(), 0)
    out = []
    for b in batches(lines, size):
        eng.process(b)
        out += published(eng)
    eng.flush()
    return out + published(eng)


def test_a_redelivered_batch_changes_nothing():
    store = MemorySessionStore()
    eng = PartitionEngine(store, 0)
    bs = batches(LINES, 64)
    for b in bs[:5]:
        eng.process(b)
    before = snapshot(store)
    r = eng.process(bs[4])  # Kafka delivers the last batch again
    assert r.counters["redelivered"] == len(bs[4]) and r.segments == [] and r.counters["events"] == 0
    r = PartitionEngine(store, 0).process(bs[2] + bs[3] + bs[4])  # or a new owner rewinds further
    assert r.counters["redelivered"] == len(bs[2] + bs[3] + bs[4]) and r.segments == []
    assert snapshot(store) == before
    half = bs[5][: len(bs[5]) // 2]
    eng.process(half)
    r = eng.process(bs[5])  # a batch redelivered in part
    assert r.counters["redelivered"] == len(half) and r.counters["events"] == len(bs[5]) - len(half)


@pytest.mark.parametrize("crash_at", [0, 3, 17, 40])
@pytest.mark.parametrize("after", [False, True])
def test_kill_in_the_commit_then_restart_gives_the_clean_output(crash_at, after):
    """A crash before the commit loses the step; a crash after it (before the outbox was
    published) leaves the outbox. Either way the restarted worker, which re-reads input
    from the last consumer commit (here: the crashed step), publishes exactly the clean
    run's segments, once each."""
    store = CrashingStore()
    store.crash_at, store.after = crash_at, after
    bs = batches(LINES, 50)
    eng = PartitionEngine(store, 0)
    out: list[bytes] = []
    i = 0
    while i < len(bs):
        try:
            eng.process(bs[i])
        except Crash:
            eng = PartitionEngine(store, 0)  # the new owner of the partition
            out += published(eng)  # first publishes what a committed step left in the outbox
            continue  # Kafka redelivers the step that was in flight
        out += published(eng)
        i += 1
    eng.flush()
    out += published(eng)
    assert out == clean_run()


def test_commit_then_crash_before_the_outbox_ack_keeps_the_outbox():
    store = MemorySessionStore()
    eng = PartitionEngine(store, 0)
    lines = [e("a", 0, user="x"), e("b", 1, user="x"), e("c", 60, user="y"), e("d", 60, user="z")]  # y and z: the watermark
    r = eng.process(batches(lines, 10)[0])
    assert [s.user_id for s in r.segments] == ["x"]
    # kill -9 here: committed, not published
    again = PartitionEngine(store, 0)
    pending = again.pending_outbox()
    assert [p.id for p in pending] == [r.segments[0].segment_id]
    assert codec.loads(pending[0].value) == r.segments[0].to_dict()
    assert again.process(batches(lines, 10)[0]).segments == []  # the redelivered input adds nothing
    again.ack([p.id for p in pending], {("segments", 3): 11})
    assert again.pending_outbox() == [] and store.output_offsets(0) == {("segments", 3): 11}


def test_a_partial_write_is_redone_per_user():
    """Outbox and users written, due index and meta not (a Redis Cluster write cut short):
    the redelivered events are skipped per user and nothing is lost or doubled."""
    store = CrashingStore()
    store.crash_at, store.partial = 1, True
    bs = batches(LINES, 80)
    eng = PartitionEngine(store, 0)
    out = []
    for i, b in enumerate(bs):
        try:
            eng.process(b)
        except Crash:
            eng = PartitionEngine(store, 0)
            r = eng.process(b)
            assert r.counters["redelivered"] > 0
        out += published(eng)
    eng.flush()
    out += published(eng)
    assert out == clean_run(size=80)


def test_an_idle_users_session_is_closed_by_other_users_events():
    eng = PartitionEngine(MemorySessionStore(), 0)
    eng.process([(0, e("a", 0, user="gone")), (1, e("b", 1, user="gone"))])
    r = eng.process([(2, e("x", 20, user="busy")), (3, e("x2", 20, user="busy2"))])
    assert r.segments == []
    # two users are needed to move the watermark ([events] watermark_quorum = 2)
    r = eng.process([(4, e("y", 36.1, user="busy"))])
    assert r.segments == []
    r = eng.process([(5, e("y2", 36.1, user="busy2"))])  # watermark 31.1 min > 1 + 30
    assert [(s.user_id, s.closed_by, s.interactions) for s in r.segments] == [("gone", "inactivity", 2)]
    assert r.watermark == T0 + round(31.1 * MIN)


def test_advance_to_closes_sessions_of_an_idle_partition():
    eng = PartitionEngine(MemorySessionStore(), 0)
    eng.process([(0, e("a", 0)), (1, e("b", 5))])
    assert eng.advance_to(T0 + 35 * MIN).segments == []
    r = eng.advance_to(T0 + 35 * MIN + 1)
    assert [s.closed_by for s in r.segments] == ["inactivity"] and r.offset == 1
    assert eng.advance_to(T0).watermark == T0 + 35 * MIN + 1  # the watermark never goes back


def test_flush_closes_everything():
    eng = PartitionEngine(MemorySessionStore(), 0)
    eng.process([(i, e(f"e{i}", i, user=f"u{i % 3}")) for i in range(9)])
    r = eng.flush()
    assert sorted(s.user_id for s in r.segments) == ["u0", "u1", "u2"]
    assert {s.closed_by for s in r.segments} == {"end_of_input"}
    assert eng.flush().segments == []


@pytest.mark.parametrize("size", [1, 7, 333])
def test_results_do_not_depend_on_batch_cuts(size):
    def run(n):
        eng = PartitionEngine(MemorySessionStore(), 0)
        segs = [s for b in batches(LINES, n) for s in eng.process(b).segments] + eng.flush().segments
        return sorted(codec.dumps(s.to_dict()) for s in segs)

    assert run(size) == run(10_000)


def test_rejections_are_counted_and_dead_lettered():
    eng = PartitionEngine(MemorySessionStore(), 4)
    r = eng.process([(0, b"{nope"), (1, e("a", 0)), (2, b'{"event_id":"x","user_id":"u","ts":"soon","type":"t"}'), (3, b"\xff")])
    assert r.invalid == {"not_json": 2, "bad_ts": 1} and r.counters["invalid"] == 3 and r.counters["events"] == 1
    assert [(x.offset, x.reason, x.raw) for x in r.rejections] == [(0, "not_json", b"{nope"), (2, "bad_ts", r.rejections[1].raw), (3, "not_json", b"\xff")]
    dlq = [x for x in eng.pending_outbox() if x.topic == "clickstream.dlq"]
    assert [x.id for x in dlq] == ["dlq:4:0", "dlq:4:2", "dlq:4:3"]
    rec = codec.loads(dlq[2].value)
    assert (rec["reason"], rec["raw_encoding"], rec["source"]) == ("not_json", "base64", "clickstream:4:3")


def test_counters():
    eng = PartitionEngine(MemorySessionStore(), 0)
    lines = [e("a", 0), e("a", 0), e("b", 10), e("c", 1), e("d", 50, user="v"), e("f", 50, user="w")]
    r = eng.process(batches(lines, 10)[0])
    assert (r.counters["events"], r.counters["duplicates"], r.counters["late"], r.counters["segments"]) == (6, 1, 1, 1)
    assert r.offset == 5 and eng.meta.hi == 5
