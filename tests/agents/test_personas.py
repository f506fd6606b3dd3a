"""The personas single writer (agents/personas.py) against the real broker and Redis.

Its pure parts (merge order, record parsing, offsets) are tested in
``tests/stream/test_personas.py``; the lease and its fencing in the contract suite
``tests/stream/state/test_lease_contract.py``.

Segments: 342 closed segments of 150 synthetic users over 2 days (``intentstream.stream.synth.segments``),
serialised as the worker publishes them and produced to a 3-partition topic of the test's
own (key = user_id, Kafka's partitioner), plus a few malformed records. Every test
uses its own topic, Redis DB and key prefix. Writers run as asyncio tasks in-process, or
as ``intentstream personas`` subprocesses for the kill -9 test.

"Same model" is checked against a reference: the same records learned in one pass, in the
writer's documented order (:class:`PartitionMerger` over the whole topic), or an
uninterrupted writer on another key prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from intentstream.agents.personas import PersonaWriter
from intentstream.stream import codec
from intentstream.stream.engine.partitioning import partition_for
from intentstream.stream.personas.checkpoint import read_checkpoint_meta
from intentstream.stream.personas.merge import PartitionMerger, SegmentRecord
from intentstream.stream.personas.model import PersonaModel
from intentstream.stream.personas.records import MalformedSegment, parse_segment
from intentstream.stream.state.redis.keys import all_users_keys, checkpoint_key, labels_key, legacy_persona_keys, writer_lease_key

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3
TTL_S = 2.0
#: not JSON, not an object, a segment without its fields, a mistyped field, a tombstone
MALFORMED = [b"not json", b"[1, 2]", b'{"user_id": "u-bad"}', None]


@functools.cache
def segment_payloads() -> tuple[bytes, ...]:
    """Closed segments as the worker publishes them (``codec.dumps(IntentSegment.to_dict())``).

    From ``intentstream.stream.synth.segments`` (scripted events through the sessionizer's own segment
    accumulator and labeller) rather than generate + OfflineRunner, so these tests
    exercise the writer and do not depend on the sessionizer's internals."""
    from intentstream.stream.synth.segments import synthetic_segments

    return tuple(codec.dumps(s) for s in synthetic_segments(users=150, days=2, seed=5))


def mistyped(payload: bytes) -> bytes:
    return codec.dumps({**codec.loads(payload), "interactions": "many"})


def record_key(value: bytes | None) -> bytes:
    try:
        return codec.loads(value)["user_id"].encode()
    except Exception:
        return b"malformed"


def end_offsets(values: list[bytes | None]) -> dict[str, int]:
    """The checkpoint meta's offsets once every record of ``values`` is learned."""
    parts = [partition_for(record_key(v), PARTITIONS) for v in values]
    return {str(p): parts.count(p) for p in range(PARTITIONS)}


