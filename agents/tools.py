"""The operator's Kafka tools: ``replay``, ``tail`` and ``stats`` (kafka-python).

``intentstream replay FILE --to-kafka [--topic T] [--speed X | --rate N] [--partitions-check] [--no-dead-letter]``
    Streams a JSONL clickstream of any size into Kafka, line by line: key = the event's
    ``user_id``, record timestamp = the event time, value = the original line bytes
    (never re-serialized). Malformed lines go to the dead-letter topic as
    :func:`intentstream.stream.contract.dead_letter.dead_letter_record` JSON (or are only counted with
    ``--no-dead-letter``). Idempotent producer with ``acks=all``; a bounded number of
    unacknowledged records (back-pressure); ``--speed X`` keeps X times the event-time
    pace, ``--rate N`` caps lines/s. ``replay FILE --offline ...`` is the offline engine
    run, dispatched to ``intentstream.stream.cli.replay.run(args)``.
``intentstream tail TOPIC [-n N] [--follow] [--from-beginning] [--partition P] [--max N] [--raw] [--key USER]``
    Pretty-prints a topic (short names such as ``clickstream``, ``dlq``, ``audit`` or
    ``push`` map to the configured names), without a consumer group.
``intentstream stats [--once] [--interval S]``
    A terminal table of the workers' ``ops.metrics`` records.

Network code lives here, not in ``stream/``; kafka-python is imported only when a command
runs, so ``intentstream --help`` and the offline commands never load it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, BinaryIO, TextIO

from intentstream.stream import codec
from intentstream.stream.cli import non_negative_int, positive_int
from intentstream.stream.contract.events import Event, format_ts, parse_event
from intentstream.stream.settings import Settings, load_settings
from intentstream.stream.contract.dead_letter import dead_letter_record, iter_lines

# --------------------------------------------------------------------------- topic names

#: Short topic names the tools accept, and the settings they stand for.
SHORT_NAMES: tuple[str, ...] = (
    "clickstream", "dlq", "segments", "audit", "metrics", "alerts",
    "push", "sms", "email", "in_app", "coupon",
)  # fmt: skip


def resolve_topic(name: str, settings: Settings) -> str:
    """The configured topic a short name stands for; any other name is used literally.

    >>> from intentstream.stream.settings import load_settings
    >>> s = load_settings(env={"INTENTSTREAM_TOPICS__ACTIONS_PREFIX": "act."})
    >>> [resolve_topic(n, s) for n in ("dlq", "push", "metrics", "my.topic")]
    ['clickstream.dlq', 'act.push', 'ops.metrics', 'my.topic']
    """
    t = settings.topics
    named = {
        "clickstream": t.clickstream,
        "dlq": t.dead_letter,
        "dead_letter": t.dead_letter,
        "segments": t.segments,
        "audit": t.audit,
        "metrics": t.metrics,
        "alerts": t.alerts,
    }
    if name in named:
        return named[name]
    if name in ("push", "sms", "email", "in_app", "coupon"):
        return t.actions_prefix + name
    return name


# --------------------------------------------------------------------------- pacing


class RateLimiter:
    """Paces calls to at most ``rate`` per second: call :meth:`reserve` before each event
    and sleep the seconds it returns.

    Event *i* is never released before ``start + i / rate``. After a stall (a slow
    broker) the schedule catches up by at most ``burst_s`` worth of events, so a
    one-second window never carries much more than the cap.

    >>> now = [0.0]
    >>> limiter = RateLimiter(4, clock=lambda: now[0])
    >>> [limiter.reserve() for _ in range(5)]
    [0.0, 0.25, 0.5, 0.75, 1.0]
    >>> now[0] = 10.0  # a long stall: the missed slots are not released all at once
    >>> round(limiter.reserve(), 3), round(limiter.reserve(), 3)
    (0.0, 0.15)
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic, burst_s: float = 0.1) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.interval = 1.0 / rate
        self.clock = clock
        self.burst_s = burst_s
        self.next_at: float | None = None

    def reserve(self) -> float:
        """Seconds to wait before the next event may go; books its slot."""
        now = self.clock()
        if self.next_at is None:
            self.next_at = now
        self.next_at = max(self.next_at, now - self.burst_s)
        wait = self.next_at - now
        self.next_at += self.interval
        return max(0.0, wait)


