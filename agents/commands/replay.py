"""``intentstream replay FILE --to-kafka [--topic T] [--speed X | --rate N] [--partitions-check] [--no-dead-letter]``

Streams a JSONL clickstream of any size into Kafka, line by line: key = the event's
``user_id``, record timestamp = the event time, value = the original line bytes (never
re-serialized). Malformed lines go to the dead-letter topic as
:func:`intentstream.stream.contract.dead_letter.dead_letter_record` JSON (or are only
counted with ``--no-dead-letter``). Idempotent producer with ``acks=all``
(:func:`intentstream.agents.kafka.make_producer`); a bounded number of unacknowledged
records (back-pressure, :mod:`~intentstream.agents.commands.in_flight`); ``--speed X``
keeps X times the event-time pace, ``--rate N`` caps lines/s
(:mod:`~intentstream.agents.commands.pacing`).

The input is read as the offline commands read it (``--sort``, ``--allow-disorder``;
:mod:`intentstream.stream.cli.offline_files`), its disorder measured on the topic's
partitions, the first events held back until the measure has its sample.

``replay FILE --offline ...`` is the offline engine run, dispatched to
``intentstream.stream.cli.replay_offline.run(args)``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

from intentstream.agents.commands.in_flight import MAX_IN_FLIGHT_RECORDS, InFlight
from intentstream.agents.commands.kafka_errors import with_kafka_errors
from intentstream.agents.commands.pacing import EventTimePacer, RateLimiter, sleep_for
from intentstream.agents.commands.retention import retention_warning, topic_retention_ms
from intentstream.agents.kafka import make_producer
from intentstream.agents.topic_names import resolve_topic
from intentstream.stream import codec
from intentstream.stream.cli import positive_float, positive_int
from intentstream.stream.cli.offline_files import add_order_args, measured_lines, read_lines
from intentstream.stream.cli.progress import Progress, human_bytes
from intentstream.stream.cli.terminal import error
from intentstream.stream.contract.dead_letter import dead_letter_record
from intentstream.stream.contract.events import Event, Rejection
from intentstream.stream.engine.disorder import DisorderError, DisorderMeter
from intentstream.stream.settings import Settings, load_settings


@dataclass
class ReplayStats:
    """What a replay did; :meth:`summary` is the report printed at the end."""

    path: str
    topic: str
    dead_letter_topic: str | None
    lines: int = 0
    sent: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    dlq_unsendable: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    acked: int = 0
    acked_dead_letter: int = 0
    by_partition: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    first_error: str = ""
    misplaced: int | None = None
    oldest_ts_ms: int | None = None
    interrupted: bool = False
    #: why reading stopped early: the input is too far out of event-time order
    disorder: DisorderError | None = None

    @property
    def ok(self) -> bool:
        return not self.interrupted and self.failures == 0 and not self.misplaced and self.disorder is None

    def summary(self) -> str:
        rate = self.lines / max(self.elapsed_s, 1e-9)
        n_invalid = sum(self.invalid.values())
        where = f"-> {self.dead_letter_topic}" if self.dead_letter_topic else "skipped (--no-dead-letter)"
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.invalid.items()))
        parts = "  ".join(f"{p}: {n:,}" for p, n in sorted(self.by_partition.items())) or "-"
        lines = [
            f"replay {self.path} -> {self.topic}"
            + ("  (INTERRUPTED)" if self.interrupted else "")
            + ("  (STOPPED: input out of event-time order)" if self.disorder else ""),
            f"  lines      {self.lines:,}",
            f"  sent       {self.sent:,} events, {self.acked:,} acknowledged",
            f"  invalid    {n_invalid:,} {where}" + (f"  ({reasons})" if reasons else ""),
            f"  bytes      {human_bytes(self.bytes)} ({self.bytes:,})",
            f"  duration   {self.elapsed_s:.2f}s",
            f"  rate       {rate:,.0f} lines/s",
            f"  partitions {parts}",
        ]
        if self.dlq_unsendable:
            lines.append(f"  dlq        {self.dlq_unsendable:,} rejected lines too large even for the dead-letter topic")
        if self.misplaced is not None:
            lines.append(f"  partition check: {self.misplaced:,} records off the partition intentstream.stream.engine.partitioning assigns")
        if self.failures:
            lines.append(f"  FAILED     {self.failures:,} records not delivered; first error: {self.first_error}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay; the CLI flags of ``replay --to-kafka``."""

    topic: str | None = None
    speed: float | None = None
    rate: float | None = None
    dead_letter: bool = True
    partitions_check: bool = False
    max_in_flight: int = MAX_IN_FLIGHT_RECORDS
    linger_ms: int = 20
    batch_size: int = 256 * 1024
    sort: bool = False
    allow_disorder: bool = False


