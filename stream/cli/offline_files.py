"""How the file commands read their input, and the driver of the offline file commands.

One reader path for ``segments``, ``replay --offline``, ``report --input`` and
``replay --to-kafka``:

* :func:`add_order_args` registers ``--sort`` and ``--allow-disorder``;
* :func:`open_input` / :func:`read_lines` give the ``(line number, raw line)`` of a file
  or standard input, in file order or, with ``--sort``, by event time
  (:mod:`intentstream.stream.cli.sort_by_time`);
* :func:`offline_runner` and :func:`measured_lines` (``replay --to-kafka``) measure the
  event-time disorder as the lines are read (:mod:`intentstream.stream.engine.disorder`):
  past ``[events] max_late_share`` the command stops with a
  :class:`~intentstream.stream.engine.disorder.DisorderError`, which
  :func:`intentstream.stream.cli.main` prints, exit status 2 — unless ``--allow-disorder``.

:func:`drive` runs a file through the :class:`~intentstream.stream.engine.offline.OfflineRunner`
(``segments`` and ``replay --offline``): one topic's payloads to a file, rejected lines
to a dead-letter file; :func:`summary` prints the counts on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from intentstream.stream.cli import tables
from intentstream.stream.cli.progress import Progress
from intentstream.stream.cli.tables import Block, Table
from intentstream.stream.cli.sort_by_time import sort_by_time
from intentstream.stream.contract.dead_letter import iter_lines
from intentstream.stream.contract.events import Event, Rejection, parse_event
from intentstream.stream.engine.disorder import DisorderMeter
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.settings import Settings


def add_order_args(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--sort`` and ``--allow-disorder``, the same for every command that reads a clickstream."""
    p.add_argument("--sort", action="store_true",
                   help="order the input by event time first (stable: ties keep file order; rejected lines first); "
                        "bounded memory, large inputs are sorted on disk under $TMPDIR")  # fmt: skip
    p.add_argument("--allow-disorder", action="store_true",
                   help="run even when more than [events] max_late_share of the events are more than "
                        "[sessions] allowed_lateness_s behind the newest one (default: stop, exit status 2)")  # fmt: skip


@contextmanager
def read_lines(fh: BinaryIO, sort: bool) -> Iterator[Iterator[tuple[int, bytes]]]:
    """The non-blank lines of ``fh``, in file order or sorted by event time; a sort's
    temporary files are removed on exit, whether read to the end or not."""
    lines = iter_lines(fh)
    if not sort:
        yield lines
        return
    ordered = sort_by_time(lines, progress=sys.stderr)
    try:
        yield ordered
    finally:
        ordered.close()


@contextmanager
def open_input(path: str, sort: bool, progress: str | None = None) -> Iterator[Iterator[tuple[int, bytes]]]:
    """:func:`read_lines` of ``path`` (``-``: standard input); OSError if it cannot be opened.
    ``progress``: a label for a progress line on stderr as the lines are consumed (with
    the share of the file read, when it is a file and not sorted first)."""
    with sys.stdin.buffer if path == "-" else open(path, "rb") as fh, read_lines(fh, sort) as lines:
        if progress is None:
            yield lines
            return
        size = os.fstat(fh.fileno()).st_size if path != "-" and not sort else None
        yield with_progress(lines, Progress(sys.stderr, label=progress, unit="lines", total_bytes=size or None))


def with_progress(lines: Iterable[tuple[int, bytes]], progress: Progress) -> Iterator[tuple[int, bytes]]:
    """``lines`` unchanged, counted on ``progress`` (looked at every 1,024 lines: cheap)."""
    n = nbytes = 0
    for item in lines:
        n += 1
        nbytes += len(item[1]) + 1
        if not n & 1023:
            progress.update(n, nbytes)
        yield item
    progress.finish()


