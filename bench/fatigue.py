"""Fatigue ledger throughput: decisions/s on the in-memory store and on Redis (one EVALSHA
per decision, or pipelined), each Redis case beside a same-run baseline: a trivial Lua
script (``return 1``) called the same way, i.e. the round-trip and EVALSHA floor.

    python -m bench.fatigue [--n 10000] [--users 2000] [--repeats 5] [--redis-url URL]

Redis defaults to ``[redis] url`` of the settings; the cases are skipped when it does not
answer. Every repeat uses a fresh key prefix (deleted afterwards), so each starts empty.
"""

from __future__ import annotations

import argparse
import random
import uuid

from bench.common import Result, measure_rate, print_table, redis_client
from intentstream.stream.decisions.decider import Decider, TriggerHit
from intentstream.stream.decisions.fatigue import Candidate, FatigueLedger
from intentstream.stream.state.fatigue import HOUR_MS
from intentstream.stream.state.memory import MemoryLedgerStore
from intentstream.stream.decisions.strategies import load_catalogue

T0 = 1767607200000  # 2026-01-05T10:00Z
TRIGGERS = ("cart_abandoned", "payment_stalled", "kyc_stalled", "kyc_rejected", "churn_risk",
            "first_transaction_nudge", "coupon_interest")  # fmt: skip
ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Shanghai")


def workload(n: int, users: int, seed: int = 1) -> list[TriggerHit]:
    """``n`` trigger hits on ``users`` users over about two weeks, in time order."""
    rng = random.Random(seed)
    step = max(1, 14 * 24 * HOUR_MS // n)
    return [
        TriggerHit(
            f"user-{rng.randrange(users)}",
            rng.choice(TRIGGERS),
            T0 + i * step,
            (f"e{i}",),
            facts={"amount": 49.9, "currency": "USD", "item_id": "SKU-1042"},
            tz=rng.choice(ZONES),
            opt_outs=frozenset(["sms"]) if rng.random() < 0.1 else frozenset(),
        )
        for i in range(n)
    ]


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000, help="decisions per run")
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pipeline", type=int, default=256, help="requests per pipelined round trip")
    ap.add_argument("--redis-url", default=None)
    args = ap.parse_args(argv)

    catalogue = load_catalogue()
    hits = workload(args.n, args.users)
    proto = Decider(catalogue, FatigueLedger(MemoryLedgerStore()))
    prepared = [proto.prepare(h) for h in hits]  # (Candidate, draft) pairs
    cands: list[Candidate] = [c for c, _ in prepared]

    def mem_ledger() -> int:
        ledger = FatigueLedger(MemoryLedgerStore())
        for c in cands:
            ledger.check(c)
        return len(cands)

    def mem_decider() -> int:
        Decider(catalogue, FatigueLedger(MemoryLedgerStore())).decide_many(hits)
        return len(hits)

    results = [
        Result("memory: FatigueLedger.check", "decisions/s", measure_rate(mem_ledger, args.repeats)),
        Result(
            "memory: Decider (strategy, render, ledger, Decision)",
            "decisions/s",
            measure_rate(mem_decider, args.repeats),
            "memory: FatigueLedger.check",
        ),
    ]

    client = redis_client(args.redis_url)
    if client is None:
        print_table(f"Fatigue ledger, {args.n:,} decisions, {args.users:,} users (Redis not reachable)", results)
        return results

    from intentstream.stream.state.redis.fatigue import RedisLedgerStore

    trivial = client.script_load("return 1")

    def fresh_store() -> RedisLedgerStore:
        store = RedisLedgerStore(client, f"bench.fatigue.{uuid.uuid4().hex[:10]}", pipeline_size=args.pipeline)
        store.load_script()
        prefixes.append(store.prefix)
        return store

    prefixes: list[str] = []

    def cleanup() -> None:
        for p in prefixes:
            batch = list(client.scan_iter(match=f"{p}:*", count=5000))
            for i in range(0, len(batch), 5000):
                client.delete(*batch[i : i + 5000])
        prefixes.clear()

    def base_single() -> int:
        for c in cands:
            client.evalsha(trivial, 1, c.user_id)
        return len(cands)

    def base_pipe() -> int:
        for i in range(0, len(cands), args.pipeline):
            pipe = client.pipeline(transaction=False)
            for c in cands[i : i + args.pipeline]:
                pipe.evalsha(trivial, 1, c.user_id)
            pipe.execute()
        return len(cands)

    def redis_single() -> int:
        ledger = FatigueLedger(fresh_store())
        for c in cands:
            ledger.check(c)
        return len(cands)

    def redis_pipe() -> int:
        FatigueLedger(fresh_store()).check_many(cands)
        return len(cands)

    def redis_decider() -> int:
        Decider(catalogue, FatigueLedger(fresh_store())).decide_many(hits)
        return len(hits)

    try:
        base1 = "redis: EVALSHA 'return 1', one per call (baseline)"
        basep = f"redis: EVALSHA 'return 1', pipelined x{args.pipeline} (baseline)"
        results += [
            Result(base1, "calls/s", measure_rate(base_single, args.repeats)),
            Result("redis: ledger, one EVALSHA per decision", "decisions/s", measure_rate(redis_single, args.repeats), base1),
            Result(basep, "calls/s", measure_rate(base_pipe, args.repeats)),
            Result(f"redis: ledger, pipelined x{args.pipeline}", "decisions/s", measure_rate(redis_pipe, args.repeats), basep),
            Result(
                f"redis: Decider, pipelined x{args.pipeline}",
                "decisions/s",
                measure_rate(redis_decider, args.repeats),
                basep,
            ),
        ]
    finally:
        cleanup()
        client.close()
    print_table(f"Fatigue ledger, {args.n:,} decisions, {args.users:,} users", results)
    return results


if __name__ == "__main__":
    main()
