"""The worker end to end on a real Kafka broker and a real redis-server.

A generated trace is replayed into Kafka with ``intentstream replay --to-kafka``; a real
``intentstream worker`` process consumes it; its ``segments`` and ``actions.*`` topics
are read back with kafka-python and compared with the offline run of the same trace
(``intentstream.stream.engine.offline.OfflineRunner``): same segment ids, same decisions byte for byte, none
lost, none twice — also across SIGKILL of the worker, a Redis restart and a Kafka
restart in the middle of the run.
"""

from __future__ import annotations

import bisect
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from kafka import KafkaProducer, TopicPartition

from intentstream.agents.kafka import make_consumer
from intentstream.stream import codec
from intentstream.stream.settings import load_settings
from intentstream.stream.contract.events import Event, format_ts, parse_event
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig
from intentstream.stream.engine.offline import OfflineRunner

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TRACE = GeneratorConfig(users=120, days=9, seed=33)


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> tuple[Path, dict[str, list[bytes]]]:
    """The trace file and what the offline engine publishes for it, by topic."""
    path = tmp_path_factory.mktemp("trace") / "click.jsonl"
    lines = list(generate_lines(TRACE))
    path.write_bytes(b"".join(lines))
    out: dict[str, list[bytes]] = {}
    for topic, value in OfflineRunner().run(enumerate(lines)):
        out.setdefault(topic, []).append(value)
    return path, out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the workers' log level (INTENTSTREAM_TEST_WORKER_LOGLEVEL=info to see the group's
#: coordination and the fetcher's errors when a test fails)
LOGLEVEL = os.environ.get("INTENTSTREAM_TEST_WORKER_LOGLEVEL", "warning")


class Deployment:
    """One isolated deployment: its own topics, consumer group and Redis key prefix."""

    def __init__(self, stack, tmp_path: Path) -> None:
        run = uuid.uuid4().hex[:10]
        self.stack = stack
        self.env = {
            **os.environ,
            "INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
            "INTENTSTREAM_REDIS__URL": stack.redis_url,
            "INTENTSTREAM_REDIS__KEY_PREFIX": f"e2e{run}",
            "INTENTSTREAM_TOPICS__CLICKSTREAM": f"e2e.{run}.click",
            "INTENTSTREAM_TOPICS__DEAD_LETTER": f"e2e.{run}.dlq",
            "INTENTSTREAM_TOPICS__SEGMENTS": f"e2e.{run}.segments",
            "INTENTSTREAM_TOPICS__ACTIONS_PREFIX": f"e2e.{run}.actions.",
            "INTENTSTREAM_TOPICS__AUDIT": f"e2e.{run}.audit",
            "INTENTSTREAM_TOPICS__OUTCOMES": f"e2e.{run}.outcomes",
            "INTENTSTREAM_TOPICS__METRICS": f"e2e.{run}.metrics",
            "INTENTSTREAM_TOPICS__ALERTS": f"e2e.{run}.alerts",
            "INTENTSTREAM_WORKER__APP_ID": f"e2e-{run}",
            "INTENTSTREAM_WORKER__WEB_PORT": str(free_port()),
            "INTENTSTREAM_TRIGGERS__IDLE_PARTITION_S": "2",
            "INTENTSTREAM_PERSONA_WRITER__IN_WORKER": "false",
            "INTENTSTREAM_OPS__METRICS_INTERVAL_S": "2",
            "INTENTSTREAM_WORKER__DATA_DIR": str(tmp_path / "faust-data"),
        }
        self.topics = {k.split("__")[1].lower(): v for k, v in self.env.items() if k.startswith("INTENTSTREAM_TOPICS__")}
        self.tmp = tmp_path
        #: settings the replays' producer uses over ``env`` (on the secured cluster the
        #: worker may not write its input: an admin's credentials)
        self.producer_env: dict[str, str] = {}
        self.workers: list[subprocess.Popen] = []
        self.log_files: list = []

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "intentstream.stream.cli", *args], env=self.env, cwd=ROOT,
            capture_output=True, text=True, timeout=timeout, check=True,
        )  # fmt: skip

    def replay_in_background(self, path: Path, rate: int) -> subprocess.Popen:
        """``intentstream replay PATH --to-kafka --rate RATE`` running while the test goes on."""
        return subprocess.Popen(
            [sys.executable, "-m", "intentstream.stream.cli", "replay", str(path), "--to-kafka", "--rate", str(rate)],
            env={**self.env, **self.producer_env}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._log("replay"),
        )  # fmt: skip

    def _log(self, name: str):
        """A log file in the test's directory, closed by ``kill_all`` (``logs`` shows them)."""
        log = open(self.tmp / f"{name}.log", "w")
        self.log_files.append(log)
        return log

    def start_worker(self) -> subprocess.Popen:
        log = self._log(f"worker{len(self.workers)}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "intentstream.stream.cli", "worker", "--loglevel", LOGLEVEL],
            env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.workers.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for log in self.log_files:
            log.close()

    def read(self, topic: str) -> list:
        """Every record of a topic, from the beginning to its current end."""
        # the deployment's own connection settings (SASL/TLS on the secured cluster)
        consumer = make_consumer(load_settings(env=self.env))
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            if not tps:
                return []
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            records = []
            deadline = time.monotonic() + 30
            while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
            return records
        finally:
            consumer.close()

    def wait_for(self, topic: str, count: int, timeout: float = 120) -> list:
        deadline = time.monotonic() + timeout
        while True:
            records = self.read(topic)
            if len(records) >= count or time.monotonic() > deadline:
                return records
            for proc in self.workers:
                assert proc.poll() is None or proc.returncode in (-9, 0), self.logs()
            time.sleep(1)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("*.log")))


