"""The driver of the offline file commands (``segments`` and ``replay --offline``):
a JSONL file through the :class:`~intentstream.stream.engine.offline.OfflineRunner`,
one topic's payloads to a file, rejected lines to a dead-letter file, counts on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import BinaryIO

from intentstream.stream.contract.dead_letter import iter_lines
from intentstream.stream.engine.offline import OfflineRunner


def drive(args: argparse.Namespace, runner: OfflineRunner, keep: str, close_open: bool = False) -> Iterator[bytes]:
    """Run ``args.file`` through ``runner``, writing the payloads of topic ``keep`` to
    ``args.out`` (``-`` or None: stdout) and rejected lines to ``args.dead_letter``;
    yields each kept payload (for the caller's tallies). Shared by ``segments`` and
    ``replay --offline``. Raises OSError when the input cannot be opened."""
    runner.source = args.file
    fh: BinaryIO = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    out: BinaryIO = sys.stdout.buffer if args.out in (None, "-") else open(args.out, "wb")
    runner.dead_letter = open(args.dead_letter, "wb") if args.dead_letter else None
    try:
        with fh:
            for topic, payload in runner.run(iter_lines(fh), close_open=close_open):
                if topic == keep:
                    out.write(payload + b"\n")
                    yield payload
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        if runner.dead_letter is not None:
            runner.dead_letter.close()


def summary(runner: OfflineRunner, elapsed: float) -> None:
    """The run's counts on stderr: lines, events, late, duplicates, rejections by reason."""
    c = runner.counters
    rejected = sum(runner.invalid.values())
    lines = c["events"] + rejected
    print(
        f"{lines} lines, {c['events']} events ({c['late']} late, {c['duplicates']} duplicates), "
        f"{rejected} rejected, {c['segments']} segments, {c['decisions']} decisions, {runner.partitions} partitions, "
        f"{elapsed:.2f}s ({lines / max(elapsed, 1e-9):,.0f} events/s)",
        file=sys.stderr,
    )
    for reason, n in sorted(runner.invalid.items()):
        print(f"  rejected {reason:<20} {n}", file=sys.stderr)
