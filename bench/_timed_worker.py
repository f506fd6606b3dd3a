"""``intentstream worker`` with wall-clock accounting, for ``python -m bench worker --profile``.

The real worker (:func:`intentstream.agents.worker.run`), unchanged, with thin timers around the
methods the time goes through: the Faust agent's per-partition step
(``Pipeline.handle``), the engine step in its thread (``PartitionEngine.process``), the
engine's Redis calls (session store and fatigue ledger), the outbox publish
(``Pipeline.publish``: outbox read, Kafka send and acks, outbox ack) and the idle timer
(``Pipeline.tick``). Every 0.25 s the totals are written as JSON to
``$BENCH_TIMING_FILE`` (the benchmark kills the worker with SIGKILL, so no exit hook).
Overhead: a few ``perf_counter`` calls per Redis call and step.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import threading
import time
from collections import defaultdict

TOTALS: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)
_lock = threading.Lock()
_where = threading.local()  # set while an engine step runs in this thread


def _add(key: str, dt: float) -> None:
    with _lock:
        TOTALS[key] += dt
        CALLS[key] += 1


def _wrap(cls: type, name: str, key: str, count_items: bool = False) -> None:
    orig = getattr(cls, name)
    if inspect.iscoroutinefunction(orig):

        @functools.wraps(orig)
        async def awrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return await orig(*args, **kwargs)
            finally:
                _add(key, time.perf_counter() - t)

        setattr(cls, name, awrapper)
        return

    @functools.wraps(orig)
    def wrapper(*args, **kwargs):
        inside = getattr(_where, "step", False)
        label = key if not key.startswith("redis") else f"{key} ({'in engine step' if inside else 'outside'})"
        if count_items:
            _where.step = True
            with _lock:
                TOTALS["events"] += len(args[1])
        t = time.perf_counter()
        try:
            return orig(*args, **kwargs)
        finally:
            _add(label, time.perf_counter() - t)
            if count_items:
                _where.step = False

    setattr(cls, name, wrapper)


def install() -> None:
    from intentstream.agents import worker
    from intentstream.stream.engine.partition import PartitionEngine
    from intentstream.stream.state.redis.fatigue import RedisLedgerStore
    from intentstream.stream.state.redis.sessions import RedisSessionStore

    _wrap(worker.Pipeline, "handle", "agent: Pipeline.handle (lock, engine step, publish)")
    _wrap(worker.Pipeline, "publish", "publish: outbox read + Kafka send/acks + outbox ack")
    _wrap(worker.Pipeline, "tick", "idle timer: Pipeline.tick")
    _wrap(PartitionEngine, "process", "engine step: PartitionEngine.process (thread)", count_items=True)
    for name in ("due_users", "load_users", "commit", "load_partition"):
        _wrap(RedisSessionStore, name, "redis session store")
    for name in ("outbox", "ack_outbox"):
        _wrap(RedisSessionStore, name, "redis outbox")
    for name in ("apply", "apply_many"):
        if hasattr(RedisLedgerStore, name):
            _wrap(RedisLedgerStore, name, "redis fatigue ledger")


def _dump_forever(path: str) -> None:
    while True:
        time.sleep(0.25)
        with _lock:
            snap = {"t": time.monotonic(), "wall": time.time(), "totals": dict(TOTALS), "calls": dict(CALLS)}
        tmp = f"{path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(snap, fh)
        os.replace(tmp, path)


def main() -> int:
    from intentstream.agents.worker import run
    from intentstream.stream.settings import load_settings

    install()
    path = os.environ.get("BENCH_TIMING_FILE")
    if path:
        threading.Thread(target=_dump_forever, args=(path,), daemon=True, name="bench-timing").start()
    settings = load_settings()
    return run(settings, loglevel=settings.worker.log_level)


if __name__ == "__main__":
    main()