def produce(bootstrap: str, topic: str, values: list[bytes | None]) -> None:
    """Send in order, each to the partition a keyed send by user_id would pick."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for v in values:
            key = record_key(v)
            producer.send(topic, key=key, value=v, partition=partition_for(key, PARTITIONS))
        producer.flush()
    finally:
        producer.close()


def writer_env(topic: str, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {
        "INTENTSTREAM_TOPICS__SEGMENTS": topic,
        "INTENTSTREAM_REDIS__URL": redis_url,
        "INTENTSTREAM_REDIS__KEY_PREFIX": prefix,
        "INTENTSTREAM_PERSONA_WRITER__LEASE_TTL_S": str(TTL_S),
        "INTENTSTREAM_PERSONA_WRITER__LEASE_RENEW_S": "0.5",
        "INTENTSTREAM_PERSONA_WRITER__ACQUIRE_INTERVAL_S": "0.2",
        "INTENTSTREAM_PERSONA_WRITER__MERGE_GRACE_S": "1.0",
        "INTENTSTREAM_PERSONA_WRITER__STOP_TIMEOUT_S": "5",
        # small steps: checkpoints land at 100..106 and 200..212 segments, never at the end
        # of a 250-segment phase, so a crash always leaves learned-but-uncheckpointed ones
        "INTENTSTREAM_PERSONA_WRITER__MAX_BATCH": "7",
        "INTENTSTREAM_PERSONAS__CHECKPOINT_EVERY_SEGMENTS": "100",
        "INTENTSTREAM_PERSONAS__CHECKPOINT_EVERY_S": "3600",
    }
    env.update(extra)
    return env


async def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def wait_sync(cond, timeout: float, what: str) -> None:
    asyncio.run(wait_for(cond, timeout, what))


def checkpoint(client, prefix: str) -> bytes | None:
    return client.get(checkpoint_key(prefix))


def users_hash(client, prefix: str) -> dict[str, int]:
    return {k.decode(): int(v) for key in all_users_keys(prefix) for k, v in client.hgetall(key).items()}


def read_topic(settings, topic: str) -> list[SegmentRecord]:
    from kafka import KafkaConsumer, TopicPartition

    from intentstream.agents.kafka import kafka_python_options

    consumer = KafkaConsumer(**kafka_python_options(settings.kafka), group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[SegmentRecord] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for tp, recs in consumer.poll(timeout_ms=500).items():
                out += [SegmentRecord(tp.partition, r.offset, r.timestamp, r.value) for r in recs]
        return out
    finally:
        consumer.close()


def reference_model(settings, topic: str) -> PersonaModel:
    """The topic learned in one uninterrupted pass, in the writer's merge order."""
    merger = PartitionMerger(range(PARTITIONS))
    merger.add(read_topic(settings, topic))
    model = PersonaModel(settings.personas)
    for r in merger.release(dict.fromkeys(range(PARTITIONS), 2**62), grace_ms=0):
        with contextlib.suppress(MalformedSegment):
            model.learn_one(parse_segment(r.value))
    return model


def assert_same_model(data: bytes, ref: PersonaModel, settings) -> None:
    got = PersonaModel.from_checkpoint(data, settings.personas)
    assert got.segments_seen == ref.segments_seen
    assert got.state_dict() == ref.state_dict()  # statistics, users' votes and personas
    (scaler, estimator), (ref_scaler, ref_estimator) = got.pipeline.steps.values(), ref.pipeline.steps.values()
    assert estimator.centers == ref_estimator.centers and estimator.counts == ref_estimator.counts  # exact floats
    s, r = scaler.scaler, ref_scaler.scaler
    assert (s.counts, s.means, s.vars) == (r.counts, r.means, r.vars)


async def run_until_learned(writer: PersonaWriter, records: int, timeout: float = 20) -> None:
    """Run ``writer`` until it has taken ``records`` records, then stop it gracefully."""
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    try:
        taken = lambda: writer.counters["learned"] + writer.counters["malformed"]  # noqa: E731
        await wait_for(lambda: taken() >= records or task.done(), timeout, "the writer to learn")
    finally:
        stop.set()
        await task


# --------------------------------------------------------------------------- unit


def test_lease_timing_knobs_are_checked():
    from intentstream.stream.settings import load_settings

    with pytest.raises(ValueError, match="lease_renew_s"):
        PersonaWriter(load_settings(env={"INTENTSTREAM_PERSONA_WRITER__LEASE_RENEW_S": "20"}))


