"""Offline replay throughput (``intentstream replay --offline``: the worker's engine with
in-memory state) on two shapes of input, each next to the same run's ``parse_event``
baseline (what reading the events alone costs):

1. ``generated`` — ``intentstream generate``: a few hundred events per user over days;
2. ``high-cardinality`` — shaped like a public e-commerce log: ~60,000 users, ~110,000
   events in 2 hours, events per user long-tailed (Pareto, median 1), mostly page views
   with carts, checkouts and purchases.

3. ``memory`` — peak memory of an offline replay at ``--memory-users`` distinct users
   (default 1,000,000; the same long-tailed shape, capped at 8 events per user, spread
   over ``--memory-hours``), generated lazily in event-time order so the input costs no
   memory: peak RSS (``VmHWM``) of a fresh process minus its RSS just before the run,
   per user. Run in a child process so the other cases' allocations do not count.

Each case prints its target (issue 14: 60k events/s generated, 40k high-cardinality,
2 KB per user at 1M users) and MET / MISSED.

    python -m bench offline [--users 3000 --days 10] [--repeats 3] [--cases generated,high-cardinality,memory]
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

from bench._harness import rss_bytes
from bench.common import Result, print_table
from intentstream.stream import codec
from intentstream.stream.contract.events import format_ts, parse_event
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.settings import load_settings
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

TARGETS = {"generated": 60_000, "high-cardinality": 40_000}
MEMORY_TARGET_B = 2048  # peak bytes per distinct user
CASES = ("generated", "high-cardinality", "memory")
START = 1767607200000  # 2026-01-05T10:00Z


def high_cardinality(users: int = 60_000, hours: float = 2.0, seed: int = 5) -> list[bytes]:
    """A long-tailed trace: each user's events in one short visit, sorted by time."""
    rng = random.Random(seed)
    span = int(hours * 3_600_000)
    rows = []
    for u in range(users):
        n = min(300, int(rng.paretovariate(2.2)))
        t = START + rng.randrange(span)
        for i in range(n):
            r = rng.random()
            typ = "page_view" if r < 0.8 else "add_to_cart" if r < 0.9 else "checkout_start" if r < 0.95 else "payment_success"
            ev = {"event_id": f"h{u}-{i}", "user_id": f"hc{u:06d}", "ts": format_ts(t), "type": typ}
            if typ == "payment_success":
                ev["amount"], ev["currency"] = round(5 + rng.random() * 200, 2), "USD"
            rows.append((t, codec.dumps(ev)))
            t += rng.randrange(5_000, 120_000)
    rows.sort(key=lambda r: r[0])
    return [line for _, line in rows]


def long_tail_stream(users: int, hours: float, seed: int = 11, cap: int = 8) -> Iterator[bytes]:
    """Like :func:`high_cardinality` but lazy and in event-time order (a heap of each
    user's next event), so a million users cost no input memory."""
    rng = random.Random(seed)
    span = int(hours * 3_600_000)
    starts = sorted(START + rng.randrange(span) for _ in range(users))
    heap: list[tuple[int, int, int, int]] = []  # (ts, user, index, events left)
    nxt = 0
    while heap or nxt < users:
        if nxt < users and (not heap or starts[nxt] <= heap[0][0]):
            heapq.heappush(heap, (starts[nxt], nxt, 0, min(cap, int(rng.paretovariate(2.2)))))
            nxt += 1
            continue
        t, u, i, n = heapq.heappop(heap)
        r = rng.random()
        typ = "page_view" if r < 0.8 else "add_to_cart" if r < 0.9 else "checkout_start" if r < 0.95 else "payment_success"
        ev = {"event_id": f"m{u}-{i}", "user_id": f"mu{u:07d}", "ts": format_ts(t), "type": typ}
        if typ == "payment_success":
            ev["amount"], ev["currency"] = round(5 + rng.random() * 200, 2), "USD"
        yield codec.dumps(ev)
        if i + 1 < n:
            heapq.heappush(heap, (t + rng.randrange(5_000, 120_000), u, i + 1, n))


