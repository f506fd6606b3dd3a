"""``intentstream tail TOPIC [-n N] [--follow] [--from-beginning] [--partition P] [--max N] [--raw] [--key USER]``

Pretty-prints a topic (short names such as ``clickstream``, ``dlq``, ``audit`` or
``push`` map to the configured names), without a consumer group.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from intentstream.agents.commands.kafka_errors import with_kafka_errors
from intentstream.agents.commands.topic_reading import TopicNotFound, assign_partitions, reached, seek_last
from intentstream.agents.kafka import make_consumer
from intentstream.agents.topic_names import SHORT_NAMES, resolve_topic
from intentstream.stream import codec
from intentstream.stream.cli import non_negative_int, positive_int
from intentstream.stream.cli.terminal import error
from intentstream.stream.cli.terminal import use_colour
from intentstream.stream.contract.events import format_ts
from intentstream.stream.settings import Settings, load_settings


_COLOURS = {"pos": "\x1b[2m", "ts": "\x1b[36m", "key": "\x1b[33m", "bad": "\x1b[31m", "reset": "\x1b[0m"}


def compact_value(value: bytes | None) -> tuple[str, bool]:
    """The value as compact JSON (sorted keys), or as text; and whether it was JSON.

    >>> compact_value(b'{"b": 1,  "a": "x"}')
    ('{"a":"x","b":1}', True)
    >>> compact_value(b'not json')
    ('not json', False)
    """
    if value is None:
        return "<null>", False
    try:
        return codec.dumps(codec.loads(value)).decode(), True
    except (codec.JSONDecodeError, TypeError):
        return value.decode("utf-8", "backslashreplace"), False


def format_record(record: Any, colour: bool = False) -> str:
    """``partition:offset  ISO-timestamp  key  <compact JSON>``.

    >>> from types import SimpleNamespace as R
    >>> format_record(R(partition=2, offset=41, timestamp=1767607200123, key=b"u1", value=b'{"type": "click"}'))
    '2:41  2026-01-05T10:00:00.123Z  u1  {"type":"click"}'
    """
    ts = format_ts(record.timestamp) if record.timestamp is not None and record.timestamp >= 0 else "-"
    key = record.key.decode("utf-8", "backslashreplace") if record.key is not None else "-"
    text, is_json = compact_value(record.value)
    pos = f"{record.partition}:{record.offset}"
    if not colour:
        return f"{pos}  {ts}  {key}  {text}"
    c = _COLOURS
    body = text if is_json else f"{c['bad']}{text}{c['reset']}"
    return f"{c['pos']}{pos}{c['reset']}  {c['ts']}{ts}{c['reset']}  {c['key']}{key}{c['reset']}  {body}"


@dataclass(frozen=True)
class TailOptions:
    """The flags of ``tail``."""

    follow: bool = False
    from_beginning: bool = False
    partition: int | None = None
    last: int = 10
    max_records: int | None = None
    raw: bool = False
    key: str | None = None


class Printer:
    """Writes records to stdout: pretty lines, or the value bytes only with ``raw``."""

    def __init__(self, out: IO[Any], raw: bool, colour: bool) -> None:
        self.out = out
        self.raw = raw
        self.colour = colour
        self.binary = getattr(out, "buffer", None)

    def write(self, record: Any) -> None:
        if not self.raw:
            self.out.write(format_record(record, self.colour) + "\n")
        elif record.value is not None:
            if self.binary is not None:
                self.binary.write(record.value + b"\n")
            else:
                self.out.write(record.value.decode("utf-8", "backslashreplace") + "\n")

    def flush(self) -> None:
        self.out.flush()
        if self.binary is not None:
            self.binary.flush()


def tail(settings: Settings, topic: str, opts: TailOptions = TailOptions(), out: IO[Any] | None = None) -> int:
    """Print a topic's records to ``out`` (standard output); the exit status."""
    out = out or sys.stdout
    consumer = make_consumer(settings)
    try:
        try:
            tps = assign_partitions(consumer, topic, opts.partition)
        except TopicNotFound as exc:
            return error("tail", exc)
        end = seek_last(consumer, tps, None if opts.from_beginning else opts.last)
        printer = Printer(out, opts.raw, use_colour(out) and not opts.raw)
        try:
            _tail_loop(consumer, end, opts, printer)
        except KeyboardInterrupt:
            printer.flush()
            return 0 if opts.follow else 130
        return 0
    finally:
        consumer.close()


def _tail_loop(consumer: Any, end: Mapping[Any, int], opts: TailOptions, printer: Printer) -> None:
    key = opts.key.encode() if opts.key is not None else None
    printed = 0
    while opts.follow or not reached(consumer, end):
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                if not opts.follow and record.offset >= end[tp]:
                    continue
                if key is not None and record.key != key:
                    continue
                printer.write(record)
                printed += 1
                if opts.max_records is not None and printed >= opts.max_records:
                    printer.flush()
                    return
        printer.flush()


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    opts = TailOptions(
        follow=args.follow,
        from_beginning=args.from_beginning,
        partition=args.partition,
        last=args.last,
        max_records=args.max,
        raw=args.raw,
        key=args.key,
    )
    return with_kafka_errors("tail", settings, lambda: tail(settings, resolve_topic(args.topic, settings), opts))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tail", help="print a topic's records (no consumer group)")
    p.add_argument("topic", help=f"topic name or short name: {', '.join(SHORT_NAMES)}")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records until Ctrl-C")
    p.add_argument("--from-beginning", action="store_true", help="start at the beginning of each partition")
    p.add_argument("-n", "--last", type=non_negative_int, default=10, metavar="N",
                   help="without --from-beginning: start N records before the end of each partition (default %(default)s)")  # fmt: skip
    p.add_argument("--partition", type=non_negative_int, metavar="P", help="read this partition only")
    p.add_argument("--max", type=positive_int, metavar="N", help="stop after printing N records")
    p.add_argument("--raw", action="store_true", help="print the value bytes only, one per line (JSONL)")
    p.add_argument("--key", metavar="USER", help="only records with this key (user_id)")
    p.set_defaults(func=run)
