"""``intentstream stats [--once] [--interval S] [--json]``: a terminal table of the workers'
``ops.metrics`` records (the record :mod:`intentstream.stream.ops.metrics` builds); with
``--json`` the same figures as one JSON object (a line; every interval without ``--once``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from intentstream.agents.commands.kafka_errors import with_kafka_errors
from intentstream.agents.commands.topic_reading import TopicNotFound, assign_partitions, reached, seek_last
from intentstream.agents.kafka import make_consumer
from intentstream.stream import codec
from intentstream.stream.cli import positive_float
from intentstream.stream.cli.terminal import error
from intentstream.stream.cli.terminal import isatty
from intentstream.stream.contract.events import format_ts
from intentstream.stream.settings import Settings, default_settings, load_settings


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
    counters_in = obj.get("counters")
    if not isinstance(counters_in, dict):
        counters_in = {}
    counters = {str(k): n for k, v in counters_in.items() if (n := _number(v)) is not None}
    parts_in = obj.get("partitions")
    if not isinstance(parts_in, dict):
        parts_in = {}
    partitions = {str(p): v for p, v in parts_in.items() if isinstance(v, dict)}
    return Snapshot(worker, ts, counters, partitions)


class MetricsBoard:
    """The latest two snapshots of each worker; renders the ``stats`` table."""

    def __init__(self, topic: str | None = None) -> None:
        """``topic``: the metrics topic shown in the table (default: ``[topics] metrics``)."""
        self.topic = default_settings().topics.metrics if topic is None else topic
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

    def to_dict(self, now_ms: int) -> dict[str, Any]:
        """What :meth:`render` shows, as JSON-ready data: per worker its last report, the
        counters summed over the workers with their summed rates (None: no rate yet), and
        each partition's fields as the worker reported them.

        >>> board = MetricsBoard("ops.metrics")
        >>> board.add(b'{"ts": "2026-01-05T10:00:00Z", "worker": "w1", "counters": {"events": 100}, "partitions": {"0": {"lag": 2}}}')
        >>> d = board.to_dict(1767607205000)
        >>> d["workers"]
        [{'worker': 'w1', 'last_report': '2026-01-05T10:00:00.000Z', 'age_s': 5.0, 'partitions': 1, 'lag': 2}]
        >>> d["counters"], d["partitions"]
        ({'events': {'total': 100, 'rate_per_s': None}}, [{'partition': '0', 'worker': 'w1', 'lag': 2}])
        """
        latest = self.latest()
        workers = []
        for s in latest:
            lags = [_number(p.get("lag")) for p in s.partitions.values()]
            workers.append({
                "worker": s.worker,
                "last_report": format_ts(s.ts_ms),
                "age_s": max(0.0, (now_ms - s.ts_ms) / 1000.0),
                "partitions": len(s.partitions),
                "lag": sum(n for n in lags if n is not None),
            })  # fmt: skip
        totals, rates = self._totals(latest)
        entries = sorted(((p, s.worker, info) for s in latest for p, info in s.partitions.items()), key=lambda e: (_partition_order(e[0]), e[1]))
        return {
            "topic": self.topic,
            "at": format_ts(now_ms),
            "records": self.records,
            "unreadable": self.skipped,
            "workers": workers,
            "counters": {name: {"total": totals[name], "rate_per_s": rates.get(name)} for name in sorted(totals)},
            "partitions": [{"partition": p, "worker": worker, **info} for p, worker, info in entries],
        }

    def _workers(self, latest: list[Snapshot], now_ms: int) -> str:
        rows = []
        for s in latest:
            lags = [_number(p.get("lag")) for p in s.partitions.values()]
            lag = sum(n for n in lags if n is not None)
            age = max(0.0, (now_ms - s.ts_ms) / 1000.0)
            rows.append([s.worker, format_ts(s.ts_ms), _fmt_age(age), str(len(s.partitions)), _fmt_num(lag)])
        return format_table(["WORKER", "LAST REPORT", "AGE", "PARTITIONS", "LAG"], rows, right={2, 3, 4})

    def _totals(self, latest: list[Snapshot]) -> tuple[Counter[str], dict[str, float]]:
        """Counters summed over the workers, and their summed rates per second."""
        totals: Counter[str] = Counter()
        rates: dict[str, float] = {}
        for s in latest:
            totals.update(s.counters)
            for name, rate in self.rates(s.worker).items():
                rates[name] = rates.get(name, 0.0) + rate
        return totals, rates

    def _counters(self, latest: list[Snapshot]) -> str:
        totals, rates = self._totals(latest)
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
    as_json: bool = False,
) -> int:
    """Render the metrics table to ``out`` (standard output) once, after reading to the
    end of the topic, or every ``interval_s`` seconds until Ctrl-C; ``as_json``: one JSON
    line (:meth:`MetricsBoard.to_dict`) instead of each table."""
    out = out or sys.stdout
    topic = settings.topics.metrics
    consumer = make_consumer(settings)
    board = MetricsBoard(topic)
    try:
        try:
            tps = assign_partitions(consumer, topic)
        except TopicNotFound as exc:
            return error("stats", exc)
        end = seek_last(consumer, tps, history)
        while not reached(consumer, end):
            _feed(board, consumer, 200)
        if once:
            out.write(_json_line(board) if as_json else board.render(_now_ms()))
            return 0
        return _stats_loop(consumer, board, interval_s, out, as_json)
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()


def _feed(board: MetricsBoard, consumer: Any, timeout_ms: int) -> None:
    for records in consumer.poll(timeout_ms=timeout_ms).values():
        for r in records:
            board.add(r.value, r.key, r.timestamp)


def _json_line(board: MetricsBoard) -> str:
    return codec.dumps_line(board.to_dict(_now_ms())).decode()


def _stats_loop(consumer: Any, board: MetricsBoard, interval_s: float, out: TextIO, as_json: bool = False) -> int:
    tty = isatty(out)
    while True:
        if as_json:
            out.write(_json_line(board))
        else:
            text = board.render(_now_ms())
            out.write(("\x1b[H\x1b[2J" + text) if tty else text + "\n")
        out.flush()
        deadline = time.monotonic() + interval_s
        while (left := deadline - time.monotonic()) > 0:
            _feed(board, consumer, max(1, int(left * 1000)))


def _now_ms() -> int:
    return int(time.time() * 1000)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    return with_kafka_errors("stats", settings, lambda: stats(settings, once=args.once, interval_s=args.interval, as_json=args.json))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="live table of the workers' metrics ([topics] metrics)")
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument("--interval", type=positive_float, default=2.0, metavar="S", help="refresh every S seconds (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object a line instead of the table")
    p.set_defaults(func=run)