def memory_child(users: int, hours: float) -> dict[str, float]:
    """In a fresh process: peak RSS growth of one offline replay of ``users`` users."""
    stream = long_tail_stream(users, hours)
    # one process, so its peak is the run's (forked jobs would split the state between them)
    runner = OfflineRunner(load_settings(env={"INTENTSTREAM_SESSIONS__OFFLINE_JOBS": "1"}))
    before = rss_bytes(os.getpid())[0]
    started = time.perf_counter()
    outputs = 0
    for _ in runner.run(((i, line) for i, line in enumerate(stream, 1))):
        outputs += 1
    events = runner.counters["events"]
    elapsed = time.perf_counter() - started
    peak = rss_bytes(os.getpid())[1]
    return {"users": users, "events": events, "outputs": outputs, "seconds": elapsed,
            "rss_before": before, "peak": peak, "per_user": (peak - before) / users}


def memory_case(users: int, hours: float) -> list[Result]:
    code = f"import json; from bench.offline import memory_child; print(json.dumps(memory_child({users}, {hours})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"memory case failed:\n{proc.stderr[-2000:]}", flush=True)
        return []
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    per_user = m["per_user"]
    verdict = "MET" if per_user <= MEMORY_TARGET_B else "MISSED"
    print(f"memory: {m['users']:,} users, {m['events']:,} events in {m['seconds']:.0f} s "
          f"({m['events'] / m['seconds']:,.0f} events/s); RSS {m['rss_before'] / 2**20:,.0f} MB before, "
          f"peak {m['peak'] / 2**20:,.0f} MB: {per_user:,.0f} B per user; target {MEMORY_TARGET_B:,} B: {verdict}", flush=True)
    return [Result(f"offline replay peak memory, {m['users']:,} users", "B/user", [per_user])]


def _rate(fn, n: int, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(n / (time.perf_counter() - started))
    return out


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser(prog="python -m bench.offline")
    ap.add_argument("--users", type=int, default=3000, help="generated users (default %(default)s)")
    ap.add_argument("--days", type=int, default=10, help="generated days (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--memory-users", type=int, default=1_000_000, help="distinct users of the memory case (default %(default)s)")
    ap.add_argument("--memory-hours", type=float, default=24.0, help="hours the memory case's users spread over (default %(default)s)")
    args = ap.parse_args(argv)
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    if set(chosen) - set(CASES):
        ap.error(f"unknown case(s): {', '.join(sorted(set(chosen) - set(CASES)))}")
    cases: dict[str, list[bytes]] = {}
    if "generated" in chosen:
        cases["generated"] = [line.rstrip(b"\n") for line in generate_lines(GeneratorConfig(users=args.users, days=args.days, seed=3))]
    if "high-cardinality" in chosen:
        cases["high-cardinality"] = high_cardinality()
    results = []
    for name, lines in cases.items():
        users = len({codec.loads(x)["user_id"] for x in lines})
        print(f"{name}: {len(lines):,} events, {users:,} users", flush=True)
        base = f"parse_event alone, {name}"
        results.append(Result(base, "events/s", _rate(lambda: [parse_event(x) for x in lines], len(lines), args.repeats)))
        rates = _rate(lambda: sum(1 for _ in OfflineRunner().run(enumerate(lines, 1))), len(lines), args.repeats)
        results.append(Result(f"offline replay, {name}", "events/s", rates, base))
        median = statistics.median(rates)
        verdict = "MET" if median >= TARGETS[name] else "MISSED"
        print(f"  offline replay {median:,.0f} events/s; target {TARGETS[name]:,}: {verdict}", flush=True)
    if "memory" in chosen:
        results += memory_case(args.memory_users, args.memory_hours)
    print_table("Offline replay", results)
    return results


if __name__ == "__main__":
    main()