# --------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_segments_are_learned_once_in_merge_order_and_users_get_their_clusters(stack, make_topics, redis_db):
    (topic,) = make_topics({"segments": PARTITIONS})
    payloads = list(segment_payloads())
    bad = [*MALFORMED, mistyped(payloads[0])]
    values = payloads[:100] + bad[:3] + payloads[100:] + bad[3:]
    produce(stack.kafka_bootstrap, topic, values)
    settings = stack.settings(**writer_env(topic, redis_db.url, "p1"))
    writer = PersonaWriter(settings, owner="solo")
    asyncio.run(run_until_learned(writer, len(values)))

    c = writer.counters
    assert c["learned"] == len(payloads) and c["malformed"] == len(bad) and c["records"] == len(values)
    assert c["malformed.not_json"] == 1 and c["malformed.bad_field_type"] == 1 and c["malformed.empty"] == 1
    assert c["terms"] == 1 and c["lease_lost"] == 0 and c["checkpoints"] >= 4  # ~every 100, and the final one
    client = redis_db.client
    data = checkpoint(client, "p1")
    meta = read_checkpoint_meta(data)
    assert meta["offsets"] == end_offsets(values) and meta["topic"] == topic
    ref = reference_model(settings, topic)
    assert_same_model(data, ref, settings)
    users = {codec.loads(v)["user_id"] for v in payloads}
    published = users_hash(client, "p1")
    assert set(published) == users and published == dict(ref.users)
    assert client.hlen(labels_key("p1")) >= 2
    assert client.get(writer_lease_key("p1")) is None  # released on the graceful stop


@pytest.mark.integration
def test_an_upgrade_from_the_old_key_layout_keeps_the_model_and_resumes_where_it_was(stack, make_topics, redis_db):
    """A deployment whose personas were written before the ``{pers}`` keys: the next
    writer moves them (stream/state/redis/personas.py) and learns only what came after
    its checkpoint; the model ends equal to one uninterrupted pass."""
    (topic,) = make_topics({"segments": PARTITIONS})
    payloads = list(segment_payloads())
    head, tail = payloads[:200], payloads[200:]
    produce(stack.kafka_bootstrap, topic, head)
    settings = stack.settings(**writer_env(topic, redis_db.url, "p1"))
    asyncio.run(run_until_learned(PersonaWriter(settings, owner="old"), len(head)))
    client = redis_db.client
    # what the version before wrote: the same values under the old names
    old_ckpt, old_labels, old_users = legacy_persona_keys("p1")
    client.set(old_ckpt, checkpoint(client, "p1"))
    client.hset(old_labels, mapping=client.hgetall(labels_key("p1")))
    client.hset(old_users, mapping={u: str(c) for u, c in users_hash(client, "p1").items()})
    client.delete(checkpoint_key("p1"), labels_key("p1"), *all_users_keys("p1"))

    produce(stack.kafka_bootstrap, topic, tail)
    writer = PersonaWriter(settings, owner="new")
    asyncio.run(run_until_learned(writer, len(tail)))
    assert writer.counters["learned"] == len(tail)  # resumed at the migrated checkpoint's offsets
    assert not any(client.exists(k) for k in legacy_persona_keys("p1"))
    ref = reference_model(settings, topic)
    assert_same_model(checkpoint(client, "p1"), ref, settings)
    assert users_hash(client, "p1") == dict(ref.users)


