"""Sessionizer throughput, memory and Redis footprint, against parse-only in the same run.

    python -m bench.sessions [--users 20000] [--days 1] [--batch 500] [--repeats 3] [--redis-url URL]

Cases (each the whole partitioned stream, one engine per simulated Kafka partition; the
engine parses every line itself, so "vs baseline" is the share of the parse-only rate
that is left once sessions, segments and state are added):

* ``parse_event only`` — the baseline;
* the engine on the in-memory store, batches of ``--batch`` and of 10x that; and the
  same on events parsed beforehand (the sessionizer alone, as the offline runner, which
  parses each line once to find its partition, calls it);
* the engine on Redis, batches of ``--batch``, with its state cache (the live worker) and
  without it (every state read back from Redis: the cost after a rebalance).

Then, outside the timed runs: peak Python memory of the in-memory run (tracemalloc), and
on Redis the ``MEMORY USAGE`` of the state key of a sample of *active* users (with an
open session, taken mid-stream) and the ``INFO used_memory`` growth per user key.
Redis cases are skipped when the server does not answer (``python -m bench`` starts
the local stack first). Targets: 100k events/s in memory, 30k events/s with Redis,
2 KB of Redis per active user.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Callable

from bench.common import Result, measure_rate, print_table, redis_client
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.contract.events import parse_event
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig
from intentstream.stream.engine.partitioning import partition_for
from intentstream.stream.settings import load_settings
from intentstream.stream.state.memory import MemorySessionStore


def split(lines: list[bytes], partitions: int) -> list[list[bytes]]:
    """Lines per partition, in file order (the user -> partition map is computed once)."""
    where: dict[str, int] = {}
    parts: list[list[bytes]] = [[] for _ in range(partitions)]
    for raw in lines:
        ev = parse_event(raw)
        if not ev:
            continue
        p = where.get(ev.user_id)
        if p is None:
            p = where[ev.user_id] = partition_for(ev.user_id.encode(), partitions)
        parts[p].append(raw)
    return parts


def run_engines(parts: list[list[bytes]] | list[list[tuple]], make_store: Callable[[], object], batch: int, cache: int | None = None,
                stop_at: float = 1.0, on_stop: Callable[[list[PartitionEngine]], None] | None = None) -> int:  # fmt: skip
    """Feed each partition's lines in batches, round robin over partitions; flush at the end.

    ``stop_at`` < 1 calls ``on_stop`` once that share of the input is in (mid-stream)."""
    store = make_store()
    engines = [PartitionEngine(store, p, cache_users=cache) for p in range(len(parts))]  # type: ignore[arg-type]
    cursors = [0] * len(parts)
    total = sum(len(x) for x in parts)
    done = 0
    stopped = False
    while done < total:
        for p, lines in enumerate(parts):
            c = cursors[p]
            if c >= len(lines):
                continue
            chunk = lines[c : c + batch]
            if type(chunk[0]) is tuple:  # pre-parsed (raw, event): the offline runner's path
                engines[p].process_parsed([(c + i, raw, ev) for i, (raw, ev) in enumerate(chunk)])
            else:
                engines[p].process([(c + i, raw) for i, raw in enumerate(chunk)])
            engines[p].ack([e.id for e in engines[p].pending_outbox()])  # the agent: publish, then ack
            cursors[p] = c + len(chunk)
            done += len(chunk)
            if on_stop is not None and not stopped and done >= stop_at * total:
                stopped = True
                on_stop(engines)
    for eng in engines:
        eng.flush()
    return total


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None, help="events per engine step (default: [sessions] batch_size)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=None)
    ap.add_argument("--redis-url", default=None)
    args = ap.parse_args(argv)
    settings = load_settings()
    partitions = args.partitions or settings.topics.partitions
    lines = [line.rstrip(b"\n") for line in generate_lines(GeneratorConfig(users=args.users, days=args.days, seed=1))]
    parts = split(lines, partitions)
    n = len(lines)

    def parse_only() -> int:
        for raw in lines:
            parse_event(raw)
        return n

    base = "parse_event only (baseline)"
    results = [Result(base, "events/s", measure_rate(parse_only, args.repeats))]
    b = args.batch or settings.sessions.batch_size
    b10 = b * 10
    results.append(Result(f"engine, memory store, batch {b}", "events/s",
                          measure_rate(lambda: run_engines(parts, MemorySessionStore, b), args.repeats), base))  # fmt: skip
    results.append(Result(f"engine, memory store, batch {b10}", "events/s",
                          measure_rate(lambda: run_engines(parts, MemorySessionStore, b10), args.repeats), base))  # fmt: skip
    parsed = [[(raw, parse_event(raw)) for raw in part] for part in parts]
    results.append(Result(f"sessionizer only (pre-parsed events), memory store, batch {b}", "events/s",
                          measure_rate(lambda: run_engines(parsed, MemorySessionStore, b), args.repeats), base))  # fmt: skip

    # peak memory of the in-memory run (not timed: tracemalloc slows everything down)
    tracemalloc.start()
    run_engines(parts, MemorySessionStore, b)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    users = len({parse_event(raw).user_id for raw in lines})  # type: ignore[union-attr]
    notes = [f"peak traced memory, memory store run: {peak / 1e6:,.1f} MB for {users:,} users, "
             f"{n:,} events ({peak / users:,.0f} B/user incl. the engines' caches and the store's bytes)"]  # fmt: skip

    client = redis_client(args.redis_url)
    if client is None:
        notes.append("redis: not reachable, Redis cases skipped (python -m bench starts the local stack)")
    else:
        from intentstream.stream.state.redis.sessions import RedisSessionStore

        prefixes: list[str] = []

        def redis_store() -> RedisSessionStore:
            prefixes.append(f"bench.{uuid.uuid4().hex[:10]}")
            return RedisSessionStore(client, prefix=prefixes[-1], user_ttl_s=3600)

        def cleanup() -> None:
            while prefixes:
                prefix = prefixes.pop()
                keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
                for i in range(0, len(keys), 1000):
                    client.delete(*keys[i : i + 1000])

        def redis_run(cache: int | None) -> Callable[[], int]:
            def run() -> int:
                try:
                    return run_engines(parts, redis_store, b, cache)
                finally:
                    cleanup()

            return run

        results.append(Result(f"engine, Redis store, batch {b}, state cache", "events/s", measure_rate(redis_run(None), args.repeats), base))
        results.append(Result(f"engine, Redis store, batch {b}, no cache", "events/s", measure_rate(redis_run(0), args.repeats), base))
        notes += redis_footprint(client, parts, redis_store, cleanup, b)
        client.close()

    print_table(f"Sessions and intent segments, {n:,} generated events, {users:,} users, {partitions} partitions", results)
    for note in notes:
        print(f"- {note}")
    return results


def redis_footprint(client, parts, redis_store, cleanup, batch: int) -> list[str]:
    """Mid-stream: MEMORY USAGE of active users' state keys, and used_memory per user key."""
    out: list[str] = []

    def measure(engines: list[PartitionEngine]) -> None:
        store = engines[0].store
        active: list[str] = []
        for p in range(len(engines)):
            active += store.due_users(p, 1 << 62)  # users with an open session or buffered events
        sample = active[:: max(1, len(active) // 1000)]
        usage = [store.memory_usage(u) or 0 for u in sample]
        sizes = [len(store.user_bytes(u) or b"") for u in sample]
        info = client.info("memory")["used_memory"]
        user_keys = sum(1 for _ in client.scan_iter(match=f"{store.prefix}:{{u:*", count=5000))
        usage.sort()
        out.append(
            f"redis MEMORY USAGE per active user state key (sample {len(sample)} of {len(active):,} active): "
            f"median {statistics.median(usage):,.0f} B, p95 {usage[int(0.95 * (len(usage) - 1))]:,} B, max {usage[-1]:,} B; "
            f"serialized state median {statistics.median(sizes):,.0f} B"
        )
        out.append(f"redis used_memory growth: {(info - before) / max(1, user_keys):,.0f} B per user key ({user_keys:,} user keys, all users incl. idle)")

    cleanup()
    before = client.info("memory")["used_memory"]
    started = time.perf_counter()
    run_engines(parts, redis_store, batch, None, stop_at=0.6, on_stop=measure)
    cleanup()
    out.append(f"(footprint run: {time.perf_counter() - started:.0f}s)")
    return out


if __name__ == "__main__":
    main()