def offline_runner(
    args: argparse.Namespace, settings: Settings, partitions: int | None = None, batch_size: int | None = None
) -> OfflineRunner:
    """An :class:`OfflineRunner` that measures the disorder of what it reads, and stops
    past the limit unless ``--allow-disorder``."""
    runner = OfflineRunner(settings, partitions, batch_size)
    runner.disorder = DisorderMeter.from_settings(settings, runner.partitions, stop=not args.allow_disorder)
    return runner


def measured_lines(
    lines: Iterable[tuple[int, bytes]], meter: DisorderMeter
) -> Iterator[tuple[int, bytes, Event | Rejection]]:
    """``(line number, raw, parsed)`` of each line, its event measured by ``meter`` on the
    partition of its user (raises :class:`~intentstream.stream.engine.disorder.DisorderError` past the limit). The lines are
    held back until the meter has its sample (``[events] late_share_min_events``), so an
    input out of order from the start hands nothing on (``replay --to-kafka`` sends
    nothing)."""
    held: list[tuple[int, bytes, Event | Rejection]] | None = []
    for lineno, raw in lines:
        ev = parse_event(raw)
        if type(ev) is Event:
            meter.observe_user(ev.user_id, ev.ts_ms)
        if held is None:
            yield lineno, raw, ev
            continue
        held.append((lineno, raw, ev))
        if meter.sampled:
            yield from held
            held = None
    yield from held or ()


def drive(
    args: argparse.Namespace, runner: OfflineRunner, keep: str, close_open: bool = False,
    also: Mapping[str, str] | None = None, seen: Callable[[str, bytes], None] | None = None,
) -> Iterator[bytes]:  # fmt: skip
    """Run ``args.file`` (sorted first with ``args.sort``) through ``runner``, writing the
    payloads of topic ``keep`` to ``args.out`` (``-`` or None: stdout), those of the
    topics in ``also`` to the files it names, and rejected lines to ``args.dead_letter``;
    yields each kept payload and hands every ``also`` payload to ``seen`` (for the
    caller's tallies). Shared by ``segments`` and ``replay --offline``. Raises OSError
    when the input cannot be opened."""
    runner.source = args.file
    with open_input(args.file, args.sort, progress=f"{args.command}: ") as lines:
        extra = {topic: open(path, "wb") for topic, path in (also or {}).items()}
        out: BinaryIO = sys.stdout.buffer if args.out in (None, "-") else open(args.out, "wb")
        runner.dead_letter = open(args.dead_letter, "wb") if args.dead_letter else None
        try:
            for topic, payload in runner.run(lines, close_open=close_open):
                if topic == keep:
                    out.write(payload + b"\n")
                    yield payload
                elif topic in extra:
                    extra[topic].write(payload + b"\n")
                    if seen is not None:
                        seen(topic, payload)
        finally:
            if out is not sys.stdout.buffer:
                out.close()
            for fh in extra.values():
                fh.close()
            if runner.dead_letter is not None:
                runner.dead_letter.close()


def summary(runner: OfflineRunner, elapsed: float, prefix: str = "", more: Sequence[Block] = ()) -> None:
    """The run's counts on stderr: lines, events, late, duplicates, rejections by reason
    (a table on a terminal), then ``more`` (the caller's tables)."""
    c = runner.counters
    rejected = sum(runner.invalid.values())
    lines = c["events"] + rejected
    head = (
        f"{prefix}{lines} lines, {c['events']} events ({c['late']} late, {c['duplicates']} duplicates), "
        f"{rejected} rejected, {c['segments']} segments, {c['decisions']} decisions, {runner.partitions} partitions, "
        f"{elapsed:.2f}s ({lines / max(elapsed, 1e-9):,.0f} events/s)"
    )
    reasons = [("rejected", reason, str(n)) for reason, n in sorted(runner.invalid.items())]
    blocks: list[Block] = [head]
    if reasons:
        blocks.append(Table(("", "reason", "lines"), reasons, widths=(8, 20, 0), right=(2,), indent=2, header=False))
    tables.write([*blocks, *more], sys.stderr)
