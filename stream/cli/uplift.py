"""``intentstream uplift OUTCOMES.jsonl [--format text|md|html|json] [--out FILE] [--by DIMS]``:
what the messages are worth, per trigger, strategy, channel and persona.

Reads outcome records (:mod:`intentstream.stream.outcomes.record`; the file ``replay
--offline --outcomes`` writes, or with ``--from-topic`` the whole ``[topics] outcomes``
topic up to its current end) and prints the uplift table of
:func:`intentstream.stream.outcomes.uplift.summarize`
(:mod:`intentstream.stream.outcomes.render`). ``--by trigger,persona`` drills down in
that order: one level per prefix (per trigger, then per trigger and persona); without
it, per trigger, per trigger x strategy x channel, and that per behaviour persona.
Lines that are not outcome records are counted by reason on stderr and left out; a
missing file is one line and exit status 2, like the other offline commands.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from intentstream.stream import codec
from intentstream.stream.cli.offline_files import open_input
from intentstream.stream.cli.terminal import error
from intentstream.stream.outcomes.record import HOLDOUT, TREATMENT, ActionOutcome
from intentstream.stream.cli import tables
from intentstream.stream.outcomes.render import render_html, render_json, render_markdown, render_text, text_blocks
from intentstream.stream.outcomes.uplift import DEFAULT_LEVELS, DIMENSIONS, UpliftTable, summarize
from intentstream.stream.settings import Settings, load_settings

__all__ = ["OutcomeReader", "levels_of", "register", "run"]

RENDERERS = {"text": render_text, "md": render_markdown, "html": render_html, "json": render_json}


class OutcomeReader:
    """Outcome records (dicts in their canonical form) from raw lines or values; what is
    not one is counted in ``bad`` by reason and skipped, never raised.

    >>> r = OutcomeReader()
    >>> list(r.records([(1, b"{oops"), (2, b"[1]"), (3, b'{"action_id": "a"}')]))
    []
    >>> r.read, sorted(r.bad.items())
    (3, [('not JSON', 1), ('not an outcome record', 2)])
    """

    def __init__(self) -> None:
        self.read = 0
        self.bad: Counter[str] = Counter()

    def parse(self, raw: bytes | None) -> dict[str, Any] | None:
        self.read += 1
        try:
            obj: Any = codec.loads(raw) if raw is not None else None  # any JSON value: checked by from_dict
        except codec.JSONDecodeError:
            self.bad["not JSON"] += 1
            return None
        try:
            rec = ActionOutcome.from_dict(obj).to_dict()
        except (KeyError, TypeError, ValueError, AttributeError):
            self.bad["not an outcome record"] += 1
            return None
        if rec["experiment"].get("arm") not in (TREATMENT, HOLDOUT):
            self.bad["no experiment arm"] += 1
            return None
        return rec

    def records(self, lines: Iterable[tuple[int, bytes]]) -> Iterator[dict[str, Any]]:
        for _, raw in lines:
            rec = self.parse(raw)
            if rec is not None:
                yield rec

    def summary(self, command: str) -> None:
        """The bad lines on stderr, one line per reason (nothing when all were good)."""
        for reason, n in sorted(self.bad.items()):
            print(f"{command}: skipped {n} line(s): {reason}", file=sys.stderr)


def levels_of(by: str | None) -> tuple[tuple[str, ...], ...]:
    """The table's levels for ``--by`` (every prefix of the list), or the default ones.

    >>> levels_of("trigger,persona")
    (('trigger',), ('trigger', 'persona'))
    >>> levels_of(None) == DEFAULT_LEVELS
    True
    """
    if by is None:
        return DEFAULT_LEVELS
    dims = tuple(d.strip() for d in by.split(",") if d.strip())
    bad = [d for d in dims if d not in DIMENSIONS]
    if not dims or bad or len(set(dims)) != len(dims):
        raise argparse.ArgumentTypeError(f"--by takes distinct dimensions out of {','.join(DIMENSIONS)}, not {by!r}")
    return tuple(dims[: i + 1] for i in range(len(dims)))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "uplift",
        help="uplift per trigger, strategy, channel and persona from outcome records",
        description="Uplift against each trigger's holdout group, with intervals, from outcome records "
        "(replay --offline --outcomes FILE, or the outcomes topic with --from-topic).",
    )
    p.add_argument("file", nargs="?", metavar="OUTCOMES.jsonl", help="outcome records, one per line (- for standard input)")
    p.add_argument("--from-topic", action="store_true", help="read the whole [topics] outcomes topic up to its current end instead")
    p.add_argument("--format", choices=tuple(RENDERERS), default="text", help="output format (default text)")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--by", type=levels_of, metavar="DIMS",
                   help=f"drill down by these dimensions, in order (out of {','.join(DIMENSIONS)}); "
                        "default: trigger; trigger,strategy,channel; and that by persona")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.file) == bool(args.from_topic):
        return error("uplift", "give OUTCOMES.jsonl or --from-topic (one of them)")
    settings = load_settings(args.config)
    reader = OutcomeReader()
    if args.from_topic:
        from intentstream.agents.commands.kafka_errors import with_kafka_errors

        values: list[bytes | None] = []
        status = with_kafka_errors("uplift", settings, lambda: _read_topic(settings, values))
        if status:
            return int(status)
        records: Iterable[dict[str, Any]] = (r for v in values if (r := reader.parse(v)) is not None)
        source = settings.topics.outcomes
        table = _summarize(records, args, settings)
    else:
        with open_input(args.file, sort=False) as lines:
            table = _summarize(reader.records(lines), args, settings)
        source = args.file
    if args.format == "text" and not args.out:  # rich on a terminal, else render_text's bytes
        tables.write(text_blocks(table))
    elif args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(RENDERERS[args.format](table))
    else:
        sys.stdout.write(RENDERERS[args.format](table))
    reader.summary("uplift")
    print(
        f"uplift: {source}: {reader.read} lines, {table.records} outcome records, {table.measured} measured, "
        f"{len(table.rows)} rows ({sum(r.enough for r in table.rows)} with enough data)",
        file=sys.stderr,
    )
    return 0


def _summarize(records: Iterable[dict[str, Any]], args: argparse.Namespace, settings: Settings) -> UpliftTable:
    oc = settings.outcomes
    return summarize(records, levels=args.by or DEFAULT_LEVELS, min_per_arm=oc.min_per_arm, confidence=oc.confidence)


def _read_topic(settings: Settings, values: list[bytes | None]) -> int:
    """Append the value of every record of ``[topics] outcomes`` up to the ends captured
    now (the ``tail --from-beginning`` way, no consumer group); 2 if there is no topic."""
    from intentstream.agents.commands.topic_reading import TopicNotFound, assign_partitions, reached, seek_last
    from intentstream.agents.kafka import make_consumer

    consumer = make_consumer(settings)
    try:
        try:
            tps = assign_partitions(consumer, settings.topics.outcomes)
        except TopicNotFound as exc:
            return error("uplift", exc)
        end = seek_last(consumer, tps, None)
        while not reached(consumer, end):
            for tp, batch in consumer.poll(timeout_ms=500).items():
                values.extend(r.value for r in batch if r.offset < end[tp])
        return 0
    finally:
        consumer.close()