class ReplayError(RuntimeError):
    """A replay could not start (missing file, topic with the wrong partition count)."""


def _pacer(opts: ReplayOptions) -> Callable[[Event | None], float]:
    """Seconds to wait before the next line: ``--rate``, ``--speed`` or no wait."""
    if opts.rate:
        limiter = RateLimiter(opts.rate)
        return lambda ev: limiter.reserve()
    if opts.speed:
        pacer = EventTimePacer(opts.speed)
        return lambda ev: pacer.delay(ev.ts_ms) if ev is not None else 0.0
    return lambda ev: 0.0


def open_input(path: str) -> BinaryIO:
    """The file to replay (``-`` is standard input); :class:`ReplayError` if unreadable."""
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _prepare_topics(settings: Settings, topic: str, dead_letter: str | None) -> None:
    """Create the target (and dead-letter) topic if missing: never rely on auto-creation."""
    from intentstream.agents.admin import ensure_topics

    wanted = {topic: settings.topics.partitions}
    if dead_letter:
        wanted.setdefault(dead_letter, settings.topics.partitions)
    ensure_topics(settings, wanted)


def _partition_count(settings: Settings, producer: Any, topic: str, check: bool) -> int:
    """The topic's partition count; with ``check``, :class:`ReplayError` unless it is
    ``[topics] partitions`` (what the offline replay simulates)."""
    partitions = len(producer.partitions_for(topic))
    if check and partitions != settings.topics.partitions:
        raise ReplayError(
            f"--partitions-check: topic {topic} has {partitions} partitions, [topics] partitions is "
            f"{settings.topics.partitions}; the offline replay would place users on other partitions"
        )
    return partitions


def offline_partitioner() -> Callable[[bytes, int], int]:
    """``intentstream.stream.engine.partitioning.partition_for``: where the offline replay puts a key."""
    try:
        from intentstream.stream.engine.partitioning import partition_for
    except ImportError as exc:
        raise ReplayError(f"--partitions-check needs intentstream.stream.engine.partitioning ({exc})") from exc
    return partition_for