@pytest.fixture
def deployment(stack, tmp_path):
    d = Deployment(stack, tmp_path)
    d.cli("topics")
    yield d
    d.kill_all()


def values(records) -> list[bytes]:
    return [r.value for r in records]


def assert_same_as_offline(d: Deployment, expected: dict[str, list[bytes]]) -> None:
    """Every output the offline run publishes is on Kafka exactly once, nothing else."""
    want_segments = expected["segments"]
    want_audit = expected["actions.audit"]
    segments = d.wait_for(d.topics["segments"], len(want_segments))
    audit = d.wait_for(d.topics["audit"], len(want_audit))
    time.sleep(3)  # anything published twice would show up now
    segments, audit = d.read(d.topics["segments"]), d.read(d.topics["audit"])
    ids = Counter(codec.loads(v)["segment_id"] for v in values(segments))
    assert [i for i, n in ids.items() if n > 1] == [], "segments published twice"
    assert sorted(values(segments)) == sorted(want_segments), d.logs()
    # one record per action and kind: a decision, its release or cancellation, a correction
    kinds = Counter((x["action_id"], x.get("status", "correction")) for x in map(codec.loads, values(audit)))
    assert [k for k, n in kinds.items() if n > 1] == [], "audit records published twice"
    assert sorted(values(audit)) == sorted(want_audit)
    # one outcome record per decision whose window closed, byte for byte, keyed by user
    want_outcomes = expected["actions.outcomes"]
    outcomes = d.wait_for(d.topics["outcomes"], len(want_outcomes))
    ids = Counter(codec.loads(v)["action_id"] for v in values(outcomes))
    assert [i for i, n in ids.items() if n > 1] == [], "outcomes published twice"
    assert sorted(values(outcomes)) == sorted(want_outcomes)
    assert all(r.key == codec.loads(r.value)["user_id"].encode() for r in outcomes)
    # deliveries: what is sent now and held messages released at their send time, once each,
    # keyed by user; never a deferred or cancelled one
    for topic in [t for t in expected if t.startswith("actions.") and t not in ("actions.audit", "actions.outcomes")]:
        records = d.read(d.topics["actions_prefix"] + topic.removeprefix("actions."))
        assert sorted(values(records)) == sorted(expected[topic]), topic
        assert all(r.key == codec.loads(r.value)["user_id"].encode() for r in records)


