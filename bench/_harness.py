"""Helpers of the live benchmarks (bench/worker.py): isolated deployments on the local
stack, worker subprocesses, fast producing, consumer-group catch-up, process memory.

Every :class:`Deployment` has its own topics, consumer group (= Faust app id), Redis key
prefix and web port, all set through ``INTENTSTREAM_<SECTION>__<KEY>`` environment
overrides, so runs never see each other's data; several deployments may share one
pre-loaded clickstream topic (each its own consumer group). Workers run with their own
process group and a temporary working directory (Faust writes ``<app id>-data/`` there),
and :meth:`Deployment.close` kills them, deletes the topics it created and the Redis keys
under its prefix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intentstream.stream.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
#: Topics replay historical event times into: never delete records by age.
TOPIC_CONFIGS = {"retention.ms": "-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_id() -> str:
    return uuid.uuid4().hex[:8]


def inherited_env() -> dict[str, str]:
    """The caller's environment (``INTENTSTREAM_*`` overrides included)."""
    return dict(os.environ)


# --------------------------------------------------------------------------- the local stack


def stack_info() -> dict[str, Any]:
    """``scripts/stack info`` (pids, ports, state dir); {} when it fails."""
    import json

    try:
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "stack"), "info"], capture_output=True, text=True, timeout=60, cwd=ROOT)
        return json.loads(out.stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}


def stack_pids(info: dict[str, Any] | None = None) -> dict[str, int]:
    """Pids of the local stack's Kafka and Redis (for CPU accounting), where known."""
    info = stack_info() if info is None else info
    return {name: int(info[name]["pid"]) for name in ("kafka", "redis") if (info.get(name) or {}).get("pid")}


