"""``intentstream generate``: write a deterministic synthetic clickstream (JSONL) and, with
``--truth``, its ground truth. The generator is :mod:`intentstream.stream.synth.clickstream`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import BinaryIO, Iterator

from intentstream.stream import codec
from intentstream.stream.cli import positive_int, share
from intentstream.stream.cli.terminal import error
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import ORDERS, GenerationStats, GeneratorConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="write a deterministic synthetic clickstream (JSONL) with planted personas and journeys",
        description="Write a deterministic synthetic clickstream with planted personas and journeys; "
        "the same arguments always give byte-identical output.",
    )
    p.add_argument("--users", type=positive_int, required=True, help="number of users")
    p.add_argument("--days", type=positive_int, required=True, help="length of the window in days")
    p.add_argument("--seed", type=int, required=True, help="random seed")
    p.add_argument("--out", required=True, metavar="FILE", help="JSONL output, or - for standard output")
    p.add_argument("--start", default=GeneratorConfig.start, help="start of the window, ISO-8601 (default %(default)s)")
    p.add_argument("--late-share", type=share, default=GeneratorConfig.late_share, help="share of events delivered late (default %(default)s)")
    p.add_argument("--duplicate-share", type=share, default=GeneratorConfig.duplicate_share, help="share of events delivered twice (default %(default)s)")
    p.add_argument("--invalid-share", type=share, default=GeneratorConfig.invalid_share, help="invalid lines per event (default %(default)s)")
    p.add_argument("--retry-share", type=share, default=GeneratorConfig.retry_share, help="share of events uploaded again 1 min to 24 h later with a new event id, same ts and content (default %(default)s)")
    p.add_argument("--flush-share", type=share, default=GeneratorConfig.flush_share, help="share of sessions whose phone events arrive hours later in one burst, as from a phone back online (default %(default)s)")
    p.add_argument("--flush-hours", type=hour_range, default=GeneratorConfig.flush_hours, metavar="LO-HI", help="how much later a flushed burst arrives, in hours (default 1-48)")
    p.add_argument("--cross-device-share", type=share, default=GeneratorConfig.cross_device_share, help="share of sessions that continue on a second device with its own clock skew (default %(default)s)")
    p.add_argument("--order", choices=ORDERS, default=GeneratorConfig.order, help="time: delivery order; user: a dump grouped by user id (default %(default)s)")
    p.add_argument("--truth", metavar="FILE", help="write the ground truth here (JSONL, one user a line)")
    p.set_defaults(func=run)


def hour_range(text: str) -> tuple[float, float]:
    """argparse type: ``LO-HI`` hours (or one number for both), 0 < LO <= HI."""
    lo, _, hi = text.partition("-")
    try:
        low, high = float(lo), float(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be hours LO-HI, e.g. 1-48: {text}") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"must be 0 < LO <= HI: {text}")
    return low, high


def _write(fh: BinaryIO, lines: Iterator[bytes]) -> None:
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= 4096:
            fh.write(b"".join(batch))
            batch.clear()
    fh.write(b"".join(batch))


def run(args: argparse.Namespace) -> int:
    try:
        cfg = GeneratorConfig(
            users=args.users,
            days=args.days,
            seed=args.seed,
            start=args.start,
            late_share=args.late_share,
            duplicate_share=args.duplicate_share,
            invalid_share=args.invalid_share,
            retry_share=args.retry_share,
            flush_share=args.flush_share,
            flush_hours=args.flush_hours,
            cross_device_share=args.cross_device_share,
            order=args.order,
        )
    except ValueError as exc:
        return error("generate", exc)
    stats = GenerationStats(collect_truth=bool(args.truth))
    started = time.perf_counter()
    if args.out == "-":
        _write(sys.stdout.buffer, generate_lines(cfg, stats))
        sys.stdout.buffer.flush()
    else:
        with open(args.out, "wb") as fh:
            _write(fh, generate_lines(cfg, stats))
    if args.truth:
        with open(args.truth, "wb") as fh:
            _write(fh, (codec.dumps_line(record) for record in stats.truth_records()))
    elapsed = time.perf_counter() - started
    print(stats.summary(), file=sys.stderr)
    print(f"{elapsed:.2f}s, {stats.lines / max(elapsed, 1e-9):,.0f} lines/s", file=sys.stderr)
    return 0