class EventTimePacer:
    """Replays at ``speed`` times event-time speed: :meth:`delay` gives the seconds to
    wait before sending an event with time ``ts_ms``.

    The schedule is anchored on the first event; only events that advance the newest
    event time seen wait (late, out-of-order events go at once). When the replay falls
    more than ``max_lag_s`` behind its schedule (a slow broker), it re-anchors instead
    of bursting to catch up.

    >>> now = [100.0]
    >>> pacer = EventTimePacer(10, clock=lambda: now[0])
    >>> pacer.delay(1_000_000), pacer.delay(1_020_000), pacer.delay(1_005_000)
    (0.0, 2.0, 0.0)
    >>> now[0] = 150.0  # 48 s behind: re-anchor, no burst
    >>> pacer.delay(1_030_000), pacer.delay(1_040_000)
    (0.0, 1.0)
    """

    def __init__(self, speed: float, clock: Callable[[], float] = time.monotonic, max_lag_s: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self.clock = clock
        self.max_lag_s = max_lag_s
        self.anchor: tuple[int, float] | None = None  # (event ms, monotonic s)
        self.newest_ms: int | None = None

    def delay(self, ts_ms: int) -> float:
        """Seconds to wait before the event at ``ts_ms`` is due."""
        now = self.clock()
        if self.anchor is None:
            self.anchor, self.newest_ms = (ts_ms, now), ts_ms
            return 0.0
        assert self.newest_ms is not None
        if ts_ms <= self.newest_ms:
            return 0.0
        self.newest_ms = ts_ms
        due = self.anchor[1] + (ts_ms - self.anchor[0]) / 1000.0 / self.speed
        if now - due > self.max_lag_s:
            self.anchor = (ts_ms, now)
            return 0.0
        return max(0.0, due - now)


def sleep_for(seconds: float, tick: Callable[[], None] | None = None, step: float = 0.25) -> None:
    """Sleep, in steps of at most ``step`` s calling ``tick`` between them (progress)."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, step))
        if tick is not None:
            tick()


# --------------------------------------------------------------------------- progress


def human_bytes(n: float) -> str:
    """
    >>> human_bytes(512), human_bytes(2_500_000)
    ('512 B', '2.4 MiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """A progress line on a stream: redrawn with ``\\r`` at most every ``tty_every`` s
    on a terminal, else printed as a line every ``line_every`` s."""

    def __init__(
        self,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
        tty_every: float = 0.25,
        line_every: float = 10.0,
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.tty = _isatty(stream) if tty is None else tty
        self.every = tty_every if self.tty else line_every
        self.started = clock()
        self.last = self.started
        self.drawn = False

    def text(self, events: int, nbytes: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        return f"{events:,} events  {events / elapsed:,.0f} events/s  {human_bytes(nbytes)}  {elapsed:.1f}s"

    def update(self, events: int, nbytes: int) -> None:
        """Show the counts if the last line is old enough; cheap otherwise."""
        now = self.clock()
        if now - self.last < self.every:
            return
        self.last = now
        line = self.text(events, nbytes, now)
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self.drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End a redrawn line so what follows starts on a line of its own."""
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False


def _isatty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------- replay


#: Default bound on records sent but not yet acknowledged (back-pressure).
MAX_IN_FLIGHT_RECORDS = 20_000
#: Default bound on their bytes.
MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024


class InFlight:
    """The futures of records sent and not yet settled, oldest first, in a bounded window.

    When the window holds more than ``max_records`` records or ``max_bytes`` bytes,
    :meth:`add` waits for the oldest until half of either is left: the reader pauses
    while the producer keeps the other half on the wire (back-pressure; kafka-python
    3.x's accumulator itself is unbounded). Settled futures become counts and are
    dropped, so memory stays bounded whatever the file size.
    """

    def __init__(self, topic: str, max_records: int = MAX_IN_FLIGHT_RECORDS, max_bytes: int = MAX_IN_FLIGHT_BYTES) -> None:
        self.topic = topic
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.window: deque[tuple[Any, int, int]] = deque()  # (future, bytes, expected partition or -1)
        self.bytes = 0
        self.acked_by_partition: Counter[int] = Counter()
        self.acked_other = 0  # dead-letter records
        self.failures = 0
        self.first_error: BaseException | None = None
        self.misplaced = 0  # --partitions-check: records off the partition expected

    def add(self, future: Any, size: int, expected_partition: int = -1, tick: Callable[[], None] | None = None) -> None:
        """Track one record handed to ``producer.send``; wait if the window is full."""
        self.window.append((future, size, expected_partition))
        self.bytes += size
        if len(self.window) > self.max_records or self.bytes > self.max_bytes:
            self.settle(self.max_records // 2, self.max_bytes // 2, tick)

    def settle(self, records: int = 0, nbytes: int = 0, tick: Callable[[], None] | None = None) -> None:
        """Wait for the oldest records until at most ``records`` / ``nbytes`` are in flight."""
        from kafka.errors import KafkaTimeoutError

        window = self.window
        while window and (len(window) > records or self.bytes > nbytes):
            future, size, expected = window[0]
            if not future.is_done:
                try:
                    future.get(timeout=0.25)
                except KafkaTimeoutError:
                    if not future.is_done:  # still waiting, not a delivery timeout
                        if tick is not None:
                            tick()
                        continue
                except Exception:  # noqa: BLE001 - a failed delivery; counted below
                    pass
            window.popleft()
            self.bytes -= size
            self._count(future, expected)

    def _count(self, future: Any, expected: int) -> None:
        if future.exception is not None:
            self.failures += 1
            self.first_error = self.first_error or future.exception
            return
        meta = future.value
        if meta.topic != self.topic:
            self.acked_other += 1
            return
        self.acked_by_partition[meta.partition] += 1
        if expected >= 0 and meta.partition != expected:
            self.misplaced += 1

    def give_up(self, reason: str) -> None:
        """Count every record still unsettled as failed (the producer is closing)."""
        from kafka.errors import KafkaTimeoutError

        while self.window:
            future, size, expected = self.window.popleft()
            self.bytes -= size
            if future.is_done:
                self._count(future, expected)
            else:
                self.failures += 1
                self.first_error = self.first_error or KafkaTimeoutError(reason)

    @property
    def acked_main(self) -> int:
        return sum(self.acked_by_partition.values())


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

    @property
    def ok(self) -> bool:
        return not self.interrupted and self.failures == 0 and not self.misplaced

    def summary(self) -> str:
        rate = self.lines / max(self.elapsed_s, 1e-9)
        n_invalid = sum(self.invalid.values())
        where = f"-> {self.dead_letter_topic}" if self.dead_letter_topic else "skipped (--no-dead-letter)"
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.invalid.items()))
        parts = "  ".join(f"{p}: {n:,}" for p, n in sorted(self.by_partition.items())) or "-"
        lines = [
            f"replay {self.path} -> {self.topic}" + ("  (INTERRUPTED)" if self.interrupted else ""),
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


class ReplayError(RuntimeError):
    """A replay could not start (missing file, topic with the wrong partition count)."""


def make_producer(settings: Settings, **overrides: Any) -> Any:
    """An idempotent ``acks=all`` kafka-python producer from the settings (raw bytes)."""
    from kafka import KafkaProducer

    opts = settings.kafka.kafka_python_options()
    opts.update(
        enable_idempotence=True,
        acks="all",
        max_in_flight_requests_per_connection=5,  # <= 5 keeps per-partition order with idempotence
        allow_auto_create_topics=False,
        linger_ms=20,
        batch_size=256 * 1024,
    )
    opts.update(overrides)
    return KafkaProducer(**opts)


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


def topic_retention_ms(settings: Settings, topic: str) -> int | None:
    """The topic's effective ``retention.ms`` (None if unknown, -1 for unlimited)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from intentstream.agents.admin import admin_client

    admin = admin_client(settings)
    try:
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=["retention.ms"])], config_filter="all"
        )
        entry = found.get("topic", {}).get(topic, {}).get("retention.ms") or {}
        return int(entry["value"]) if entry.get("value") is not None else None
    except Exception:  # advisory only: never fail a replay over it
        return None
    finally:
        admin.close()


def retention_warning(stats: ReplayStats, retention_ms: int | None, now_ms: int) -> str | None:
    """A warning when replayed event times are older than the topic keeps records.

    The broker applies time retention to the record timestamps, i.e. the event times:
    records older than ``retention.ms`` disappear at its next retention check.

    >>> s = ReplayStats("f", "t", None, oldest_ts_ms=0)
    >>> retention_warning(s, 86_400_000, 2 * 86_400_000)[:40]
    'warning: the oldest event time (1970-01-'
    >>> retention_warning(s, -1, 2 * 86_400_000) is None
    True
    """
    if stats.oldest_ts_ms is None or retention_ms is None or retention_ms < 0:
        return None
    if stats.oldest_ts_ms >= now_ms - retention_ms:
        return None
    return (
        f"warning: the oldest event time ({format_ts(stats.oldest_ts_ms)}) is older than topic "
        f"{stats.topic}'s retention.ms={retention_ms}; the broker deletes such records at its next "
        f"retention check. Replay historical files into a topic with retention.ms=-1 (or larger)."
    )


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

    def run(self, fh: BinaryIO, source: str) -> ReplayStats:
        from kafka.errors import KafkaError

        stats = self.stats = ReplayStats(source, self.topic, self.dlq_topic)
        started = time.monotonic()
        try:
            for lineno, raw in iter_lines(fh):
                if self.in_flight.failures:
                    break  # a delivery failed for good (after the producer's retries): stop reading
                self._one(stats, source, lineno, raw)
        except KeyboardInterrupt:
            stats.interrupted = True
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

    def _one(self, stats: ReplayStats, source: str, lineno: int, raw: bytes) -> None:
        stats.lines += 1
        stats.bytes += len(raw)
        ev = parse_event(raw)
        event = ev if isinstance(ev, Event) else None
        pause = self.wait(event)
        if pause > 0.001:
            sleep_for(pause, self._tick)
        if event is not None:
            self._send_event(stats, event, raw)
        else:
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
    with fh:
        _prepare_topics(settings, topic, dlq)
        producer = make_producer(settings, linger_ms=opts.linger_ms, batch_size=opts.batch_size)
        try:
            partitions = _partition_count(settings, producer, topic, opts.partitions_check)
            if opts.partitions_check:
                offline_partitioner()  # fail before sending anything
            shown = Progress(progress_stream or sys.stderr) if progress else None
            return Replayer(settings, opts, producer, partitions, shown).run(fh, path)
        finally:
            producer.close(timeout=10)


def run_replay(args: argparse.Namespace) -> int:
    """``replay``: dispatch ``--offline`` to ``intentstream.stream.cli.replay``; run ``--to-kafka``."""
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
    )
    try:
        stats = with_kafka_errors("replay", settings, lambda: replay_to_kafka(settings, args.file, opts))
    except ReplayError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    if isinstance(stats, int):
        return stats
    print(stats.summary())
    warning = retention_warning(stats, topic_retention_ms(settings, stats.topic), int(time.time() * 1000))
    if warning:
        print(warning, file=sys.stderr)
    if stats.interrupted:
        return 130
    return 0 if stats.ok else 1


def _run_offline(args: argparse.Namespace) -> int:
    try:
        from intentstream.stream.cli.replay import run
    except ImportError as exc:
        print(
            f"replay --offline: the offline engine run is not available in this build ({exc}); "
            f"expected intentstream.stream.cli.replay.run(args)",
            file=sys.stderr,
        )
        return 2
    return int(run(args) or 0)


_OFFLINE_ONLY = {"out": "--out", "dead_letter": "--dead-letter", "partitions": "--partitions"}
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


# --------------------------------------------------------------------------- consumers


def make_consumer(settings: Settings, **overrides: Any) -> Any:
    """A group-less consumer (``group_id=None``, no commits): reading never disturbs the workers."""
    from kafka import KafkaConsumer

    opts = settings.kafka.kafka_python_options()
    opts.update(
        group_id=None,
        enable_auto_commit=False,
        allow_auto_create_topics=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
    )
    opts.update(overrides)
    return KafkaConsumer(**opts)


class TopicNotFound(LookupError):
    pass


def assign_partitions(consumer: Any, topic: str, partition: int | None = None) -> list[Any]:
    """Assign the topic's partitions (or one of them) to the consumer; their TopicPartitions."""
    from kafka import TopicPartition

    found = sorted(consumer.partitions_for_topic(topic) or ())
    if not found:
        raise TopicNotFound(f"topic {topic!r} does not exist (or is not readable)")
    if partition is not None:
        if partition not in found:
            raise TopicNotFound(f"topic {topic!r} has no partition {partition} (it has 0-{found[-1]})")
        found = [partition]
    tps = [TopicPartition(topic, p) for p in found]
    consumer.assign(tps)
    return tps


def seek_last(consumer: Any, tps: list[Any], last: int | None) -> dict[Any, int]:
    """Seek each partition ``last`` records before its end (None: the beginning).

    Returns the end offsets captured now: where a non-following read stops."""
    begin = consumer.beginning_offsets(tps)
    end = consumer.end_offsets(tps)
    for tp in tps:
        start = begin[tp] if last is None else max(begin[tp], end[tp] - last)
        consumer.seek(tp, start)
    return end


def reached(consumer: Any, end: Mapping[Any, int]) -> bool:
    """True once every partition's position is at or past its captured end offset."""
    return all(consumer.position(tp) >= offset for tp, offset in end.items())


# --------------------------------------------------------------------------- tail

_COLOURS = {"pos": "\x1b[2m", "ts": "\x1b[36m", "key": "\x1b[33m", "bad": "\x1b[31m", "reset": "\x1b[0m"}


def use_colour(stream: IO[Any]) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set."""
    return _isatty(stream) and not os.environ.get("NO_COLOR")


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
            print(f"tail: {exc}", file=sys.stderr)
            return 2
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


def run_tail(args: argparse.Namespace) -> int:
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


# --------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class Snapshot:
    """One metrics record of one worker, as far as it could be read."""

    worker: str
    ts_ms: int
    counters: dict[str, float]
    partitions: dict[str, dict[str, Any]]


def parse_iso_ms(text: Any) -> int | None:
    """Epoch ms from an ISO-8601 string with an offset (or ``Z``), else None.

    >>> parse_iso_ms("2026-01-05T10:00:00.5Z"), parse_iso_ms("noon"), parse_iso_ms(None)
    (1767607200500, None, None)
    """
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return int(dt.timestamp() * 1000)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def parse_snapshot(value: bytes | None, key: bytes | None, record_ts_ms: int | None) -> Snapshot | None:
    """Read a metrics record leniently; None if it is not a JSON object.

    ``ts`` falls back to the record timestamp, ``worker`` to the record key; counters
    that are not numbers and partition entries that are not objects are left out.

    >>> s = parse_snapshot(b'{"ts": "2026-01-05T10:00:00Z", "worker": "w1", "counters": {"events": 5, "x": "y"}}', None, 0)
    >>> s.worker, s.ts_ms, s.counters, s.partitions
    ('w1', 1767607200000, {'events': 5}, {})
    >>> parse_snapshot(b'[1]', None, 0) is None
    True
    """
    try:
        obj = codec.loads(value) if value is not None else None
    except codec.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    ts = parse_iso_ms(obj.get("ts"))
    if ts is None:
        ts = record_ts_ms if record_ts_ms is not None and record_ts_ms >= 0 else 0
    worker = obj.get("worker")
    if not isinstance(worker, str) or not worker:
        worker = key.decode("utf-8", "replace") if key else "?"
    counters_in = obj.get("counters") if isinstance(obj.get("counters"), dict) else {}
    counters = {str(k): n for k, v in counters_in.items() if (n := _number(v)) is not None}
    parts_in = obj.get("partitions") if isinstance(obj.get("partitions"), dict) else {}
    partitions = {str(p): v for p, v in parts_in.items() if isinstance(v, dict)}
    return Snapshot(worker, ts, counters, partitions)


class MetricsBoard:
    """The latest two snapshots of each worker; renders the ``stats`` table."""

    def __init__(self, topic: str = "ops.metrics") -> None:
        self.topic = topic
        self.workers: dict[str, list[Snapshot]] = {}
        self.records = 0
        self.skipped = 0

    def add(self, value: bytes | None, key: bytes | None = None, record_ts_ms: int | None = None) -> None:
        """Take one metrics record (bytes as read from Kafka)."""
        self.records += 1
        snap = parse_snapshot(value, key, record_ts_ms)
        if snap is None:
            self.skipped += 1
            return
        # the newest two by report time, whatever order they arrive in; a repeated ts replaces
        kept = [s for s in self.workers.get(snap.worker, ()) if s.ts_ms != snap.ts_ms]
        self.workers[snap.worker] = sorted([*kept, snap], key=lambda s: s.ts_ms)[-2:]

    def latest(self) -> list[Snapshot]:
        return [h[-1] for _, h in sorted(self.workers.items())]

    def rates(self, worker: str) -> dict[str, float]:
        """Per-second counter deltas between a worker's last two snapshots (resets left out)."""
        history = self.workers.get(worker)
        if not history or len(history) < 2:
            return {}
        prev, last = history[0], history[1]
        dt = (last.ts_ms - prev.ts_ms) / 1000.0
        if dt <= 0:
            return {}
        out = {}
        for name, value in last.counters.items():
            before = prev.counters.get(name)
            if before is not None and value >= before:
                out[name] = (value - before) / dt
        return out

    def render(self, now_ms: int) -> str:
        """The whole table as text."""
        latest = self.latest()
        head = f"{self.topic}: {len(latest)} worker(s), {self.records:,} records read"
        head += f", {self.skipped:,} unreadable" if self.skipped else ""
        head += f"  at {format_ts(now_ms)}"
        if not latest:
            return head + "\n(no metrics records yet)\n"
        sections = [head, self._workers(latest, now_ms), self._counters(latest), self._partitions(latest)]
        return "\n\n".join(s for s in sections if s) + "\n"

    def _workers(self, latest: list[Snapshot], now_ms: int) -> str:
        rows = []
        for s in latest:
            lags = [_number(p.get("lag")) for p in s.partitions.values()]
            lag = sum(n for n in lags if n is not None)
            age = max(0.0, (now_ms - s.ts_ms) / 1000.0)
            rows.append([s.worker, format_ts(s.ts_ms), _fmt_age(age), str(len(s.partitions)), _fmt_num(lag)])
        return format_table(["WORKER", "LAST REPORT", "AGE", "PARTITIONS", "LAG"], rows, right={2, 3, 4})

    def _counters(self, latest: list[Snapshot]) -> str:
        totals: Counter[str] = Counter()
        rates: dict[str, float] = {}
        for s in latest:
            totals.update(s.counters)
            for name, rate in self.rates(s.worker).items():
                rates[name] = rates.get(name, 0.0) + rate
        rows = [[name, _fmt_num(totals[name]), f"{rates[name]:,.1f}" if name in rates else "-"] for name in sorted(totals)]
        return format_table(["COUNTER", "TOTAL", "RATE/S"], rows, right={1, 2}) if rows else ""

    def _partitions(self, latest: list[Snapshot]) -> str:
        entries = [(p, s.worker, info) for s in latest for p, info in s.partitions.items()]
        if not entries:
            return ""
        extras = sorted({k for _, _, info in entries for k, v in info.items() if k not in ("watermark", "lag") and _scalar(v)})
        rows = []
        for p, worker, info in sorted(entries, key=lambda e: (_partition_order(e[0]), e[1])):
            cells = [p, worker, str(info.get("watermark", "-")), _fmt_cell(info.get("lag"))]
            rows.append(cells + [_fmt_cell(info.get(k)) for k in extras])
        headers = ["PARTITION", "WORKER", "WATERMARK", "LAG", *(k.upper() for k in extras)]
        return format_table(headers, rows, right={0, *range(3, len(headers))})


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _partition_order(p: str) -> tuple[int, str]:
    return (int(p), "") if p.isdigit() else (1 << 30, p)


def _fmt_num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _fmt_cell(value: Any) -> str:
    if value is None:
        return "-"
    if _number(value) is not None:
        return _fmt_num(value)
    return str(value)


def _fmt_age(seconds: float) -> str:
    """
    >>> _fmt_age(4.2), _fmt_age(125), _fmt_age(7300)
    ('4s', '2m05s', '2h01m')
    """
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_table(headers: list[str], rows: Iterable[list[str]], right: Collection[int] = ()) -> str:
    """Columns padded to their widest cell; ``right`` holds right-aligned column indexes.

    >>> print(format_table(["A", "NUM"], [["x", "1"], ["yy", "200"]], right={1}))
    A   NUM
    x     1
    yy  200
    """
    rows = [headers, *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    return "\n".join(line(r) for r in rows)


#: Records read per partition of the metrics topic when ``stats`` starts.
STATS_HISTORY = 200


def stats(
    settings: Settings,
    once: bool = False,
    interval_s: float = 2.0,
    out: TextIO | None = None,
    history: int = STATS_HISTORY,
) -> int:
    """Render the metrics table to ``out`` (standard output) once, after reading to the
    end of the topic, or every ``interval_s`` seconds until Ctrl-C."""
    out = out or sys.stdout
    topic = settings.topics.metrics
    consumer = make_consumer(settings)
    board = MetricsBoard(topic)
    try:
        try:
            tps = assign_partitions(consumer, topic)
        except TopicNotFound as exc:
            print(f"stats: {exc}", file=sys.stderr)
            return 2
        end = seek_last(consumer, tps, history)
        while not reached(consumer, end):
            _feed(board, consumer, 200)
        if once:
            out.write(board.render(_now_ms()))
            return 0
        return _stats_loop(consumer, board, interval_s, out)
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()


def _feed(board: MetricsBoard, consumer: Any, timeout_ms: int) -> None:
    for records in consumer.poll(timeout_ms=timeout_ms).values():
        for r in records:
            board.add(r.value, r.key, r.timestamp)


def _stats_loop(consumer: Any, board: MetricsBoard, interval_s: float, out: TextIO) -> int:
    tty = _isatty(out)
    while True:
        text = board.render(_now_ms())
        out.write(("\x1b[H\x1b[2J" + text) if tty else text + "\n")
        out.flush()
        deadline = time.monotonic() + interval_s
        while (left := deadline - time.monotonic()) > 0:
            _feed(board, consumer, max(1, int(left * 1000)))


def _now_ms() -> int:
    return int(time.time() * 1000)


def run_stats(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    return with_kafka_errors("stats", settings, lambda: stats(settings, once=args.once, interval_s=args.interval))


# --------------------------------------------------------------------------- CLI


def with_kafka_errors(command: str, settings: Settings, fn: Callable[[], Any]) -> Any:
    """``fn()``, or exit status 1 with a one-line message when Kafka fails (no traceback)."""
    from kafka.errors import KafkaError

    try:
        return fn()
    except KafkaError as exc:
        print(f"{command}: Kafka at {settings.kafka.bootstrap_servers}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def _register_replay(sub: argparse._SubParsersAction) -> None:
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
    k = p.add_argument_group("--to-kafka")
    k.add_argument("--topic", help="target topic or short name (default: [topics] clickstream)")
    pace = k.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_positive_float, metavar="X", help="replay at X times event-time speed")
    pace.add_argument("--rate", type=_positive_float, metavar="N", help="at most N lines per second")
    k.add_argument("--partitions-check", action="store_true",
                   help="refuse a topic whose partition count differs from [topics] partitions, and verify every "
                        "record lands on the partition intentstream.stream.engine.partitioning (the offline replay) assigns")  # fmt: skip
    k.add_argument("--no-dead-letter", action="store_true", help="only count malformed lines (default: send them to [topics] dead_letter)")
    k.add_argument("--max-in-flight", type=positive_int, default=MAX_IN_FLIGHT_RECORDS, metavar="N",
                   help="records sent but not yet acknowledged before reading pauses (default %(default)s)")  # fmt: skip
    o = p.add_argument_group("--offline")
    o.add_argument("--out", metavar="FILE", help="decisions output (JSONL)")
    o.add_argument("--dead-letter", metavar="FILE", help="write rejected lines here (JSONL)")
    o.add_argument("--partitions", type=positive_int, metavar="N", help="simulated partitions (default: [topics] partitions)")
    p.set_defaults(func=run_replay, replay_parser=p)


def _register_tail(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=run_tail)


def _register_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="live table of the workers' metrics ([topics] metrics)")
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument("--interval", type=_positive_float, default=2.0, metavar="S", help="refresh every S seconds (default %(default)s)")
    p.set_defaults(func=run_stats)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``replay``, ``tail`` and ``stats`` to the ``intentstream`` command."""
    _register_replay(sub)
    _register_tail(sub)
    _register_stats(sub)
