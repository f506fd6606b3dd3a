"""Shared fixtures: the real local stack (Kafka + Redis started by ``scripts/stack``).

Integration tests carry ``@pytest.mark.integration`` and use these fixtures:

``stack`` (session)
    Brings the stack up through ``scripts/stack up`` (a no-op when it already runs) and,
    only if this test session started it, stops it at the end (the last of several
    concurrent sessions does). Attributes: ``kafka_bootstrap`` ("127.0.0.1:19092"),
    ``redis_url``, ``kafka_port``, ``redis_port``, ``state_dir``; methods
    ``stop_kafka() / start_kafka() / restart_kafka()`` and the same for redis,
    context managers ``kafka_stopped()`` / ``redis_stopped()`` (start again on exit,
    even when the test fails), ``settings(**env)`` (a Settings pointing at the stack),
    ``run(*args)`` (any ``scripts/stack`` subcommand).
``kafka_bootstrap``, ``redis_url`` (session)
    The two addresses.
``kafka_admin`` (session)
    A kafka-python ``KafkaAdminClient`` on the stack.
``kafka_cluster`` (session)
    The 3-node Kafka cluster (``scripts/stack up --cluster --kafka-only``), started if
    needed and stopped at the end if started here: ``bootstrap``, ``env`` (the settings
    that point the product at it, replication factor 3 included), ``kill(node)`` (SIGKILL)
    and ``start(node)``. Tests that use it are marked ``cluster`` as well.
``secure_cluster`` (session)
    The secured clusters (``scripts/stack up --cluster --secure``: SASL_SSL Kafka with ACLs,
    a TLS Redis Cluster with ACL users), started if needed and stopped at the end if started
    here: ``info`` (``scripts/stack info``'s "secure"), ``kafka_env(user)`` and
    ``redis_env(user)`` (the settings as that user, password included), ``password(user)``,
    ``kill(node)`` (SIGKILL a Kafka node) and ``start(node)``.
    Tests that use it are marked ``cluster`` as well.
``unique_name`` / ``unique_topic`` (function)
    ``unique_name("orders")`` -> ``"t.orders.<random>"``: topic, group and key names no
    other test (or concurrent session) uses.
``make_topics`` (function)
    ``make_topics("in", "out", partitions=3)`` or ``make_topics({"in": 3, "out": 1})``
    creates uniquely named topics and returns their names (a list, in order); they are
    deleted after the test.
``redis_db`` / ``redis_client`` (function)
    A fresh, empty Redis database number of its own (flushed before and after):
    ``redis_db.number``, ``redis_db.url``, ``redis_db.client``; ``redis_client`` is that
    ``redis.Redis`` client (decode_responses=False).
``redis_cluster`` (session) / ``redis_cluster_client`` (function)
    The local Redis Cluster (``scripts/stack up --cluster --redis-only``; stopped at the end
    only if started here): its ``info`` dict (``url``, ``nodes``); and a ``RedisCluster``
    client on it, every primary flushed before and after the test (a cluster has one
    database: tests using it do not run concurrently with each other).

Set ``INTENTSTREAM_SKIP_INTEGRATION=1`` (or pass ``--skip-integration``) to skip the
integration tests for a quick local run; by default they run. The stack's ports and
state dir follow ``INTENTSTREAM_STACK_*`` (see ``scripts/stack --help``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
STACK_SCRIPT = ROOT / "scripts" / "stack"
SKIP_ENV = "INTENTSTREAM_SKIP_INTEGRATION"


# --------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--skip-integration",
        action="store_true",
        default=False,
        help=f"skip tests marked integration (they need Kafka and Redis); same as {SKIP_ENV}=1",
    )


def _skip_integration(config: pytest.Config) -> bool:
    flag = os.environ.get(SKIP_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(config.getoption("--skip-integration"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _skip_integration(config):
        return
    skip = pytest.mark.skip(reason=f"integration tests skipped ({SKIP_ENV}=1 or --skip-integration)")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------- the stack


def run_stack(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/stack ARGS`` with this interpreter; raise with its output on failure."""
    proc = subprocess.run(
        [sys.executable, str(STACK_SCRIPT), *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"scripts/stack {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def stack_info() -> dict[str, Any]:
    return json.loads(run_stack("info").stdout)


@dataclass
class Stack:
    """Handle on the running local stack (see the module docstring)."""

    kafka_bootstrap: str
    redis_url: str
    kafka_port: int
    redis_port: int
    state_dir: Path
    started_here: tuple[str, ...] = field(default=())

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_stack(*args, check=check)

    def up(self) -> None:
        self.run("up", "-q")

    def stop_kafka(self) -> None:
        self.run("stop-kafka")

    def start_kafka(self) -> None:
        self.run("start-kafka")

    def restart_kafka(self) -> None:
        self.run("restart-kafka")

    def stop_redis(self) -> None:
        self.run("stop-redis")

    def start_redis(self) -> None:
        self.run("start-redis")

    def restart_redis(self) -> None:
        self.run("restart-redis")

    @contextlib.contextmanager
    def kafka_stopped(self) -> Iterator[None]:
        """Kafka is down inside the block and up again after it, whatever happens."""
        self.stop_kafka()
        try:
            yield
        finally:
            self.start_kafka()

    @contextlib.contextmanager
    def redis_stopped(self) -> Iterator[None]:
        self.stop_redis()
        try:
            yield
        finally:
            self.start_redis()

    def settings(self, **env: str):
        """``load_settings`` with the stack's addresses; ``env`` adds INTENTSTREAM_* overrides."""
        from intentstream.stream.settings import load_settings

        merged = {k: v for k, v in os.environ.items() if k.startswith("INTENTSTREAM_")}
        merged["INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS"] = self.kafka_bootstrap
        merged["INTENTSTREAM_REDIS__URL"] = self.redis_url
        merged.update(env)
        return load_settings(env=merged)


@contextlib.contextmanager
def _leases_lock(state_dir: Path) -> Iterator[Path]:
    leases = state_dir / "pytest-leases"
    leases.mkdir(parents=True, exist_ok=True)
    with open(leases / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield leases
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _live_leases(leases: Path) -> list[Path]:
    live = []
    for lease in leases.glob("[0-9]*"):
        try:
            os.kill(int(lease.name), 0)
        except (ValueError, ProcessLookupError):
            lease.unlink(missing_ok=True)  # a session that died without cleaning up
            continue
        except PermissionError:
            pass
        live.append(lease)
    return live


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The local stack; started if needed, stopped at the end only if started here.

    Concurrent test sessions sharing one state dir hold a lease each (a file named by
    their pid); the stack that a session started is stopped by whichever session ends
    last, and a stack someone started by hand is never stopped."""
    if _skip_integration(request.config):
        pytest.skip(f"integration tests skipped ({SKIP_ENV})")
    info = stack_info()
    state_dir = Path(info["state_dir"])
    owned_file = state_dir / "pytest-owned"
    me = str(os.getpid())
    with _leases_lock(state_dir) as leases:
        info = stack_info()  # again, now that no other session can be starting it
        missing = [s for s in ("kafka", "redis") if not info[s]["up"]]
        if missing:
            run_stack("up", "-q")
            owned = set(owned_file.read_text().split()) if owned_file.exists() else set()
            owned_file.write_text(" ".join(sorted(owned | set(missing))) + "\n")
        (leases / me).write_text("")
    handle = Stack(
        kafka_bootstrap=info["kafka"]["bootstrap"],
        redis_url=info["redis"]["url"],
        kafka_port=info["kafka"]["port"],
        redis_port=info["redis"]["port"],
        state_dir=state_dir,
        started_here=tuple(missing),
    )
    try:
        yield handle
    finally:
        with _leases_lock(state_dir) as leases:
            (leases / me).unlink(missing_ok=True)
            if owned_file.exists() and not _live_leases(leases):
                # each service on its own: a plain `down` would stop the Redis Cluster too
                for service in owned_file.read_text().split():
                    run_stack("down", f"--{service}-only", check=False)
                owned_file.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Stack) -> str:
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(stack: Stack) -> str:
    return stack.redis_url


@pytest.fixture(scope="session")
def kafka_admin(stack: Stack):
    from intentstream.agents.kafka import admin_client

    admin = admin_client(stack.settings(), client_id="intentstream-tests")
    try:
        yield admin
    finally:
        admin.close()


@dataclass
class KafkaCluster:
    """Handle on the 3-node Kafka cluster of ``scripts/stack up --cluster``."""

    bootstrap: str
    env: dict[str, str]
    nodes: tuple[int, ...]

    def kill(self, node: int) -> None:
        run_stack("kafka-node", "kill", str(node))

    def start(self, node: int) -> None:
        run_stack("kafka-node", "start", str(node))


@pytest.fixture(scope="session")
def kafka_cluster(request: pytest.FixtureRequest) -> Iterator[KafkaCluster]:
    """The Kafka cluster; started if any node was down, stopped at the end if started here
    (one session at a time uses it: fault tests kill its nodes)."""
    if _skip_integration(request.config):
        pytest.skip(f"integration tests skipped ({SKIP_ENV})")
    info = stack_info()["kafka_cluster"]
    started_here = not info["up"]
    if started_here:
        run_stack("up", "--cluster", "--kafka-only", "-q")
    try:
        yield KafkaCluster(bootstrap=info["bootstrap"], env=info["env"], nodes=tuple(map(int, info["nodes"])))
    finally:
        if started_here:
            run_stack("down", "--cluster", "--kafka-only", check=False)


@dataclass
class SecureCluster:
    """Handle on the secured clusters of ``scripts/stack up --cluster --secure``."""

    info: dict[str, Any]

    def password(self, user: str) -> str:
        return Path(self.info["users"][user]["password_file"]).read_text().strip()

    def kafka_env(self, user: str = "worker") -> dict[str, str]:
        return {**self.info["kafka"]["env"], "INTENTSTREAM_KAFKA__SASL_USERNAME": user, "INTENTSTREAM_KAFKA__SASL_PASSWORD": self.password(user)}

    def kill(self, node: int) -> None:
        """kill -9 one node of the secured Kafka cluster."""
        run_stack("kafka-node", "kill", str(node), "--secure")

    def start(self, node: int) -> None:
        run_stack("kafka-node", "start", str(node), "--secure")

    def redis_env(self, user: str = "worker") -> dict[str, str]:
        url = self.info["redis"]["url"].replace("://worker@", f"://{user}@")
        return {"INTENTSTREAM_REDIS__URL": url, "INTENTSTREAM_REDIS__PASSWORD": self.password(user),
                "INTENTSTREAM_REDIS__KEY_PREFIX": self.info["redis"]["worker_key_prefix"]}  # fmt: skip


@pytest.fixture(scope="session")
def secure_cluster(request: pytest.FixtureRequest) -> Iterator[SecureCluster]:
    """The secured clusters; started if not up, stopped at the end if started here."""
    if _skip_integration(request.config):
        pytest.skip(f"integration tests skipped ({SKIP_ENV})")
    info = stack_info()["secure"]
    started_here = not (info["kafka"]["up"] and info["redis"]["up"])
    if started_here:
        run_stack("up", "--cluster", "--secure", "-q")
        info = stack_info()["secure"]
    try:
        yield SecureCluster(info)
    finally:
        if started_here:
            run_stack("down", "--cluster", "--secure", check=False)


# --------------------------------------------------------------------------- isolation


def unique_name(base: str = "t") -> str:
    """A name no other test uses: ``t.<base>.<12 hex digits>`` (legal for topics and groups)."""
    return f"t.{base}.{uuid.uuid4().hex[:12]}"


@pytest.fixture(name="unique_name")
def unique_name_fixture():
    return unique_name


@pytest.fixture
def unique_topic():
    """Same as ``unique_name`` (the name it has in the test plan)."""
    return unique_name


@pytest.fixture
def make_topics(stack: Stack, kafka_admin):
    """Factory: create uniquely named topics for this test, deleted afterwards."""
    from intentstream.agents.admin import ensure_topics

    created: list[str] = []
    settings = stack.settings()

    def make(*specs: str | dict[str, int], partitions: int = 1) -> list[str]:
        wanted: dict[str, int] = {}
        names: list[str] = []
        for spec in specs:
            items = spec.items() if isinstance(spec, dict) else [(spec, partitions)]
            for base, n in items:
                name = unique_name(base)
                wanted[name] = n
                names.append(name)
        ensure_topics(settings, wanted, admin=kafka_admin)
        created.extend(names)
        return names

    yield make
    if created:
        with contextlib.suppress(Exception):  # the broker may be down after a fault test
            kafka_admin.delete_topics(created, timeout_ms=10000, raise_errors=False)


@dataclass
class RedisDB:
    number: int
    url: str
    client: Any


@pytest.fixture
def redis_db(stack: Stack) -> Iterator[RedisDB]:
    """A Redis database number for this test alone, empty before and flushed after."""
    import redis

    base = redis.Redis.from_url(stack.redis_url)
    try:
        databases = int(base.config_get("databases").get(b"databases", 16))
        # a counter shared by all sessions hands out DBs 1..databases-1 in turn
        number = 1 + (int(base.incr("intentstream:tests:db-counter")) - 1) % (databases - 1)
    finally:
        base.close()
    url = stack.redis_url.rsplit("/", 1)[0] + f"/{number}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield RedisDB(number=number, url=url, client=client)
    finally:
        with contextlib.suppress(Exception):  # Redis may be down after a fault test
            client.flushdb()
        client.close()


@pytest.fixture
def redis_client(redis_db: RedisDB):
    return redis_db.client


# --------------------------------------------------------------------------- redis cluster


@pytest.fixture(scope="session")
def redis_cluster(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The local Redis Cluster; started if needed, stopped at the end only if started here
    (by the last of concurrent sessions, as for ``stack``)."""
    if _skip_integration(request.config):
        pytest.skip(f"integration tests skipped ({SKIP_ENV})")
    state_dir = Path(stack_info()["state_dir"])
    owned_file = state_dir / "pytest-owned-redis-cluster"
    me = f"{os.getpid()}"
    with _leases_lock(state_dir) as leases:
        if not stack_info()["redis_cluster"]["up"]:
            run_stack("up", "--cluster", "--redis-only", "-q")
            owned_file.write_text("redis-cluster\n")
        (leases / me).write_text("")
    try:
        yield stack_info()["redis_cluster"]
    finally:
        with _leases_lock(state_dir) as leases:
            if owned_file.exists() and not [lease for lease in _live_leases(leases) if lease.name != me]:
                run_stack("down", "--cluster", "--redis-only", check=False)  # not the Kafka cluster
                owned_file.unlink(missing_ok=True)


@pytest.fixture
def redis_cluster_client(redis_cluster: dict[str, Any]) -> Iterator[Any]:
    from redis.cluster import RedisCluster

    from intentstream.stream.settings import cluster_url

    client = RedisCluster.from_url(cluster_url(redis_cluster["url"]) or redis_cluster["url"])
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):  # a node may be down after a fault test
            client.flushall(target_nodes=RedisCluster.PRIMARIES)
        client.close()