class Replayer:
    """Sends the lines of one file; :meth:`run` returns the :class:`ReplayStats`."""

    def __init__(self, settings: Settings, opts: ReplayOptions, producer: Any, partitions: int, progress: Progress | None) -> None:
        self.settings = settings
        self.opts = opts
        self.producer = producer
        self.partitions = partitions
        self.topic = opts.topic or settings.topics.clickstream
        self.dlq_topic = settings.topics.dead_letter if opts.dead_letter else None
        self.progress = progress
        self.in_flight = InFlight(self.topic, max_records=opts.max_in_flight)
        self.wait = _pacer(opts)
        self._partition_for = offline_partitioner() if opts.partitions_check else None
        self.disorder = DisorderMeter.from_settings(settings, partitions, stop=not opts.allow_disorder)

    def run(self, lines: Iterable[tuple[int, bytes]], source: str) -> ReplayStats:
        from kafka.errors import KafkaError

        stats = self.stats = ReplayStats(source, self.topic, self.dlq_topic)
        started = time.monotonic()
        try:
            for lineno, raw, ev in measured_lines(lines, self.disorder):
                if self.in_flight.failures:
                    break  # a delivery failed for good (after the producer's retries): stop reading
                self._one(stats, source, lineno, raw, ev)
        except KeyboardInterrupt:
            stats.interrupted = True
        except DisorderError as exc:
            stats.disorder = exc
        except KafkaError as exc:  # send() itself failed, e.g. no metadata within max_block_ms
            self.in_flight.failures += 1
            self.in_flight.first_error = exc
        self._drain(stats)
        stats.elapsed_s = time.monotonic() - started
        return stats

    def _tick(self) -> None:
        """Redraw the progress line (also while the reader waits: pacing, back-pressure)."""
        if self.progress is not None:
            self.progress.update(self.stats.lines, self.stats.bytes)

    def _one(self, stats: ReplayStats, source: str, lineno: int, raw: bytes, ev: Event | Rejection) -> None:
        stats.lines += 1
        stats.bytes += len(raw)
        event = ev if isinstance(ev, Event) else None
        pause = self.wait(event)
        if pause > 0.001:
            sleep_for(pause, self._tick)
        if event is not None:
            self._send_event(stats, event, raw)
        elif isinstance(ev, Rejection):  # always, when it is no event
            stats.invalid[ev.reason] += 1
            if self.dlq_topic:
                self._send_dead_letter(stats, raw, ev, f"{source}:{lineno}")
        self._tick()

    def _send_event(self, stats: ReplayStats, ev: Event, raw: bytes) -> None:
        key = ev.user_id.encode()
        future = self.producer.send(self.topic, value=raw, key=key, timestamp_ms=ev.ts_ms)
        expected = self._partition_for(key, self.partitions) if self._partition_for is not None else -1
        self.in_flight.add(future, len(raw) + len(key), expected, self._tick)
        stats.sent += 1
        if stats.oldest_ts_ms is None or ev.ts_ms < stats.oldest_ts_ms:
            stats.oldest_ts_ms = ev.ts_ms

    def _send_dead_letter(self, stats: ReplayStats, raw: bytes, rejection: Any, source: str) -> None:
        from kafka.errors import MessageSizeTooLargeError

        assert self.dlq_topic is not None
        value = codec.dumps(dead_letter_record(raw, rejection, source))
        try:
            future = self.producer.send(self.dlq_topic, value=value)
        except MessageSizeTooLargeError:
            stats.dlq_unsendable += 1
            print(f"replay: {source}: rejected line too large for the dead-letter topic; skipped", file=sys.stderr)
            return
        self.in_flight.add(future, len(value), -1, self._tick)

    def _drain(self, stats: ReplayStats) -> None:
        """Wait for every record to be acknowledged (or failed), then copy the counts."""
        from kafka.errors import KafkaTimeoutError

        try:
            self.producer.flush(timeout=10 if stats.interrupted else 120)
            self.in_flight.settle(0, 0, self._tick)
        except KafkaTimeoutError:
            self.in_flight.give_up("not acknowledged before the flush timed out")
        f = self.in_flight
        stats.acked = f.acked_main
        stats.acked_dead_letter = f.acked_other
        stats.by_partition = dict(sorted(f.acked_by_partition.items()))
        stats.failures = f.failures
        stats.first_error = repr(f.first_error) if f.first_error else ""
        stats.misplaced = f.misplaced if self._partition_for is not None else None
        if self.progress is not None:
            self.progress.finish()


def replay_to_kafka(
    settings: Settings,
    path: str,
    opts: ReplayOptions = ReplayOptions(),
    *,
    progress: bool = True,
    progress_stream: TextIO | None = None,
) -> ReplayStats:
    """Replay a JSONL file into Kafka (see the module docstring); raises
    :class:`ReplayError` when it cannot start. The progress line goes to
    ``progress_stream`` (standard error by default) unless ``progress`` is false."""
    fh = open_input(path)
    topic = opts.topic or settings.topics.clickstream
    dlq = settings.topics.dead_letter if opts.dead_letter else None
    if dlq == topic:
        raise ReplayError(f"the dead-letter topic and the target are both {topic}")
    with fh, read_lines(fh, opts.sort) as lines:
        _prepare_topics(settings, topic, dlq)
        producer = make_producer(settings, linger_ms=opts.linger_ms, batch_size=opts.batch_size)
        try:
            partitions = _partition_count(settings, producer, topic, opts.partitions_check)
            if opts.partitions_check:
                offline_partitioner()  # fail before sending anything
            shown = Progress(progress_stream or sys.stderr) if progress else None
            return Replayer(settings, opts, producer, partitions, shown).run(lines, path)
        finally:
            producer.close(timeout=10)


