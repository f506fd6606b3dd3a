"""The secured clusters of ``scripts/stack up --cluster --secure`` (issue 15 item 5): Kafka
with SASL_SSL (SCRAM-SHA-512) and ACLs, a Redis Cluster over TLS with ACL users.

* a downstream consumer of ``actions.push`` (the ``messaging`` user) reads it, and may
  neither write to it nor read ``clickstream``;
* a wrong password is refused by the product's own commands with one line that names the
  user and never the secret (nor do the logs);
* the worker's Redis user reaches only keys under its prefix, and ``default`` is off;
* the worker runs end to end as the least-privileged ``worker`` user on both clusters and
  its outputs equal the offline replay (tests/agents/test_worker.py's comparison), also
  through the fault tests: kill -9 of the input's Kafka leader, of one of two workers
  (tests/agents/test_cluster_faults.py's, reused) and of a Redis primary.
"""

from __future__ import annotations

import os
import gc
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from kafka import TopicPartition
from kafka.errors import AuthorizationError, TopicAuthorizationFailedError
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from intentstream.agents.admin import grant_acls, worker_acls
from intentstream.agents.kafka import make_consumer, make_producer
from intentstream.stream.settings import load_settings
from intentstream.stream.state.redis.client import make_client
from tests.agents.test_cluster_faults import test_kill_9_the_input_partitions_leader_mid_stream as leader_kill
from tests.agents.test_cluster_faults import IDLE_PARTITION_S, ClusterAdmin
from tests.agents.test_cluster_faults import test_kill_9_one_of_two_workers_mid_stream as worker_kill
from tests.agents.test_worker import Deployment, assert_same_as_offline, trace  # noqa: F401  (trace: a fixture)
from tests.conftest import ROOT, run_stack

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(300)]


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "intentstream.stream.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture(autouse=True)
def collect_quietly():
    """redis-py can leave a TLS socket of a refused command to the garbage collector (seen
    now and then after NOPERM replies, the clients closed): collect it after each test
    rather than as an unraisable warning at the end of the session."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_messaging_user_reads_push_but_cannot_write_it_or_read_clickstream(secure_cluster):
    settings = load_settings(env=secure_cluster.kafka_env("messaging"))
    push, clickstream = "actions.push", settings.topics.clickstream
    consumer = make_consumer(settings, group_id="messaging", enable_auto_commit=False)
    try:
        consumer.subscribe([push])
        consumer.poll(timeout_ms=3000)  # allowed: joins its group, no error
        assert consumer.assignment(), "the messaging user got no partition of actions.push"
    finally:
        consumer.close()
    producer = make_producer(settings, enable_idempotence=False, max_block_ms=10000)
    try:
        with pytest.raises((TopicAuthorizationFailedError, AuthorizationError)):
            producer.send(push, b"forged").get(timeout=10)
    finally:
        producer.close(timeout=5)
    consumer = make_consumer(settings, request_timeout_ms=5000)
    try:
        tp = TopicPartition(clickstream, 0)
        consumer.assign([tp])
        with pytest.raises(TopicAuthorizationFailedError):  # where it would start reading
            consumer.position(tp, timeout_ms=5000)
    finally:
        consumer.close()


def test_wrong_password_is_refused_in_one_line_without_the_secret(secure_cluster, tmp_path):
    secret = "not-the-Password-4242"
    env = {**os.environ, **secure_cluster.kafka_env("worker"), "INTENTSTREAM_KAFKA__SASL_PASSWORD": secret}
    started = time.monotonic()
    for command in (["topics"], ["worker", "--loglevel", "info"]):
        out = cli(env, *command)
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert out.stdout.strip() == "" or secret not in out.stdout
        line = out.stderr.strip()
        assert "\n" not in line and "Traceback" not in line, out.stderr
        assert line.startswith(f"intentstream {command[0]}: Kafka at ") and "refused user 'worker' (SCRAM-SHA-512)" in line, line
        assert "invalid credentials" in line and secret not in line
    print(f"two refusals in {time.monotonic() - started:.1f}s")
    state = Path(secure_cluster.info["ca_file"]).parent.parent
    for log in state.glob("kafka-secure-*/server.log"):
        assert secret not in log.read_text(errors="replace")


def test_redis_worker_user_is_confined_to_its_prefix(secure_cluster):
    env = secure_cluster.redis_env("worker")
    prefix = env["INTENTSTREAM_REDIS__KEY_PREFIX"]
    client = make_client(load_settings(env=env).redis)
    try:
        key = f"{prefix}:{{u:secure-test}}:probe"
        assert client.set(key, b"1") and client.get(key) == b"1"
        assert client.evalsha(client.script_load("return redis.call('get', KEYS[1])"), 1, key) == b"1"
        client.delete(key)
        for forbidden in (lambda: client.get("other:probe"), lambda: client.set("other:probe", b"1"),
                          lambda: client.flushall(), lambda: client.config_get("*")):  # fmt: skip
            with pytest.raises(NoPermissionError):
                forbidden()
        with pytest.raises((NoPermissionError, ResponseError)):  # a script cannot reach around the ACL
            client.eval("return redis.call('get', 'other:probe')", 0)
    finally:
        client.close()
    # no anonymous access: the default user is off
    node = secure_cluster.info["redis"]["nodes"][0]["port"]
    anonymous = redis.Redis(host="127.0.0.1", port=node, ssl=True, ssl_ca_certs=secure_cluster.info["ca_file"], socket_timeout=5)
    with pytest.raises((AuthenticationError, NoPermissionError, ResponseError)):
        anonymous.get(f"{prefix}:x")
    anonymous.close()


@pytest.fixture
def secure_deployment(secure_cluster, tmp_path):
    """An isolated deployment (tests/agents/test_worker.py) on the secured clusters: the
    worker and its reads run as ``worker``; an admin creates its topics and its ACLs."""
    redis_env = secure_cluster.redis_env("worker")
    target = SimpleNamespace(kafka_bootstrap=secure_cluster.info["kafka"]["bootstrap"], redis_url=redis_env["INTENTSTREAM_REDIS__URL"])
    d = Deployment(target, tmp_path)
    d.env.update(secure_cluster.kafka_env("worker"))
    d.env.update(redis_env)  # the worker's Redis ACL allows its prefix only: flushed below
    admin_env = {**d.env, **secure_cluster.kafka_env("admin")}
    d.admin_env = admin_env  # type: ignore[attr-defined]
    d.producer_env = secure_cluster.kafka_env("admin")  # the worker may not write its input
    assert cli(admin_env, "topics").returncode == 0
    grant_acls(load_settings(env=admin_env), worker_acls(load_settings(env=d.env), "User:worker"))
    client = make_client(load_settings(env=d.env).redis)
    for key in client.scan_iter(f"{redis_env['INTENTSTREAM_REDIS__KEY_PREFIX']}:*", count=1000, target_nodes=client.PRIMARIES):
        client.delete(key)
    client.close()
    yield d
    d.kill_all()


def test_worker_on_the_secured_stack_equals_offline_replay(secure_deployment, trace):  # noqa: F811
    path, expected = trace
    d = secure_deployment
    started = time.monotonic()
    d.start_worker()
    replay = cli(d.admin_env, "replay", str(path), "--to-kafka", timeout=120)  # the producer of clickstream: admin
    assert replay.returncode == 0, replay.stderr
    assert_same_as_offline(d, expected)
    print(f"secured end to end in {time.monotonic() - started:.1f}s")
    assert "Authorization" not in d.logs() and "NoPermission" not in d.logs(), d.logs()


def test_the_worker_user_may_not_create_topics(secure_cluster):
    """Least privilege: `intentstream topics` as the worker for a topic that is missing."""
    env = {**os.environ, **secure_cluster.kafka_env("worker"), "INTENTSTREAM_TOPICS__CLICKSTREAM": "not.created.by.admin"}
    out = cli(env, "topics")
    assert out.returncode == 2 and "not.created.by.admin are missing" in out.stderr and "\n" not in out.stderr.strip(), out.stderr


@pytest.fixture
def secure_admin(secure_cluster):
    client = ClusterAdmin(load_settings(env=secure_cluster.kafka_env("admin")), client_id="intentstream-secure-fault-tests")
    try:
        yield client
    finally:
        client.close()


def test_kill_9_the_input_partitions_leader_on_the_secured_cluster(secure_deployment, secure_admin, secure_cluster, trace):  # noqa: F811
    """tests/agents/test_cluster_faults.py's leader kill, on SASL_SSL with the worker's ACLs:
    clients re-authenticate to the new leaders and nothing is lost or doubled."""
    leader_kill(secure_deployment, secure_admin, secure_cluster, trace)


def test_kill_9_one_of_two_workers_on_the_secured_cluster(secure_deployment, secure_admin, trace):  # noqa: F811
    """tests/agents/test_cluster_faults.py's worker kill, both workers as ``worker``."""
    worker_kill(secure_deployment, secure_admin, trace)


