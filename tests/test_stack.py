"""The local stack really works: Kafka and Redis answer, topics are created explicitly,
``scripts/stack`` is idempotent, and Redis keeps its data over a restart (AOF)."""

from __future__ import annotations

import time

import pytest

from intentstream.agents.admin import CREATED, EXISTS, ensure_topics, product_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_kafka_topic_produce_consume(stack, kafka_admin, unique_name):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    settings = stack.settings()
    topic = unique_name("roundtrip")
    try:
        assert ensure_topics(settings, {topic: 3}, admin=kafka_admin) == {topic: CREATED}
        assert ensure_topics(settings, [(topic, 3)], admin=kafka_admin) == {topic: EXISTS}
        (desc,) = kafka_admin.describe_topics([topic])
        assert len(desc["partitions"]) == 3

        producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=5)
        try:
            sent = {(p, f"m{p}-{i}".encode()) for p in range(3) for i in range(5)}
            for p, value in sorted(sent):
                producer.send(topic, value=value, key=f"user-{p}".encode(), partition=p)
            producer.flush(timeout=20)
        finally:
            producer.close(timeout=5)

        consumer = KafkaConsumer(
            bootstrap_servers=stack.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            consumer_timeout_ms=500,
        )
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(3)])
            got: set[tuple[int, bytes]] = set()
            deadline = time.monotonic() + 30
            while len(got) < len(sent) and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    got.update((r.partition, r.value) for r in records)
        finally:
            consumer.close()
        assert got == sent
    finally:
        kafka_admin.delete_topics([topic], raise_errors=False)


def test_make_topics_fixture_gives_unique_topics(make_topics, kafka_admin):
    a, b = make_topics("in", {"out": 2})
    assert a != b and a.startswith("t.in.") and b.startswith("t.out.")
    parts = {d["name"]: len(d["partitions"]) for d in kafka_admin.describe_topics([a, b])}
    assert parts == {a: 1, b: 2}
    (c,) = make_topics("in")
    assert c != a


def test_topics_are_never_auto_created(stack, kafka_admin, unique_name):
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    topic = unique_name("not-created")
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, max_block_ms=1500)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(topic, b"x").get(timeout=5)
    finally:
        producer.close(timeout=5)
    assert topic not in kafka_admin.list_topics()


def test_stack_topics_creates_the_product_topics(stack):
    out = stack.run("topics").stdout
    for name, partitions in product_topics(stack.settings()).items():
        assert name in out
    # and a second run tolerates them existing
    again = stack.run("topics").stdout
    assert "exists" in again and "created" not in again


def test_redis_answers(redis_client, redis_db):
    assert redis_client.ping()
    redis_client.set(b"greeting", b"hello", ex=60)
    assert redis_client.get(b"greeting") == b"hello"
    assert redis_db.number >= 1 and redis_db.url.endswith(f"/{redis_db.number}")


def test_up_again_is_a_fast_noop(stack):
    started = time.monotonic()
    out = stack.run("up").stdout
    elapsed = time.monotonic() - started
    assert "already running" in out and "started pid" not in out
    assert "INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS=" + stack.kafka_bootstrap in out
    assert elapsed < 5, f"a second `up` took {elapsed:.1f}s"


def test_status_exit_zero(stack):
    proc = stack.run("status", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"127.0.0.1:{stack.kafka_port}" in proc.stdout


def test_redis_restart_keeps_data(stack, redis_db):
    import redis

    redis_db.client.set(b"survives", b"restart")
    redis_db.client.hset(b"h", mapping={b"a": b"1"})
    stack.restart_redis()
    fresh = redis.Redis.from_url(redis_db.url)
    try:
        assert fresh.get(b"survives") == b"restart"
        assert fresh.hgetall(b"h") == {b"a": b"1"}
    finally:
        fresh.close()
    with stack.redis_stopped():
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(redis_db.url, socket_connect_timeout=1).ping()
    fresh = redis.Redis.from_url(redis_db.url)
    try:
        assert fresh.get(b"survives") == b"restart"
    finally:
        fresh.close()