@pytest.mark.integration
def test_two_writers_one_learns_the_standby_takes_over_after_a_crash_with_the_same_model(stack, make_topics, redis_db):
    (topic,) = make_topics({"segments": PARTITIONS})
    payloads = list(segment_payloads())
    head, tail = payloads[:250], payloads[250:]
    produce(stack.kafka_bootstrap, topic, head)
    settings = stack.settings(**writer_env(topic, redis_db.url, "p2"))
    client = redis_db.client

    async def scenario() -> tuple[PersonaWriter, PersonaWriter, int, float]:
        writers = [PersonaWriter(settings, owner="w0"), PersonaWriter(settings, owner="w1")]
        stops = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(w.run(s)) for w, s in zip(writers, stops)]
        await wait_for(lambda: any(w.counters["learned"] == len(head) for w in writers), 20, "one writer to learn the head")
        holder = writers[0] if writers[0].is_leader else writers[1]
        standby = writers[1] if holder is writers[0] else writers[0]
        await asyncio.sleep(0.5)  # the standby keeps trying the lease meanwhile
        assert not standby.is_leader and standby.counters["learned"] == 0 and standby.counters["terms"] == 0
        # crash: no final checkpoint, the lease stays until it expires
        htask = tasks[writers.index(holder)]
        htask.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await htask
        crashed = time.monotonic()
        seen = read_checkpoint_meta(checkpoint(client, "p2"))
        seen_segments = PersonaModel.from_checkpoint(checkpoint(client, "p2"), settings.personas).segments_seen
        assert 200 <= seen_segments < len(head) and sum(seen["offsets"].values()) == seen_segments
        await asyncio.to_thread(produce, stack.kafka_bootstrap, topic, tail)
        await wait_for(lambda: standby.is_leader, TTL_S + 5, "the standby to take over")
        takeover = time.monotonic() - crashed
        await wait_for(lambda: standby.counters["learned"] == len(payloads) - seen_segments, 20, "the standby to catch up")
        stops[writers.index(standby)].set()
        await tasks[writers.index(standby)]
        return holder, standby, seen_segments, takeover

    holder, standby, seen_segments, takeover = asyncio.run(scenario())
    assert takeover < TTL_S + 1.5
    # the standby re-learned exactly what the crashed holder had learned after its last checkpoint
    assert holder.counters["learned"] == len(head)
    assert standby.counters["learned"] == len(payloads) - seen_segments
    data = checkpoint(client, "p2")
    final = PersonaModel.from_checkpoint(data, settings.personas)
    assert final.segments_seen == len(payloads)

    # an uninterrupted writer over the same records, on another key prefix
    ref_settings = stack.settings(**writer_env(topic, redis_db.url, "p2ref"))
    asyncio.run(run_until_learned(PersonaWriter(ref_settings, owner="ref"), len(payloads)))
    ref_data = checkpoint(client, "p2ref")
    assert_same_model(data, PersonaModel.from_checkpoint(ref_data, settings.personas), settings)
    assert read_checkpoint_meta(data)["offsets"] == read_checkpoint_meta(ref_data)["offsets"]
    assert users_hash(client, "p2") == users_hash(client, "p2ref") == dict(final.users)


