"""What only the Redis Cluster flavour has: the client chosen by the URL, and the journal
protocol of a step (stream/state/redis/journal.py) under a crash between two slot writes.
The contracts themselves run over the cluster in the ``*_contract.py`` suites."""

from __future__ import annotations

import pytest
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.settings import RedisSettings
from intentstream.stream.state import CommitBatch, OutboxEntry, PartitionMeta, StoreUnavailable
from intentstream.stream.state.memory import MemorySessionStore
from intentstream.stream.state.redis import journal, keys
from intentstream.stream.state.redis.client import make_client
from intentstream.stream.state.redis.sessions import RedisSessionStore
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


class Crash(RedisConnectionError):
    """kill -9 of the worker, as the store sees it: the step stops between two writes."""


def crash_after_users(monkeypatch: pytest.MonkeyPatch, written: int) -> None:
    """The next commit stops after W1 and ``written`` of its user states (W2 cut short)."""
    real = journal.queue_user_writes

    def partial(pipe, prefix, batch, ttl_ms):
        some = CommitBatch(batch.meta, dict(list(batch.users.items())[:written]))
        real(pipe, prefix, some, ttl_ms)
        pipe.execute()
        monkeypatch.setattr(journal, "queue_user_writes", real)  # once
        raise Crash("killed between W2 and W3")

    monkeypatch.setattr(journal, "queue_user_writes", partial)


def test_the_cluster_url_gives_a_cluster_client(redis_cluster):
    client = make_client(RedisSettings.defaults(url=redis_cluster["url"], socket_timeout_s=2.0))
    assert isinstance(client, RedisCluster) and len(client.get_primaries()) == 3
    client.close()


def test_a_step_cut_between_slot_writes_reads_as_committed_and_is_rolled_forward(redis_cluster_client, monkeypatch):
    store = RedisSessionStore(redis_cluster_client, "t", user_ttl_s=3600)
    store.commit(0, CommitBatch(PartitionMeta(hi=1), {"a": b"a1", "b": b"b1"}, {"a": 10, "b": 20}))
    users = {u: f"{u}2".encode() for u in "abcdef"}
    step = CommitBatch(PartitionMeta(hi=9, ob=1), users, {"a": None, "c": 5}, [OutboxEntry(0, "s:0", "segments", b"a", b"{}")])
    crash_after_users(monkeypatch, written=2)
    with pytest.raises(StoreUnavailable):
        store.commit(0, step)
    raw = redis_cluster_client.mget_nonatomic([keys.user_state("t", u) for u in "abc"])
    assert raw == [b"a2", b"b2", None]  # W2 cut short: some users written, W3 not
    restarted = RedisSessionStore(redis_cluster_client, "t", user_ttl_s=3600)  # a new process
    assert restarted.load_partition(0) == PartitionMeta(hi=9, ob=1)  # the journal's
    assert restarted.load_users(0, list("abcdefg")) == users
    assert restarted.due_users(0, 100) == ["c", "b"]
    assert [e.id for e in restarted.outbox(0)] == ["s:0"]
    restarted.commit(0, CommitBatch(PartitionMeta(hi=10, ob=1), {"g": b"g3"}, {"g": 7}))  # rolls forward first
    assert not redis_cluster_client.exists(keys.partition_journal("t", 0))
    assert redis_cluster_client.mget_nonatomic([keys.user_state("t", u) for u in "cdefg"]) == [b"c2", b"d2", b"e2", b"f2", b"g3"]
    assert redis_cluster_client.zrange(keys.partition_due("t", 0), 0, -1) == [b"c", b"g", b"b"]
    assert store.load_partition(0) == PartitionMeta(hi=10, ob=1)


def test_the_engine_gives_the_same_outputs_when_killed_between_slot_writes(redis_cluster_client, monkeypatch):
    """Every third step is cut between W2 and W3; a restarted engine (new store, empty
    cache) then gets the same batch again (Kafka redelivers from the committed offset).
    The outbox ids, in order, equal an uninterrupted run's."""
    lines = list(generate_lines(GeneratorConfig(users=30, days=2, seed=7)))
    reference = PartitionEngine(MemorySessionStore(), 0)
    engine = PartitionEngine(RedisSessionStore(redis_cluster_client, "t", user_ttl_s=3600), 0)
    published: list[str] = []
    want: list[str] = []
    crashes = 0
    for n, start in enumerate(range(0, len(lines), 53)):
        batch = [(start + i, raw) for i, raw in enumerate(lines[start : start + 53])]
        want += [e.id for e in reference.process(batch).outbox]
        if n % 3 == 1:
            crash_after_users(monkeypatch, written=n % 5)
            with pytest.raises(StoreUnavailable):
                engine.process(batch)
            crashes += 1
            engine = PartitionEngine(RedisSessionStore(redis_cluster_client, "t", user_ttl_s=3600), 0)
            engine.process(batch)  # every event redelivered: all skipped by offset
        else:
            engine.process(batch)
        pending = engine.pending_outbox()  # publish, then ack (as the worker does)
        published += [e.id for e in pending]
        engine.ack([e.id for e in pending])
    want += [e.id for e in reference.flush().outbox]
    engine.flush()
    published += [e.id for e in engine.pending_outbox()]
    assert crashes >= 3 and len(want) > 20
    assert published == want  # none lost, none twice, same order


def test_wait_replicas_holds_a_step_until_replicas_have_it(redis_cluster_client):
    """Each primary has one replica: waiting for one succeeds, for two fails the step
    (retried by the caller), which still reads as committed (W1 reached the primary)."""
    users = {f"u{i}": b"s" for i in range(50)}  # on every node
    ok = RedisSessionStore(redis_cluster_client, "t", user_ttl_s=3600, wait_replicas=1, wait_timeout_ms=2000)
    ok.commit(0, CommitBatch(PartitionMeta(hi=1), users, {"u1": 5}))
    assert ok.load_users(0, users) == users and not redis_cluster_client.exists(keys.partition_journal("t", 0))
    strict = RedisSessionStore(redis_cluster_client, "t", user_ttl_s=3600, wait_replicas=2, wait_timeout_ms=50)
    with pytest.raises(StoreUnavailable, match="WAIT: 1 of 2 replicas"):
        strict.commit(0, CommitBatch(PartitionMeta(hi=2), {"u1": b"t"}))
    assert ok.load_partition(0) == PartitionMeta(hi=2)
