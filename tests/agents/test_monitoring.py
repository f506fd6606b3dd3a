"""intentstream.agents.monitoring on the real stack: the reporter publishes ``ops.metrics`` / ``ops.alerts``
through a real aiokafka producer (read back with kafka-python), the probe reads a real
engine's Redis state (and does without Redis during an outage), and the Faust web server
serves ``/health`` and ``/metrics`` over HTTP. Nothing here stops the shared Redis or
Kafka: a hanging Redis is simulated by a socket that never answers."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.error
import urllib.request
from collections import defaultdict
from types import SimpleNamespace

import pytest

from intentstream.agents.commands.stats import MetricsBoard, parse_snapshot
from intentstream.agents.monitoring import OpsReporter, WorkerProbe, register
from intentstream.stream import codec
from intentstream.stream.ops.metrics import MetricsBuilder
from intentstream.stream.ops.snapshot import PartitionState, WorkerSnapshot

T0 = 1_767_607_200_000  # 2026-01-05T10:00:00Z


def line(i: int, user: str, minute: int, typ: str) -> tuple[int, bytes]:
    ts = T0 + minute * 60_000
    return (i, b'{"event_id":"e%d","user_id":"%s","ts":%d,"type":"%s"}' % (i, user.encode(), ts, typ.encode()))


def fake_pipeline(engines: dict | None = None, recovered: set | None = None) -> SimpleNamespace:
    """What the probe reads of intentstream.agents.worker.Pipeline (counters, engines, recovered)."""
    return SimpleNamespace(engines=engines or {}, recovered=recovered or set(), counters=defaultdict(int))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Writer:
    """What the probe reads of intentstream.agents.personas.PersonaWriter."""

    def __init__(self) -> None:
        self.is_leader = False
        self.owner = "host:7"
        self.counters = {"learned": 0}


def test_a_metrics_record_is_what_intentstream_stats_reads():
    b = MetricsBuilder("w1")
    snaps = [
        WorkerSnapshot(T0, {"events": 100, "decision:churn_risk:email:sent": 1}, {2: PartitionState(watermark_ms=T0, lag=3, offset=9, timers=4)}),
        WorkerSnapshot(T0 + 10_000, {"events": 300}, {2: PartitionState(watermark_ms=T0 + 5000, lag=7, offset=50, timers=2)}),
    ]
    board = MetricsBoard()
    for s in snaps:
        board.add(codec.dumps(b.build(s)), b"w1", s.ts_ms)
    snap = parse_snapshot(codec.dumps(b.build(snaps[1])), None, 0)
    assert snap.worker == "w1" and snap.ts_ms == T0 + 10_000 and snap.counters == {"events": 300}
    assert snap.partitions["2"]["watermark"] == "2026-01-05T10:00:05.000Z" and snap.partitions["2"]["lag"] == 7
    assert board.rates("w1") == {"events": 20.0}
    text = board.render(T0 + 11_000)
    assert "w1" in text and "events" in text and "2026-01-05T10:00:05.000Z" in text and "TIMERS" in text


@pytest.mark.integration
def test_reporter_publishes_metrics_and_alerts_and_reads_real_engine_state(stack, make_topics, redis_db):
    import redis
    from aiokafka import AIOKafkaProducer
    from kafka import KafkaConsumer

    from intentstream.agents.kafka import aiokafka_options
    from intentstream.stream.engine.partition import PartitionEngine
    from intentstream.stream.state.redis.sessions import RedisSessionStore

    metrics_topic, alerts_topic = make_topics("metrics", "alerts")
    settings = stack.settings(
        INTENTSTREAM_TOPICS__METRICS=metrics_topic,
        INTENTSTREAM_TOPICS__ALERTS=alerts_topic,
        INTENTSTREAM_REDIS__URL=redis_db.url,
        INTENTSTREAM_OPS__ALERT_COOLDOWN_S="0",
        INTENTSTREAM_OPS__PROBE_TIMEOUT_S="1",
        INTENTSTREAM_PERSONA_WRITER__IN_WORKER="false",
    )
    store = RedisSessionStore(redis_db.client, "ops")
    eng = PartitionEngine(store, 0, settings)
    pipe = fake_pipeline({0: eng}, {0})
    result = eng.process([line(0, "alice", 0, "page_view"), line(1, "alice", 1, "add_to_cart"), line(2, "bob", 3, "login"), (3, b"oops")])
    for name, n in result.counters.items():
        pipe.counters[name] += n
    writer = Writer()
    probe = WorkerProbe(settings, lambda: pipe, writer, assignment=lambda: {0}, highwater=lambda p: 10)

    async def scenario() -> list[dict]:
        producer = AIOKafkaProducer(**aiokafka_options(settings, "test"), acks="all")
        await producer.start()
        try:
            reporter = OpsReporter(settings, "worker-a", probe.snapshot, producer)
            records = [(await reporter.report())[0]]
            wm0 = eng._meta.wm
            pipe.counters["store_retries"] += 2  # a Redis outage during the interval
            writer.is_leader, writer.counters["learned"] = True, 5
            records.append((await reporter.report())[0])
            records.append((await reporter.report())[0])  # no more retries: resolved
            # Redis hangs (a server that never answers): the probe gives up after
            # probe_timeout_s and answers from the engine's cached meta, without timers;
            # while that read is still stuck, the next snapshot does not wait at all
            with socket.socket() as hang:
                hang.bind(("127.0.0.1", 0))
                hang.listen(8)
                pipe.store = RedisSessionStore(redis.Redis(port=hang.getsockname()[1], socket_timeout=2), "ops")
                started = time.monotonic()
                down = await probe.snapshot()
                assert 0.9 < time.monotonic() - started < 2
                started = time.monotonic()
                again = await probe.snapshot()
                assert time.monotonic() - started < 0.5
            for snap in (down, again):
                assert snap.partitions[0].offset == 3 and snap.partitions[0].timers is None
                assert snap.partitions[0].watermark_ms == wm0
            assert reporter.counters == {"reports": 3, "alerts": 3}
            return records
        finally:
            await producer.stop()

    records = asyncio.run(scenario())
    part = records[0]["partitions"]["0"]
    assert part["offset"] == 3 and part["highwater"] == 10 and part["lag"] == 6 and part["recovered"] is True
    assert part["watermark"].startswith("2026-01-05T") and part["timers"] >= 1  # alice's cart timer
    assert records[0]["counters"]["events"] == 3 and records[0]["counters"]["invalid"] == 1
    assert records[1]["persona"] == {"role": "leader", "leader": True, "owner": "host:7", "learned": 5}
    assert records[1]["alerts_active"] == ["store_unavailable"] and records[2]["alerts_active"] == ["watermark_stalled"]

    consumer = KafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        consumer_timeout_ms=3000, group_id=None,
    )  # fmt: skip
    try:
        consumer.subscribe([metrics_topic, alerts_topic])
        got: dict[str, list] = defaultdict(list)
        deadline = time.monotonic() + 15
        while (len(got[metrics_topic]) < 3 or len(got[alerts_topic]) < 3) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for m in batch:
                    got[m.topic].append(m)
    finally:
        consumer.close()
    metrics, alerts = got[metrics_topic], got[alerts_topic]
    assert [m.key for m in metrics + alerts] == [b"worker-a"] * 6
    assert [codec.loads(m.value) for m in metrics] == records
    snap = parse_snapshot(metrics[-1].value, metrics[-1].key, metrics[-1].timestamp)
    assert snap.worker == "worker-a" and snap.counters["events"] == 3 and snap.partitions["0"]["lag"] == 6
    fired, stalled, resolved = (codec.loads(m.value) for m in alerts)
    assert (fired["alert"], fired["status"], fired["severity"], fired["value"]) == ("store_unavailable", "firing", "critical", 2)
    # 6 records wait on partition 0 and its watermark did not move for 2 intervals
    assert (stalled["alert"], stalled["status"], stalled["value"]) == ("watermark_stalled", "firing", 2)
    assert (resolved["alert"], resolved["status"]) == ("store_unavailable", "resolved")


def http_get(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers["Content-Type"], e.read()


SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})?'
    r" [+-]?(?:[0-9.]+(?:[eE][+-]?[0-9]+)?|Inf|NaN)$"
)


def test_health_and_metrics_are_served_by_the_faust_web_server():
    from intentstream.agents.app import create_app
    from intentstream.stream.settings import load_settings

    port = free_port()
    settings = load_settings(env={"INTENTSTREAM_WORKER__WEB_PORT": str(port), "INTENTSTREAM_WORKER__WEB_BIND": "127.0.0.1"})
    app, _topics = create_app(settings)
    state: dict = {}
    sent: list = []

    class Producer:
        async def send(self, topic, value, key=None):
            sent.append((topic, key, value))
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    writer = Writer()
    handle = register(
        app, lambda: state.get("p"), writer, settings,
        producer=Producer(), worker_id="w-http", assignment=lambda: {0, 1}, highwater=lambda p: 40,
    )  # fmt: skip

    async def scenario() -> None:
        await app.web.start()
        try:
            status, ctype, body = await asyncio.to_thread(http_get, port, "/health")
            assert (status, ctype) == (503, "application/json")
            assert codec.loads(body)["reasons"] == ["pipeline not started"]
            state["p"] = pipe = fake_pipeline(recovered={0})
            status, _, body = await asyncio.to_thread(http_get, port, "/health")
            assert status == 503 and codec.loads(body)["missing"] == [1]
            pipe.recovered.add(1)
            status, _, body = await asyncio.to_thread(http_get, port, "/health")
            assert status == 200 and codec.loads(body)["status"] == "ready"

            pipe.counters.update({"events": 12, "decision:kyc_stalled:sms:sent": 2})
            await handle.reporter.report()
            status, ctype, body = await asyncio.to_thread(http_get, port, "/metrics")
            assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
            text = body.decode()
            samples = [ln for ln in text.splitlines() if not ln.startswith("#")]
            assert samples and all(SAMPLE.match(ln) for ln in samples), text
            assert "intentstream_events_total 12" in samples
            assert 'intentstream_decisions_total{trigger="kyc_stalled",channel="sms",status="sent"} 2' in samples
            assert 'intentstream_partition_recovered{partition="1"} 1' in samples
            assert "intentstream_ready 1" in samples and "intentstream_persona_leader 0" in samples
            assert "intentstream_ops_reports_total 1" in samples
        finally:
            await app.web.stop()

    asyncio.run(scenario())
    ((topic, key, value),) = sent
    assert topic == settings.topics.metrics and key == b"w-http" and codec.loads(value)["counters"]["events"] == 12
    # the reporter timer is one of the app's tasks
    assert [t.__name__ for t in app._app_tasks].count("ops_report") == 1


def test_a_broker_that_is_down_costs_a_report_not_the_worker():
    from intentstream.agents.monitoring import _LazyProducer
    from intentstream.stream.settings import load_settings

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    settings = load_settings(env={"INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{dead}", "INTENTSTREAM_OPS__METRICS_INTERVAL_S": "2"})
    producer = _LazyProducer(settings)
    reporter = OpsReporter(settings, "w", lambda: WorkerSnapshot(0, {"store_retries": 1}), producer)

    async def scenario() -> None:
        started = time.monotonic()
        record, alerts = await reporter.report()
        assert time.monotonic() - started < 2.5
        assert record["worker"] == "w" and [a["alert"] for a in alerts] == ["store_unavailable"]
        assert reporter.counters["send_failures"] == 1 and producer.producer is None  # retried next time
        await producer.stop()

    asyncio.run(scenario())
