"""Offline replay throughput (``intentstream replay --offline``: the worker's engine with
in-memory state) on two shapes of input, each next to the same run's ``parse_event``
baseline (what reading the events alone costs):

1. ``generated`` — ``intentstream generate``: a few hundred events per user over days;
2. ``high-cardinality`` — shaped like a public e-commerce log: ~60,000 users, ~110,000
   events in 2 hours, events per user long-tailed (Pareto, median 1), mostly page views
   with carts, checkouts and purchases.

Each case prints its target (issue 14: 60k events/s generated, 40k high-cardinality) and
MET / MISSED.

    python -m bench offline [--users 3000 --days 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bench.common import Result, print_table
from intentstream.stream import codec
from intentstream.stream.contract.events import format_ts, parse_event
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

TARGETS = {"generated": 60_000, "high-cardinality": 40_000}
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
    args = ap.parse_args(argv)
    cases = {
        "generated": [line.rstrip(b"\n") for line in generate_lines(GeneratorConfig(users=args.users, days=args.days, seed=3))],
        "high-cardinality": high_cardinality(),
    }
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
    print_table("Offline replay", results)
    return results


if __name__ == "__main__":
    main()
