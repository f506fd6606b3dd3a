"""``intentstream import FILE --format F [--mapping FILE.toml] (--out EVENTS.jsonl | --to-kafka)``

Turns an export the user already has — Segment / RudderStack calls, Taobao
UserBehavior, REES46, RetailRocket, or any CSV / JSONL with a mapping file — into
event-contract JSONL, sorted by event time, ready for ``segments``, ``replay`` and
``report``, or sends it to Kafka. The mapping logic is :mod:`intentstream.stream.ingest`;
this module reads the file, shows progress, sorts, writes and summarises.

* **Sorted, in bounded memory**: by ``(event time, input order)`` through the offline
  commands' external merge sort (:mod:`intentstream.stream.cli.sort_by_time`: runs of
  250,000 events in memory, merged from ``$TMPDIR``, which needs about the output's
  size), so the input may be larger than memory; what stays in memory is the set of
  distinct users for the summary.
* **Rejected rows** go to ``--dead-letter`` (default ``EVENTS.rejected.jsonl`` beside
  ``--out``, else ``<input name>.rejected.jsonl`` in the working directory) as the
  contract's dead-letter records, ``source`` = ``FILE:line``. Rows of types the mapping
  does not carry are counted by type in the summary, not dead-lettered.
* **--to-kafka** sends the sorted events exactly as ``replay FILE --to-kafka`` does
  (:func:`intentstream.agents.commands.replay.replay_to_kafka`: key ``user_id``, record
  time = event time, idempotent producer, its summary), from ``--out`` when given, else
  from a temporary file. The worker reading that topic must read the contract
  (``[events] input_format = "contract"``).
* **The summary** (rows read, events imported by type, users, time span, rejected rows by
  reason, dropped rows by type, where the events went) is an aligned table on standard
  error (:mod:`intentstream.stream.cli.tables`); ``--json`` makes it one JSON object
  instead, on standard output — on standard error when the events go there (``--out -``).
* User mistakes (a missing file, an unknown format, a bad mapping, a CSV header without
  a mapped column) are one line on standard error, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import BinaryIO

from intentstream.stream import codec
from intentstream.stream.cli import tables
from intentstream.stream.cli.progress import Progress
from intentstream.stream.cli.tables import Block, Table
from intentstream.stream.cli.sort_by_time import sort_by_time
from intentstream.stream.cli.terminal import error
from intentstream.stream.ingest.convert import ImportTally, convert
from intentstream.stream.ingest.mapping import MappingError
from intentstream.stream.ingest.presets import FORMATS, PRESETS, load_mapping
from intentstream.stream.ingest.readers import Record, records
from intentstream.stream.settings import Settings, load_settings

COMMAND = "intentstream import"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="turn a Segment/RudderStack, Taobao, REES46, RetailRocket or own CSV/JSONL export into contract events",
        description="Map an export to the event contract (mapping tables: config/imports.toml), sort it by event "
        "time (stable; in bounded memory: runs of 250,000 events, merged from $TMPDIR, which needs about the "
        "output's size, so inputs larger than memory work) and write it to --out and/or send it to Kafka.",
    )
    p.add_argument("file", help="the export (CSV or JSONL), or - for standard input")
    p.add_argument("--format", required=True, metavar="F",
                   help=f"a preset ({', '.join(PRESETS)}) or csv / jsonl with --mapping")  # fmt: skip
    p.add_argument("--mapping", metavar="FILE.toml",
                   help="a mapping table (keys: config/imports.toml); with a preset, laid over it")  # fmt: skip
    p.add_argument("--out", metavar="EVENTS.jsonl", help="write the events here (JSONL, sorted by event time; - for stdout)")
    p.add_argument("--to-kafka", action="store_true", help="send the events to Kafka as `replay --to-kafka` does")
    p.add_argument("--topic", help="with --to-kafka: target topic or short name (default: [topics] clickstream)")
    p.add_argument("--dead-letter", metavar="FILE",
                   help="rejected rows, with reasons (default: EVENTS.rejected.jsonl beside --out, "
                        "else <input name>.rejected.jsonl here)")  # fmt: skip
    p.add_argument("--json", action="store_true",
                   help="the summary as one JSON object on stdout (on stderr with --out -), not a table on stderr")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except MappingError as exc:
        return error("import", exc)


def _run(args: argparse.Namespace) -> int:
    if not args.out and not args.to_kafka:
        raise MappingError("say where the events go: --out EVENTS.jsonl, --to-kafka, or both")
    if args.topic and not args.to_kafka:
        raise MappingError("--topic only applies with --to-kafka")
    if args.format not in FORMATS:
        raise MappingError(f"unknown format {args.format!r}; the formats are {', '.join(FORMATS)}")
    mapping = load_mapping(args.format, args.mapping)
    if args.out not in (None, "-") and args.file != "-" and os.path.exists(args.out) and os.path.samefile(args.out, args.file):
        raise MappingError(f"--out {args.out} is the input file")
    settings = load_settings(args.config) if args.to_kafka else None
    dead_letter = args.dead_letter or default_dead_letter(args.file, args.out)
    tally = ImportTally()
    started = time.monotonic()
    with ExitStack() as stack:
        fh = sys.stdin.buffer if args.file == "-" else stack.enter_context(_open_input(args.file))
        rows = records(fh, mapping, args.file)  # reads (and checks) a CSV header now
        dlq = stack.enter_context(open(dead_letter, "wb"))
        reading = Progress(sys.stderr, label="import: reading ", unit="rows")
        events = convert(_shown(rows, reading), mapping, args.file, tally, dlq)
        ordered = sort_by_time(events)
        stack.callback(ordered.close)  # removes the sort's temporary files
        if args.out == "-":
            written = _write(ordered, sys.stdout.buffer, tally.events)
        else:
            path = args.out or stack.enter_context(_temporary_file())
            with open(path, "wb") as out:
                written = _write(ordered, out, tally.events)
        elapsed = time.monotonic() - started
        assert written == tally.events
        output = ", ".join(o for o in (args.out if args.out != "-" else "stdout", "Kafka" if args.to_kafka else None) if o)
        report: dict[str, object] = {"input": args.file, "format": args.format, "output": output, "dead_letter": dead_letter,
                                     **tally.to_dict(), "elapsed_s": round(elapsed, 3)}  # fmt: skip
        # the summary goes to stderr when the events go to stdout, and so does the JSON then
        where = sys.stderr if args.out == "-" or not args.json else sys.stdout
        if not args.json:
            tables.write(summary(tally, f"import {args.file} ({args.format}) -> {output}", elapsed, dead_letter), where)
        status = 0 if settings is None else _to_kafka(settings, path, args.topic, report if args.json else None)
        if args.json:
            where.write(codec.dumps_line(report).decode())
            where.flush()
        return status


def summary(tally: ImportTally, head: str, elapsed: float, dead_letter: str, top: int = 8) -> list[Block]:
    """The human summary: a head line, the counts, then the rejected rows by reason and
    the dropped rows by source type (the ``top`` most common)."""
    types = ", ".join(f"{t} {n:,}" for t, n in tally.types.most_common(top))
    first_last = tally.span()
    span = "-"
    if first_last is not None and tally.first_ts_ms is not None and tally.last_ts_ms is not None:
        span = f"{first_last[0]} .. {first_last[1]} ({(tally.last_ts_ms - tally.first_ts_ms) / 86_400_000:,.1f} days)"
    counts = [
        ("rows read", f"{tally.rows:,}", ""),
        ("imported", f"{tally.events:,}", f"events: {types}" if types else "events"),
        ("users", f"{len(tally.users):,}", ""),
        ("time span", "", span),
        ("rejected", f"{sum(tally.rejected.values()):,}", f"rows, dead-lettered to {dead_letter}"),
        ("dropped", f"{sum(tally.skipped.values()):,}", "rows of types the mapping does not carry"),
    ]
    blocks: list[Block] = [
        f"{head}: {tally.rows / max(elapsed, 1e-9):,.0f} rows/s, {elapsed:.1f}s",
        Table(("", "", ""), counts, widths=(9, None, None), right=(1,), indent=2, header=False, rstrip=True),
    ]
    why = [("rejected", reason[:40], f"{n:,}") for reason, n in sorted(tally.rejected.items())]
    why += [("dropped", kind[:40], f"{n:,}") for kind, n in tally.skipped.most_common(top)]
    if len(tally.skipped) > top:
        why.append(("dropped", f"... and {len(tally.skipped) - top:,} more types", ""))
    if why:
        blocks.append(Table(("", "reason or type", "rows"), why, widths=(9, None, None), right=(2,), indent=2, header=False, rstrip=True))
    return blocks


def default_dead_letter(source: str, out: str | None) -> str:
    """``EVENTS.rejected.jsonl`` beside ``--out EVENTS.jsonl``; else ``<input name>.rejected.jsonl`` here.

    >>> default_dead_letter("ub.csv", "out/events.jsonl"), default_dead_letter("/data/ub.csv", None), default_dead_letter("-", "-")
    ('out/events.rejected.jsonl', 'ub.rejected.jsonl', 'import.rejected.jsonl')
    """
    if out is not None and out != "-":
        stem = out[: -len(".jsonl")] if out.endswith(".jsonl") else out
    else:
        stem = "import" if source == "-" else os.path.splitext(os.path.basename(source))[0]
    return f"{stem}.rejected.jsonl"


def _open_input(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise MappingError(f"cannot read {path}: {exc.strerror or exc}") from None


@contextmanager
def _temporary_file() -> Iterator[str]:
    """A file name under $TMPDIR for the events --to-kafka sends; removed on exit."""
    fd, path = tempfile.mkstemp(prefix="intentstream-import-", suffix=".jsonl")
    os.close(fd)
    try:
        yield path
    finally:
        os.unlink(path)


def _shown(rows: Iterable[Record], progress: Progress) -> Iterator[Record]:
    """``rows``, keeping the progress line up to date."""
    n = nbytes = 0
    for row in rows:
        n += 1
        nbytes += len(row[1]) + 1
        progress.update(n, nbytes)
        yield row
    progress.finish()


def _write(ordered: Iterable[tuple[int, bytes]], out: BinaryIO, total: int) -> int:
    writing: Progress | None = None
    n = nbytes = 0
    for _, line in ordered:
        if writing is None:  # the first line comes once the whole input is read and sorted
            writing = Progress(sys.stderr, label="import: writing ", unit="events", total=total)
        out.write(line)
        out.write(b"\n")
        n += 1
        nbytes += len(line) + 1
        writing.update(n, nbytes)
    if writing is not None:
        writing.finish()
    return n


def _to_kafka(settings: Settings, path: str, topic: str | None, report: dict[str, object] | None) -> int:
    """Send the events; the sending summary on stdout, or, with ``report`` (``--json``), in
    it under ``kafka`` with the text on stderr."""
    from intentstream.agents.commands.kafka_errors import with_kafka_errors
    from intentstream.agents.commands.replay import ReplayError, ReplayOptions, replay_to_kafka
    from intentstream.agents.topic_names import resolve_topic

    opts = ReplayOptions(topic=resolve_topic(topic, settings) if topic else None)
    if settings.events.input_format != "contract":
        print(f"{COMMAND}: warning: these settings say the worker reads [events] input_format = "
              f"{settings.events.input_format!r}; the imported events are in the contract format", file=sys.stderr)  # fmt: skip
    try:
        stats = with_kafka_errors("import", settings, lambda: replay_to_kafka(settings, path, opts))
    except ReplayError as exc:
        return error("import", exc)
    if isinstance(stats, int):
        return stats
    print(stats.summary(), file=sys.stdout if report is None else sys.stderr)
    if report is not None:
        report["kafka"] = {"topic": stats.topic, "sent": stats.sent, "acked": stats.acked, "ok": stats.ok}
    if stats.interrupted:
        return 130
    return 0 if stats.ok else 1