def run(args: argparse.Namespace) -> int:
    """``replay``: dispatch ``--offline`` to ``intentstream.stream.cli.replay_offline``; run ``--to-kafka``."""
    check_replay_args(args.replay_parser, args)
    if args.offline:
        return _run_offline(args)
    settings = load_settings(args.config)
    opts = ReplayOptions(
        topic=resolve_topic(args.topic, settings) if args.topic else None,
        speed=args.speed,
        rate=args.rate,
        dead_letter=not args.no_dead_letter,
        partitions_check=args.partitions_check,
        max_in_flight=args.max_in_flight,
        sort=args.sort,
        allow_disorder=args.allow_disorder,
    )
    try:
        stats = with_kafka_errors("replay", settings, lambda: replay_to_kafka(settings, args.file, opts))
    except ReplayError as exc:
        return error("replay", exc)
    if isinstance(stats, int):
        return stats
    if stats.disorder is not None:  # intentstream.stream.cli.main prints it, exit status 2
        if stats.sent:
            print(stats.summary())
        raise stats.disorder
    print(stats.summary())
    warning = retention_warning(stats.topic, stats.oldest_ts_ms, topic_retention_ms(settings, stats.topic), int(time.time() * 1000))
    if warning:
        print(warning, file=sys.stderr)
    if stats.interrupted:
        return 130
    return 0 if stats.ok else 1


def _run_offline(args: argparse.Namespace) -> int:
    try:
        from intentstream.stream.cli.replay_offline import run as run_offline
    except ImportError as exc:
        return error("replay", f"--offline: the offline engine run is not available in this build ({exc}); "
                               "expected intentstream.stream.cli.replay_offline.run(args)")  # fmt: skip
    return int(run_offline(args) or 0)


_OFFLINE_ONLY = {"out": "--out", "outcomes": "--outcomes", "dead_letter": "--dead-letter", "partitions": "--partitions"}
_KAFKA_ONLY = {
    "topic": "--topic", "speed": "--speed", "rate": "--rate",
    "partitions_check": "--partitions-check", "no_dead_letter": "--no-dead-letter",
}  # fmt: skip


def check_replay_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse options of the other mode (``parser.error`` exits 2)."""
    if args.offline:
        wrong, mode = _KAFKA_ONLY, "--to-kafka"
    else:
        wrong, mode = _OFFLINE_ONLY, "--offline"
    used = [flag for name, flag in wrong.items() if getattr(args, name)]
    if used:
        parser.error(f"{', '.join(used)} only appl{'ies' if len(used) == 1 else 'y'} with {mode}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a JSONL clickstream into Kafka (--to-kafka) or through the engine offline (--offline)",
        description="Replay a JSONL clickstream, line by line: into Kafka (--to-kafka: key user_id, "
        "timestamp = event time, value = the original bytes) or through the engine offline (--offline).",
    )
    p.add_argument("file", help="JSONL file, or - for standard input")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--to-kafka", action="store_true", help="produce the lines to Kafka")
    mode.add_argument("--offline", action="store_true", help="run the engine on the file, no servers")
    add_order_args(p)
    k = p.add_argument_group("--to-kafka")
    k.add_argument("--topic", help="target topic or short name (default: [topics] clickstream)")
    pace = k.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=positive_float, metavar="X", help="replay at X times event-time speed")
    pace.add_argument("--rate", type=positive_float, metavar="N", help="at most N lines per second")
    k.add_argument("--partitions-check", action="store_true",
                   help="refuse a topic whose partition count differs from [topics] partitions, and verify every "
                        "record lands on the partition intentstream.stream.engine.partitioning (the offline replay) assigns")  # fmt: skip
    k.add_argument("--no-dead-letter", action="store_true", help="only count malformed lines (default: send them to [topics] dead_letter)")
    k.add_argument("--max-in-flight", type=positive_int, default=MAX_IN_FLIGHT_RECORDS, metavar="N",
                   help="records sent but not yet acknowledged before reading pauses (default %(default)s)")  # fmt: skip
    o = p.add_argument_group("--offline")
    o.add_argument("--out", metavar="FILE", help="decisions output (JSONL)")
    o.add_argument("--outcomes", metavar="FILE", help="outcome records of the decisions whose window closed (JSONL)")
    o.add_argument("--dead-letter", metavar="FILE", help="write rejected lines here (JSONL)")
    o.add_argument("--partitions", type=positive_int, metavar="N", help="simulated partitions (default: [topics] partitions)")
    p.set_defaults(func=run, replay_parser=p)