def test_live_worker_equals_offline_replay(deployment, trace, redis_url):
    """kafka-python producer -> Faust worker -> output topics read by kafka-python, with
    state in the real Redis; plus malformed input to the dead-letter topic."""
    path, expected = trace
    d = deployment
    d.start_worker()
    d.cli("replay", str(path), "--to-kafka")
    producer = KafkaProducer(bootstrap_servers=d.stack.kafka_bootstrap)
    for raw in (b"not json", b'{"event_id":"x","user_id":"u-bad","ts":"yesterday","type":"click"}', b"[1]"):
        producer.send(d.topics["clickstream"], key=b"u-bad", value=raw)
    producer.flush()
    producer.close()
    assert_same_as_offline(d, expected)
    dlq = [codec.loads(v) for v in values(d.wait_for(d.topics["dead_letter"], 3))]
    assert sorted(r["reason"] for r in dlq) == ["bad_ts", "not_json", "not_object"]
    assert {r["raw"] for r in dlq} == {"not json", '{"event_id":"x","user_id":"u-bad","ts":"yesterday","type":"click"}', "[1]"}
    # ops: HTTP health and Prometheus metrics, and records on ops.metrics
    import urllib.request

    base = f"http://127.0.0.1:{d.env['INTENTSTREAM_WORKER__WEB_PORT']}"
    with urllib.request.urlopen(base + "/health", timeout=10) as resp:
        assert resp.status == 200 and codec.loads(resp.read())["status"] == "ready"
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert "intentstream_events_total" in text and 'trigger="cart_abandoned"' in text
    assert 'intentstream_outcomes_total{trigger="first_transaction_nudge",arm="treatment",converted=' in text
    assert 'intentstream_outcome_conversion_rate{trigger="first_transaction_nudge",arm="treatment"}' in text
    metrics = [codec.loads(v) for v in values(d.wait_for(d.topics["metrics"], 1, timeout=30))]
    assert metrics and max(m["counters"].get("events", 0) for m in metrics) > 0
    # live state is in Redis, under the deployment's prefix, one hash-tagged key per user
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = d.env["INTENTSTREAM_REDIS__KEY_PREFIX"]
    user_keys = list(client.scan_iter(f"{prefix}:{{u:*}}:ses", count=1000))
    assert len(user_keys) == TRACE.users
    assert all(client.ttl(k) > 0 for k in user_keys[:20])


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(deployment, trace):
    path, expected = trace
    d = deployment
    first = d.start_worker()
    replay = d.replay_in_background(path, rate=4000)
    try:
        d.wait_for(d.topics["segments"], 200, timeout=90)  # well into the stream
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        killed_at = time.monotonic()
        d.start_worker()
        assert_same_as_offline(d, expected)
        print(f"recovered in {time.monotonic() - killed_at:.1f}s after SIGKILL")
    finally:
        replay.wait(120)