@pytest.mark.integration
def test_kill_9_mid_way_then_restart_learns_every_segment_once(stack, make_topics, redis_db, tmp_path):
    (topic,) = make_topics({"segments": PARTITIONS})
    payloads = list(segment_payloads())
    head, tail = payloads[:250] + MALFORMED[:2], payloads[250:] + MALFORMED[2:]
    produce(stack.kafka_bootstrap, topic, head)
    env = {**os.environ, **writer_env(topic, redis_db.url, "p3")}
    env["INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS"] = stack.kafka_bootstrap
    client = redis_db.client
    head_users = {codec.loads(v)["user_id"] for v in payloads[:250]}

    def start(name: str, **extra: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "intentstream.stream.cli", "personas", "--owner", name, "--loglevel", "info"],
                cwd=ROOT, env={**env, **extra}, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )

    def segments_seen() -> int:
        data = checkpoint(client, "p3")
        return PersonaModel.from_checkpoint(data, stack.settings().personas).segments_seen if data else 0

    first = start("first")
    try:
        wait_sync(lambda: segments_seen() >= 200 and len(users_hash(client, "p3")) == len(head_users), 30, "the first writer")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    at_crash = segments_seen()
    assert 200 <= at_crash < 250  # learned after the checkpoint: to be re-learned, once
    produce(stack.kafka_bootstrap, topic, tail)

    ends = end_offsets(head + tail)
    second = start("second", INTENTSTREAM_PERSONAS__CHECKPOINT_EVERY_S="1")
    try:
        wait_sync(
            lambda: (d := checkpoint(client, "p3")) is not None and read_checkpoint_meta(d)["offsets"] == ends,
            TTL_S + 30, "the second writer to reach the end",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    log = (tmp_path / "second.log").read_text()
    assert second.returncode == 0, log
    assert f": {len(payloads) - at_crash} segments learned, " in log, log
    data = checkpoint(client, "p3")
    settings = stack.settings(**writer_env(topic, redis_db.url, "p3"))
    assert PersonaModel.from_checkpoint(data, settings.personas).segments_seen == len(payloads)
    ref = reference_model(settings, topic)
    assert_same_model(data, ref, settings)
    assert users_hash(client, "p3") == dict(ref.users)
    assert client.get(writer_lease_key("p3")) is None


class FlakyRedis:
    """A redis.Redis whose every call fails with ConnectionError while ``down``."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.down = False

    def register_script(self, script):
        from redis.commands.core import Script

        return Script(self, script)

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.down and name != "get_encoder":
                import redis

                raise redis.exceptions.ConnectionError("redis down (test)")
            return attr(*args, **kwargs)

        return call


@pytest.mark.integration
def test_a_redis_outage_pauses_the_writer_and_skips_nothing(stack, make_topics, redis_db):
    (topic,) = make_topics({"segments": PARTITIONS})
    payloads = list(segment_payloads())
    produce(stack.kafka_bootstrap, topic, payloads)
    # a lease longer than the outage: the writer keeps it (losing it would be safe too)
    settings = stack.settings(**writer_env(topic, redis_db.url, "p4", INTENTSTREAM_PERSONA_WRITER__LEASE_TTL_S="6"))
    flaky = FlakyRedis(redis_db.client)
    writer = PersonaWriter(settings, owner="flaky", redis_client=flaky)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        await wait_for(lambda: writer.counters["learned"] >= 50, 20, "learning to start")
        flaky.down = True
        await wait_for(lambda: writer.counters["store_retries"] >= 3, 10, "retries")
        paused_at = writer.counters["learned"]
        await asyncio.sleep(0.5)
        assert writer.counters["learned"] == paused_at  # waits for Redis, does not learn ahead
        flaky.down = False
        await wait_for(lambda: writer.counters["learned"] == len(payloads), 20, "the rest")
        stop.set()
        await task

    asyncio.run(scenario())
    assert writer.counters["terms"] == 1 and writer.counters["lease_lost"] == 0
    data = checkpoint(redis_db.client, "p4")
    ref = reference_model(settings, topic)
    assert_same_model(data, ref, settings)
    assert users_hash(redis_db.client, "p4") == dict(ref.users)


@pytest.mark.integration
def test_the_worker_service_starts_the_writer_and_stops_it_gracefully(stack, make_topics, redis_db):
    """start_in_worker registers a mode.Service on the Faust app; Faust starts it with the app
    and stops it on shutdown (here: started and stopped by hand, without a Faust worker)."""
    from intentstream.agents.app import create_app
    from intentstream.agents.personas import start_in_worker

    (topic,) = make_topics({"segments": PARTITIONS})
    payloads = list(segment_payloads())[:60]
    produce(stack.kafka_bootstrap, topic, payloads)
    settings = stack.settings(**writer_env(topic, redis_db.url, "p5"))
    app, _topics = create_app(settings)
    before = list(app._extra_services)
    writer = start_in_worker(app, settings)
    (service_cls,) = [s for s in app._extra_services if s not in before]
    assert start_in_worker(app, stack.settings(INTENTSTREAM_PERSONA_WRITER__IN_WORKER="false")) is None

    async def scenario() -> None:
        service = service_cls()
        await service.start()
        await wait_for(lambda: writer.counters["learned"] == len(payloads), 20, "the writer in the service")
        await service.stop()

    asyncio.run(scenario())
    data = checkpoint(redis_db.client, "p5")
    assert PersonaModel.from_checkpoint(data, settings.personas).segments_seen == len(payloads)
    assert redis_db.client.get(writer_lease_key("p5")) is None and not writer.is_leader
