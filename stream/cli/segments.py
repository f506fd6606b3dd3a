"""``intentstream segments FILE --out SEGMENTS.jsonl``: sessions and intent segments offline.

The live worker's engine on a file (:mod:`intentstream.stream.engine.offline`): one closed
segment per line, the bytes the worker would publish on ``segments``, in the order they
close; byte-identical for the same input and settings. ``--close-open`` also closes
every session still open at the end (live has no equivalent). Malformed lines are
counted by reason on stderr and, with ``--dead-letter FILE``, written there. Input far
out of event-time order stops it unless ``--sort`` or ``--allow-disorder``
(:mod:`intentstream.stream.cli.offline_files`).
"""

from __future__ import annotations

import argparse
import time

from intentstream.stream.cli.offline_files import add_order_args, drive, offline_runner, summary
from intentstream.stream.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segments", help="cut a JSONL clickstream into sessions and intent segments (offline)")
    p.add_argument("file", help="JSONL file, or - for standard input")
    p.add_argument("--out", required=True, metavar="SEGMENTS.jsonl", help="output: one segment per line (- for stdout)")
    p.add_argument("--partitions", type=int, help="simulated Kafka partitions (default: [topics] partitions)")
    p.add_argument("--batch-size", type=int, help="events per engine step (default: [sessions] batch_size)")
    p.add_argument("--dead-letter", metavar="FILE", help="write rejected lines here (JSONL, with reason and raw text)")
    p.add_argument("--close-open", action="store_true", help="also close sessions still open at the end of the file")
    add_order_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    runner = offline_runner(args, settings, args.partitions, args.batch_size)
    started = time.perf_counter()
    for _ in drive(args, runner, settings.topics.segments, close_open=args.close_open):
        pass
    summary(runner, time.perf_counter() - started)
    return 0