def local_ms(tz: str, text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def with_held_and_corrected(lines: list[bytes]) -> list[bytes]:
    """The generated trace plus hand-made users, each delivered at its moment of the
    stream: carts abandoned at 00:05 local in three zones (deferred by quiet hours to
    08:00), then released, or cancelled by a payment or an unsubscribe at 07:03; and
    day-time carts whose payment turns up six hours late, after the message (a correction)."""
    extra: list[tuple[int, dict]] = []  # (delivered at, event)
    zones = ("Asia/Shanghai", "America/New_York", "Europe/Berlin")
    start = TRACE.start_ms
    for i in range(36):
        user, tz = f"held-{i}", zones[i % 3]
        day = format_ts(start + (1 + i % 7) * 86_400_000)[:10]
        fate = i % 4
        if fate == 3:  # day time in UTC: sent, then a late payment from before the decision
            cart = start + (1 + i % 7) * 86_400_000 + 12 * 3_600_000
            extra.append((cart, {"event_id": f"{user}-c", "user_id": user, "ts": cart, "type": "add_to_cart"}))
            extra.append((cart + 6 * 3_600_000, {"event_id": f"{user}-p", "user_id": user, "ts": cart + 20 * 60_000, "type": "payment_success"}))
            continue
        cart = local_ms(tz, f"{day}T23:35")
        extra.append((cart, {"event_id": f"{user}-c", "user_id": user, "ts": cart, "type": "add_to_cart", "tz": tz}))
        then = cart + (7 * 60 + 28) * 60_000  # 07:03 local (no DST change in January)
        if fate == 1:
            extra.append((then, {"event_id": f"{user}-p", "user_id": user, "ts": then, "type": "payment_success", "tz": tz}))
        elif fate == 2:
            extra.append((then, {"event_id": f"{user}-u", "user_id": user, "ts": then, "type": "unsubscribe", "tz": tz, "props": {"channel": "push"}}))
    # delivery order of the generated lines: their running maximum event time
    clock, high = [], 0
    for raw in lines:
        ev = parse_event(raw)
        high = max(high, ev.ts_ms) if type(ev) is Event else high
        clock.append(high)
    out = list(lines)
    for at, ev in sorted(extra, key=lambda x: x[0], reverse=True):
        out.insert(bisect.bisect_right(clock, at), codec.dumps(ev) + b"\n")
    return out


def test_held_released_cancelled_and_corrected_across_sigkills(deployment, tmp_path):
    """Deferred messages held and then released or cancelled, and corrections, with the
    worker killed twice mid-stream — between decisions and the close of their windows:
    actions.*, the audit and the outcome records equal the offline run."""
    lines = with_held_and_corrected(list(generate_lines(TRACE)))
    path = tmp_path / "held.jsonl"
    path.write_bytes(b"".join(lines))
    expected: dict[str, list[bytes]] = {}
    for topic, value in OfflineRunner().run(enumerate(lines)):
        expected.setdefault(topic, []).append(value)
    audit = [codec.loads(v) for v in expected["actions.audit"]]
    outcomes = Counter(x.get("reason", "correction") if x.get("status") != "sent" else "sent" for x in audit if x["user_id"].startswith("held-"))
    # (the strategy policy explores some of these carts on an email strategy, which has no quiet hours)
    assert outcomes["quiet_hours"] >= 18 and outcomes["goal_reached"] >= 5 and outcomes["opt_out"] >= 5 and outcomes["correction"] >= 5
    assert sum(1 for x in audit if x["user_id"].startswith("held-") and x.get("status") == "sent" and x["send_at"]) >= 5  # released
    closed = [codec.loads(v) for v in expected["actions.outcomes"]]
    held = [o for o in closed if o["user_id"].startswith("held-")]
    assert len(closed) >= 150 and {o["status"] for o in held} >= {"sent", "cancelled"} and any(o["corrected"] for o in held)
    d = deployment
    worker = d.start_worker()
    replay = d.replay_in_background(path, rate=3000)
    try:
        for share in (3, 2):  # kill -9 a third of the way in, then two thirds
            d.wait_for(d.topics["audit"], len(audit) // share, timeout=90)
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
            worker = d.start_worker()
        assert_same_as_offline(d, expected)
    finally:
        replay.wait(120)


def test_redis_restart_mid_run_is_waited_out(deployment, trace):
    path, expected = trace
    d = deployment
    d.start_worker()
    replay = d.replay_in_background(path, rate=4000)
    try:
        d.wait_for(d.topics["segments"], 200, timeout=90)
        with d.stack.redis_stopped():
            time.sleep(3)  # the worker retries; it must neither crash nor skip
            assert all(p.poll() is None for p in d.workers), d.logs()
        assert_same_as_offline(d, expected)
        assert all(p.poll() is None for p in d.workers), d.logs()
    finally:
        replay.wait(120)


def test_kafka_restart_mid_run(deployment, trace):
    path, expected = trace
    d = deployment
    d.start_worker()
    d.cli("replay", str(path), "--to-kafka")
    d.wait_for(d.topics["segments"], 100, timeout=90)
    d.stack.restart_kafka()
    assert_same_as_offline(d, expected)


def test_a_quiet_partition_still_fires_its_due_timers(deployment):
    """A user's partition receives nothing after their add_to_cart; other partitions move
    event time on. After [triggers] idle_partition_s without input, the quiet partition
    adopts the highest watermark of all partitions (from Redis) and the cart timer fires,
    dated at its deadline."""
    from intentstream.stream.engine.partitioning import partition_for

    d = deployment
    n = 6
    quiet_user = "u-quiet"
    quiet = partition_for(quiet_user.encode(), n)
    others = [u for u in (f"u-busy-{i}" for i in range(40)) if partition_for(u.encode(), n) != quiet][:5]
    t0 = 1767607200000  # 2026-01-05T10:00:00Z
    events = [{"event_id": "q1", "user_id": quiet_user, "ts": t0, "type": "add_to_cart", "item_id": "sku-1"}]
    for i in range(1, 13):  # two hours of activity elsewhere, every 10 minutes
        for u in others:
            events.append({"event_id": f"{u}-{i}", "user_id": u, "ts": t0 + i * 600_000, "type": "page_view"})
    d.start_worker()
    producer = KafkaProducer(bootstrap_servers=d.stack.kafka_bootstrap)
    for ev in events:
        producer.send(d.topics["clickstream"], key=ev["user_id"].encode(), value=codec.dumps(ev))
    producer.flush()
    producer.close()
    deadline = time.monotonic() + 60
    found = []
    while not found and time.monotonic() < deadline:
        found = [codec.loads(v) for v in values(d.read(d.topics["audit"]))]
        found = [x for x in found if x["user_id"] == quiet_user]
        time.sleep(1)
    assert [(x["trigger"], x["decided_at"]) for x in found] == [("cart_abandoned", "2026-01-05T10:30:00.000Z")], d.logs()


@pytest.fixture
def cluster_deployment(stack, redis_cluster, tmp_path):
    """A deployment whose state is in the local Redis Cluster (Kafka: the stack's broker)."""
    d = Deployment(stack, tmp_path)
    d.env["INTENTSTREAM_REDIS__URL"] = redis_cluster["url"]
    d.cli("topics")
    yield d
    d.kill_all()


@pytest.mark.cluster
def test_redis_cluster_primary_killed_mid_stream(cluster_deployment, trace, redis_cluster):
    """kill -9 the Redis primary holding partition 0's keys (journal, meta, outbox) while
    the worker runs; its replica is promoted (no CLUSTER FAILOVER: the cluster notices) and
    the worker, retrying, carries on: the topics equal the offline replay."""
    from redis.cluster import RedisCluster

    from intentstream.stream.settings import cluster_url
    from intentstream.stream.state.redis import keys

    path, expected = trace
    d = cluster_deployment
    client = RedisCluster.from_url(cluster_url(redis_cluster["url"]) or "")
    node = client.get_node_from_key(keys.partition_meta(d.env["INTENTSTREAM_REDIS__KEY_PREFIX"], 0))
    victim = next(n for n in redis_cluster["nodes"] if n["port"] == node.port)
    d.start_worker()
    replay = d.replay_in_background(path, rate=4000)
    try:
        d.wait_for(d.topics["segments"], 200, timeout=90)  # well into the stream
        d.stack.run("kill-redis-node", str(victim["index"]))
        killed_at = time.monotonic()
        survivor = next(n for n in redis_cluster["nodes"] if n["role"] == "master" and n["port"] != node.port)
        while time.monotonic() - killed_at < 60:  # until a replica took the slots over
            try:
                probe = RedisCluster(host="127.0.0.1", port=survivor["port"])
                if probe.get_node_from_key(keys.partition_meta("x", 0)).port != node.port and probe.cluster_info()["cluster_state"] == "ok":
                    break
            except Exception:  # noqa: BLE001 - the cluster is failing over
                pass
            time.sleep(0.1)
        promoted = time.monotonic() - killed_at
        n_before = len(d.read(d.topics["segments"]))
        while len(d.read(d.topics["segments"])) == n_before and time.monotonic() - killed_at < 60:
            time.sleep(0.2)
        resumed = time.monotonic() - killed_at
        assert_same_as_offline(d, expected)
        assert all(p.poll() is None for p in d.workers), d.logs()
        print(f"replica promoted {promoted:.1f}s after kill -9 of a primary; output resumed after {resumed:.1f}s; "
              f"all outputs equal the offline replay {time.monotonic() - killed_at:.1f}s after the kill")
    finally:
        replay.wait(120)
        client.close()
        d.stack.run("start-redis-node", str(victim["index"]))  # whole again (it rejoins as a replica)
