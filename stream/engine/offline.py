"""``intentstream segments FILE --out SEGMENTS.jsonl``: sessions and intent segments offline.

The live worker's engine on a file: the same :class:`~intentstream.stream.engine.partition.SessionEngine` with
the in-memory store, one engine per simulated partition. Each valid line goes to the
partition Kafka's default partitioner gives its key, ``user_id``
(:func:`intentstream.stream.engine.partitioning.partition_for`); offsets are per-partition line counters;
events reach their engine in file order, in batches of ``[sessions] batch_size`` (results
do not depend on the batch size). The output is the segments' outbox payloads — the
bytes the worker would publish — one JSON object per line, in the order they close:
byte-identical for the same input and settings.

At the end of the file, every partition's watermark is raised to the highest watermark
of all partitions — exactly what the live worker does when its partitions go idle
(``[triggers] idle_partition_s``) — so the output equals the worker's for the same input:
sessions and timers that this watermark passes close and fire; later ones stay open, as
they would live. ``--close-open`` also closes every open session at the end
(``closed_by = "end_of_input"``, buffered events released first, late runs emitted), for
analysts who want every event in a segment; live has no equivalent.

Malformed lines are never fatal: they are counted by reason on stderr and, with
``--dead-letter FILE``, written there as dead-letter records (as ``intentstream
validate`` does).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from intentstream.stream import codec
from intentstream.stream.engine.partition import SessionEngine, StepResult
from intentstream.stream.contract.events import Event, parse_event
from intentstream.stream.engine.partitioning import partition_for
from intentstream.stream.settings import Settings, load_settings
from intentstream.stream.state.memory import MemorySessionStore
from intentstream.stream.contract.dead_letter import dead_letter_record, iter_lines


class OfflineRunner:
    """Feeds lines to per-partition engines; yields the outputs (topic, payload) in the
    order the engines publish them.

    >>> lines = [b'{"event_id":"e1","user_id":"u1","ts":1767607200000,"type":"coupon_view"}', b'not json']
    >>> runner = OfflineRunner(partitions=3)
    >>> [codec.loads(v)["intent"] for t, v in runner.run(enumerate(lines, 1), close_open=True) if t == "segments"]
    ['coupon']
    >>> runner.counters["events"], dict(runner.invalid)
    (1, {'not_json': 1})
    """

    def __init__(self, settings: Settings | None = None, partitions: int | None = None, batch_size: int | None = None) -> None:
        self.settings = settings or load_settings(env={})
        self.partitions = partitions or self.settings.topics.partitions
        self.batch_size = batch_size or self.settings.sessions.batch_size
        self.store = MemorySessionStore()
        self.engines = [SessionEngine(self.store, p, self.settings) for p in range(self.partitions)]
        self.counters: Counter[str] = Counter()
        self.invalid: Counter[str] = Counter()
        self.dead_letter: BinaryIO | None = None  # where rejected lines go, if anywhere
        self.source = "-"

    def run(self, lines: Iterable[tuple[int, bytes]], close_open: bool = False) -> Iterator[tuple[str, bytes]]:
        """(topic, payload) of every output for ``(line number, raw line)`` input."""
        n = self.partitions
        pending: list[list[tuple[int, bytes, Event]]] = [[] for _ in range(n)]
        offsets = [0] * n
        where: dict[str, int] = {}  # user -> partition (murmur2 in Python is slow)
        for lineno, raw in lines:
            ev = parse_event(raw)
            if type(ev) is not Event:
                self.invalid[ev.reason] += 1
                if self.dead_letter is not None:
                    self.dead_letter.write(codec.dumps_line(dead_letter_record(raw, ev, f"{self.source}:{lineno}")))
                continue
            p = where.get(ev.user_id)
            if p is None:
                p = where[ev.user_id] = partition_for(ev.user_id.encode(), n)
            batch = pending[p]
            batch.append((offsets[p], raw, ev))
            offsets[p] += 1
            if len(batch) >= self.batch_size:
                yield from self._publish(p, self.engines[p].process_parsed(batch))
                pending[p] = []
        for p in range(n):
            if pending[p]:
                yield from self._publish(p, self.engines[p].process_parsed(pending[p]))
        top = max(engine.meta.wm for engine in self.engines)
        for p in range(n):  # the live worker's idle partitions adopt the top watermark
            if self.engines[p].meta.wm < top:
                yield from self._publish(p, self.engines[p].advance_to(top))
        if close_open:
            for p in range(n):
                yield from self._publish(p, self.engines[p].flush())

    def _publish(self, p: int, res: StepResult) -> Iterator[tuple[str, bytes]]:
        self.counters.update(res.counters)
        engine = self.engines[p]
        entries = engine.pending_outbox()
        for e in entries:
            yield e.topic, e.value
        engine.ack([e.id for e in entries])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segments", help="cut a JSONL clickstream into sessions and intent segments (offline)")
    p.add_argument("file", help="JSONL file, or - for standard input")
    p.add_argument("--out", required=True, metavar="SEGMENTS.jsonl", help="output: one segment per line (- for stdout)")
    p.add_argument("--partitions", type=int, help="simulated Kafka partitions (default: [topics] partitions)")
    p.add_argument("--batch-size", type=int, help="events per engine step (default: [sessions] batch_size)")
    p.add_argument("--dead-letter", metavar="FILE", help="write rejected lines here (JSONL, with reason and raw text)")
    p.add_argument("--close-open", action="store_true", help="also close sessions still open at the end of the file")
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    runner = OfflineRunner(settings, args.partitions, args.batch_size)
    started = time.perf_counter()
    for _ in drive(args, runner, settings.topics.segments, close_open=args.close_open):
        pass
    summary(runner, time.perf_counter() - started)
    return 0