def test_kill_9_a_redis_primary_on_the_secured_cluster(secure_deployment, secure_cluster, trace):  # noqa: F811
    """kill -9 the secured Redis primary holding partition 0's keys mid-stream (as
    tests/agents/test_worker.py does on the plain cluster): its replica is promoted, the
    worker's TLS/ACL client follows it, and the topics equal the offline replay."""
    from intentstream.stream.state.redis import keys

    path, expected = trace
    d = secure_deployment
    admin = make_client(load_settings(env=secure_cluster.redis_env("admin")).redis)
    port = admin.get_node_from_key(keys.partition_meta(d.env["INTENTSTREAM_REDIS__KEY_PREFIX"], 0)).port
    victim = next(n["index"] for n in secure_cluster.info["redis"]["nodes"] if n["port"] == port)
    # the stalled partition waits out the failover before adopting the others' watermark
    # (tests/agents/test_cluster_faults.py: with 2 s its held-back events would turn late)
    d.env["INTENTSTREAM_TRIGGERS__IDLE_PARTITION_S"] = str(IDLE_PARTITION_S)
    d.start_worker()
    replay = d.replay_in_background(path, rate=4000)
    try:
        d.wait_for(d.topics["segments"], 200, timeout=90)  # well into the stream
        run_stack("kill-redis-node", str(victim), "--secure")
        killed = time.monotonic()
        assert_same_as_offline(d, expected)
        assert all(p.poll() is None for p in d.workers), d.logs()
        print(f"\nsecured Redis primary kill: all outputs equal the offline replay {time.monotonic() - killed:.1f}s after kill -9")
    finally:
        replay.wait(120)
        admin.close()
        run_stack("start-redis-node", str(victim), "--secure")  # whole again (it rejoins as a replica)