@contextlib.contextmanager
def stack_lease(info: dict[str, Any] | None = None) -> Iterator[None]:
    """Hold a lease on the local stack while benchmarking: a file named by this pid in
    ``<state dir>/pytest-leases`` (the protocol of tests/conftest.py), so a concurrent
    test session that started the stack does not stop it under the benchmark."""
    info = stack_info() if info is None else info
    state_dir = info.get("state_dir")
    if not state_dir:
        yield
        return
    leases = Path(state_dir) / "pytest-leases"
    lease = leases / str(os.getpid())
    try:
        leases.mkdir(parents=True, exist_ok=True)
        with open(leases / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                lease.write_text("")
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        pass
    try:
        yield
    finally:
        lease.unlink(missing_ok=True)


# --------------------------------------------------------------------------- deployment


class Deployment:
    """One isolated deployment of the product on the local stack.

    ``clickstream``: an existing input topic to consume (shared, not deleted on close);
    None creates ``bench.<id>.click`` with ``partitions`` partitions. ``env`` adds
    overrides (e.g. ``INTENTSTREAM_SESSIONS__ALLOWED_LATENESS_S``).
    """

    def __init__(self, name: str, clickstream: str | None = None, partitions: int | None = None,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        rid = run_id()
        self.id = f"{name}-{rid}"
        base = f"bench.{name}.{rid}"
        self.env = inherited_env()
        self.env.update(
            {
                "INTENTSTREAM_REDIS__KEY_PREFIX": f"bench:{name}:{rid}",
                "INTENTSTREAM_TOPICS__CLICKSTREAM": clickstream or f"{base}.click",
                "INTENTSTREAM_TOPICS__DEAD_LETTER": f"{base}.dlq",
                "INTENTSTREAM_TOPICS__SEGMENTS": f"{base}.segments",
                "INTENTSTREAM_TOPICS__ACTIONS_PREFIX": f"{base}.actions.",
                "INTENTSTREAM_TOPICS__AUDIT": f"{base}.audit",
                "INTENTSTREAM_TOPICS__METRICS": f"{base}.metrics",
                "INTENTSTREAM_TOPICS__ALERTS": f"{base}.alerts",
                "INTENTSTREAM_WORKER__APP_ID": f"bench-{name}-{rid}",
                "INTENTSTREAM_WORKER__LOG_LEVEL": "warning",
            }
        )
        if partitions is not None:
            self.env["INTENTSTREAM_TOPICS__PARTITIONS"] = str(partitions)
        self.env.update(env or {})
        self.settings: Settings = load_settings(env=self.env)
        self.owns_clickstream = clickstream is None
        self.group = self.settings.worker.app_id
        self.prefix = self.settings.redis.key_prefix
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.procs: list[subprocess.Popen] = []
        self.created: list[str] = []

    # -- topics --

    def create_topics(self) -> None:
        """Every product topic of this deployment (the input too, unless shared), retention.ms=-1."""
        from intentstream.agents.admin import ensure_topics, product_topics

        wanted = product_topics(self.settings)
        if not self.owns_clickstream:
            wanted.pop(self.settings.topics.clickstream, None)
        ensure_topics(self.settings, wanted, configs=TOPIC_CONFIGS)
        self.created += list(wanted)

    # -- processes --

    def start(self, kind: str = "full", extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``intentstream worker`` (``full``), the bare Faust app (``bare``) or the
        full worker with timers (``timed``)."""
        env = {**self.env, "INTENTSTREAM_WORKER__WEB_PORT": str(free_port()), **(extra_env or {})}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        if kind == "full":
            cmd = [sys.executable, "-m", "intentstream.stream.cli", "worker", "--loglevel", "warning"]
        elif kind == "bare":
            cmd = [sys.executable, "-m", "bench.bare_app"]
        elif kind == "timed":  # the full worker with wall-clock accounting (bench/_timed_worker.py)
            cmd = [sys.executable, "-m", "bench._timed_worker"]
        else:
            raise ValueError(kind)
        log = open(self.tmp / f"{kind}{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(cmd, env=env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        log.close()
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.id}: worker pid {proc.pid} exited with {proc.returncode}:\n{self.logs()}")

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}" for p in sorted(self.tmp.glob("*.log")))

    def stop(self) -> None:
        """Kill every worker's process group (SIGKILL: nothing to keep from a bench run)."""
        for proc in self.procs:
            stop_process(proc)

    # -- teardown --

    def close(self) -> None:
        """Stop workers; delete created topics, the consumer group and the Redis keys."""
        self.stop()
        try:
            from intentstream.agents.kafka import admin_client

            admin = admin_client(self.settings)
            try:
                if self.created:
                    admin.delete_topics(self.created, timeout_ms=30000, raise_errors=False)
                try:
                    admin.delete_groups([self.group])
                except Exception:
                    pass
            finally:
                admin.close()
        except Exception as exc:  # cleanup must never hide the result
            print(f"(cleanup of {self.id} topics failed: {exc!r})", file=sys.stderr)
        try:
            delete_prefix(redis_client(self.settings), self.prefix)
        except Exception as exc:
            print(f"(cleanup of {self.id} redis keys failed: {exc!r})", file=sys.stderr)
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def stop_process(proc: subprocess.Popen, grace_s: float = 0.0) -> None:
    if proc.poll() is not None:
        return
    try:
        if grace_s > 0:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
                return
            except subprocess.TimeoutExpired:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


# --------------------------------------------------------------------------- kafka


def create_topic(settings: Settings, topic: str, partitions: int) -> None:
    from intentstream.agents.admin import ensure_topics

    ensure_topics(settings, {topic: partitions}, configs=TOPIC_CONFIGS)


def delete_topics(settings: Settings, topics: Sequence[str]) -> None:
    from intentstream.agents.kafka import admin_client

    if not topics:
        return
    admin = admin_client(settings)
    try:
        admin.delete_topics(list(topics), timeout_ms=30000, raise_errors=False)
    finally:
        admin.close()


def produce(settings: Settings, topic: str, records: Iterable[tuple[bytes, bytes, int | None]], **overrides: Any) -> int:
    """Send (key, value, timestamp ms) records as fast as the producer takes them; flush."""
    from intentstream.agents.kafka import make_producer

    producer = make_producer(settings, **overrides)
    n = 0
    try:
        send = producer.send
        for key, value, ts in records:
            send(topic, value=value, key=key, timestamp_ms=ts)
            n += 1
        producer.flush(timeout=300)
    finally:
        producer.close(timeout=10)
    return n


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    from kafka import TopicPartition

    from intentstream.agents.kafka import make_consumer

    consumer = make_consumer(settings)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        consumer.close()


def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record of ``topic`` from the beginning to its current end (no group)."""
    from kafka import TopicPartition

    from intentstream.agents.kafka import make_consumer

    consumer = make_consumer(settings)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


@dataclass
class CatchUp:
    """Progress of a consumer group over a pre-loaded topic, seen from its committed offsets.

    ``t0``/``c0``: the first poll (after the group was stable with the expected number of
    members) at which some offset was committed, and how many events were committed then;
    ``t1``/``c1``: the first poll at which every partition was committed to its end offset
    (or the last poll before the time budget ran out: ``complete`` is then False);
    ``total``: events in the topic. ``rate`` = (c1 - c0) / (t1 - t0): the events
    processed between two commit observations over the time between them, so worker
    start-up and group joins are not counted. ``cpu``: CPU seconds each watched process
    used between t0 and t1.
    """

    t0: float
    c0: int
    t1: float
    c1: int
    total: int
    started: float
    complete: bool = True
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return (self.c1 - self.c0) / max(self.t1 - self.t0, 1e-9)

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0

    def cores(self, name: str) -> float:
        return self.cpu.get(name, 0.0) / max(self.seconds, 1e-9)


def wait_caught_up(d: Deployment, ends: dict[int, int], members: int = 1, timeout_s: float = 300.0,
                   poll_s: float = 0.05, watch: dict[str, list[int]] | None = None,
                   partial_ok: bool = False, on_poll: Callable[[float, int], None] | None = None) -> CatchUp:  # fmt: skip
    """Poll the group's committed offsets (and, until it is stable with ``members``
    members, its description) until they reach ``ends``; see :class:`CatchUp`.

    ``watch``: name -> pids whose CPU time is taken at t0 and t1. After ``timeout_s``
    raise TimeoutError, or with ``partial_ok`` return what was reached (``complete``
    False; t0 unset yet also raises). ``on_poll(now, committed)`` is called each poll."""
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    from intentstream.agents.kafka import admin_client

    topic = d.settings.topics.clickstream
    total = sum(ends.values())
    tps = [TopicPartition(topic, p) for p in sorted(ends)]
    watch = watch or {}
    admin = admin_client(d.settings)
    started = time.monotonic()
    stable = False
    t0 = c0 = None
    cpu0: dict[str, float] = {}
    last = (started, 0)

    def cpu_now() -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in watch.items()}

    try:
        while True:
            now = time.monotonic()
            if now - started > timeout_s:
                if partial_ok and t0 is not None:
                    cpu1 = cpu_now()
                    return CatchUp(t0, c0, last[0], last[1], total, started, False, {k: cpu1[k] - cpu0[k] for k in cpu1})
                raise TimeoutError(f"{d.id}: not caught up within {timeout_s:.0f}s\n{d.logs()}")
            d.check_alive()
            if not stable:
                stable = _group_stable(admin, d.group, members)
            try:
                found = admin.list_group_offsets({d.group: tps}).get(d.group, {})
            except KafkaError as exc:  # e.g. no coordinator yet for a new group, or one moving
                if not exc.retriable:
                    raise
                time.sleep(poll_s)
                continue
            now = time.monotonic()
            done = {tp.partition: max(0, om.offset) for tp, om in found.items() if om is not None and om.offset is not None}
            committed = sum(min(done.get(p, 0), end) for p, end in ends.items())
            if t0 is None and stable and committed > 0:
                t0, c0, cpu0 = now, committed, cpu_now()
            last = (now, committed)
            if on_poll is not None:
                on_poll(now, committed)
            if committed >= total:
                if t0 is None or now - t0 < 1.0:
                    raise RuntimeError(f"{d.id}: all {total:,} events were consumed before (or within 1s of) the group "
                                       f"being stable with {members} member(s): too few events to time")  # fmt: skip
                cpu1 = cpu_now()
                return CatchUp(t0, c0, now, committed, total, started, True, {k: cpu1[k] - cpu0[k] for k in cpu1})
            time.sleep(poll_s)
    finally:
        admin.close()


def _group_stable(admin: Any, group: str, members: int) -> bool:
    try:
        info = admin.describe_groups([group]).get(group) or {}
    except Exception:
        return False
    state = str(info.get("group_state") or info.get("state") or "")
    return state.lower() == "stable" and len(info.get("members") or ()) >= members


# --------------------------------------------------------------------------- redis


def redis_client(settings: Settings) -> Any:
    from intentstream.stream.state.redis.client import make_client

    return make_client(settings.redis, socket_timeout_s=30)


def prefix_keys(client: Any, prefix: str) -> list[bytes]:
    return list(client.scan_iter(match=f"{prefix}:*", count=10000))


def delete_prefix(client: Any, prefix: str) -> int:
    keys = prefix_keys(client, prefix)
    for i in range(0, len(keys), 2000):
        client.unlink(*keys[i : i + 2000])
    return len(keys)


def memory_usage(client: Any, keys: Sequence[bytes], chunk: int = 2000) -> list[int]:
    """``MEMORY USAGE key SAMPLES 0`` of each key (0 for keys gone meanwhile)."""
    out: list[int] = []
    for i in range(0, len(keys), chunk):
        pipe = client.pipeline(transaction=False)
        for k in keys[i : i + chunk]:
            pipe.memory_usage(k, samples=0)
        out += [v or 0 for v in pipe.execute()]
    return out


# --------------------------------------------------------------------------- process memory


def rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in bytes: psutil if installed, else /proc."""
    try:
        import psutil  # type: ignore[import-not-found]

        info = psutil.Process(pid).memory_info()
        peak = getattr(info, "peak_wset", None) or _proc_status(pid).get("VmHWM", info.rss)
        return int(info.rss), int(peak)
    except ImportError:
        pass
    status = _proc_status(pid)
    return status.get("VmRSS", 0), status.get("VmHWM", 0)


def _proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[name] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def settings_for(env: dict[str, str] | None = None) -> Settings:
    return load_settings(env={**inherited_env(), **(env or {})})
