"""``intentstream replay FILE --offline --out DECISIONS.jsonl``: what a policy would have sent.

The whole engine in-process on event time, with the in-memory store: the same
:class:`~stream.offline.OfflineRunner` (simulated partitions, end-of-file watermark) as
``intentstream segments``, so the decisions equal the live worker's for the same input
and settings. Every decision — sent, deferred, suppressed, holdout — is written in the
output contract, one JSON object per line, in the order the engines made them.
Malformed lines are counted on stderr (and written to ``--dead-letter FILE``), never
fatal; the exit status is 0 when the file was read through. Same input and config,
byte-identical output.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import BinaryIO

from stream import codec
from stream.offline import OfflineRunner
from stream.settings import load_settings
from stream.validate import iter_lines


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    runner = OfflineRunner(settings, args.partitions)
    runner.source = args.file
    audit = settings.topics.audit
    by_outcome: Counter[tuple[str, str, str]] = Counter()
    try:
        fh: BinaryIO = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    except OSError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    out: BinaryIO = sys.stdout.buffer if args.out in (None, "-") else open(args.out, "wb")
    runner.dead_letter = open(args.dead_letter, "wb") if args.dead_letter else None
    started = time.perf_counter()
    try:
        with fh:
            for topic, payload in runner.run(iter_lines(fh)):
                if topic == audit:
                    out.write(payload + b"\n")
                    d = codec.loads(payload)
                    by_outcome[(d["trigger"], d["status"], d["reason"] or "-")] += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        if runner.dead_letter is not None:
            runner.dead_letter.close()
    elapsed = time.perf_counter() - started
    c = runner.counters
    rejected = sum(runner.invalid.values())
    lines = c["events"] + rejected
    print(
        f"{lines} lines, {c['events']} events ({c['late']} late, {c['duplicates']} duplicates), {rejected} rejected, "
        f"{c['segments']} segments, {c['decisions']} decisions, {elapsed:.2f}s ({lines / max(elapsed, 1e-9):,.0f} events/s)",
        file=sys.stderr,
    )
    for reason, n in sorted(runner.invalid.items()):
        print(f"  rejected {reason:<20} {n}", file=sys.stderr)
    if by_outcome:
        print(f"  {'trigger':<24} {'status':<11} {'reason':<12} {'count':>7}", file=sys.stderr)
        for (trigger, status, reason), n in sorted(by_outcome.items()):
            print(f"  {trigger:<24} {status:<11} {reason:<12} {n:>7}", file=sys.stderr)
    return 0
