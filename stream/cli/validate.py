"""``intentstream validate FILE``: check a JSONL clickstream against the event contract.

Also reports the input's event-time disorder with its sample size — the share of events
the engine would count as late on ``[topics] partitions`` partitions
(:mod:`intentstream.stream.engine.disorder`) — and whether the commands that run the
engine would stop on it; validate itself never does."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from intentstream.stream import codec
from intentstream.stream.contract.dead_letter import dead_letter_record, iter_lines
from intentstream.stream.contract.events import Event, parse_event
from intentstream.stream.engine.disorder import DisorderMeter
from intentstream.stream.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a JSONL clickstream against the event contract")
    p.add_argument("file", help="JSONL file, or - for standard input")
    p.add_argument("--dead-letter", metavar="FILE", help="write rejected lines here (JSONL, with reason and raw text)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    meter = DisorderMeter.from_settings(settings, settings.topics.partitions, stop=False)
    fh = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    dlq = open(args.dead_letter, "wb") if args.dead_letter else None
    reasons: Counter[str] = Counter()
    valid = 0
    started = time.perf_counter()
    with fh:
        for lineno, raw in iter_lines(fh):
            result = parse_event(raw)
            if isinstance(result, Event):
                valid += 1
                meter.observe_user(result.user_id, result.ts_ms)
                continue
            reasons[result.reason] += 1
            if dlq:
                dlq.write(codec.dumps_line(dead_letter_record(raw, result, f"{args.file}:{lineno}")))
    if dlq:
        dlq.close()
    elapsed = time.perf_counter() - started
    total = valid + sum(reasons.values())
    print(f"{total} lines, {valid} valid, {total - valid} rejected in {elapsed:.2f}s ({total / max(elapsed, 1e-9):,.0f} lines/s)")
    for reason, n in sorted(reasons.items()):
        print(f"  {reason:<20} {n}")
    print(meter.summary())
    return 0
