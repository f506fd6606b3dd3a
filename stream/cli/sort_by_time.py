"""``--sort``: a JSONL input in event-time order, in bounded memory.

The offline commands and ``replay --to-kafka`` read their input through
:func:`sort_by_time` when given ``--sort``. It is a stable external merge sort:

* **Key** ``(event time, line number)``: the event time is
  :func:`~intentstream.stream.contract.events.parse_event`'s ``ts_ms`` (the engine's), so
  events with the same time keep their file order, and the same file always sorts to the
  same sequence.
* **Rejected lines** (lines ``parse_event`` refuses) **go first**, in file order, before
  every event; each line keeps its original line number, so the dead-letter records name
  the same ``file:line`` as without ``--sort``, and every rejected line still reaches
  the dead-letter output.
* **Runs**: lines are sorted in memory in runs of at most ``run_lines`` lines and
  ``run_bytes`` bytes; an input that fits in one run never touches the disk. Otherwise
  each sorted run goes to a file in a private temporary directory (under ``$TMPDIR``;
  it needs about the input's size), and the runs are merged with a heap
  (:func:`heapq.merge`), at most ``fan_in`` at a time — more runs are first merged in
  groups into longer ones — so memory stays bounded whatever the input's size. The
  directory is removed when the sorted lines have been read, or the reader stops.
* **Progress**: while it reads and merges runs (before the first line comes out), a
  progress line on ``progress`` (standard error in the commands), redrawn on a terminal
  and printed every 10 s otherwise (:class:`~intentstream.stream.cli.progress.Progress`);
  a small input is done before the first one is due.

Standard input works like a file: it is read once, to the end, before the first line
comes out.

>>> lines = [(1, b'{"event_id":"b","user_id":"u","ts":2000000000000,"type":"click"}'), (2, b"oops"),
...          (3, b'{"event_id":"a","user_id":"u","ts":1900000000000,"type":"click"}')]
>>> [n for n, _ in sort_by_time(lines)]
[2, 3, 1]
>>> [n for n, _ in sort_by_time(lines, run_lines=1)]   # three runs on disk, merged
[2, 3, 1]
"""

from __future__ import annotations

import heapq
import os
import tempfile
from collections.abc import Generator, Iterable, Iterator
from contextlib import ExitStack
from typing import BinaryIO, Final, TextIO

from intentstream.stream.cli.progress import Progress
from intentstream.stream.contract.events import Event, parse_event

#: Lines per in-memory run (about 100 MB of Python objects for typical events).
RUN_LINES: Final = 250_000
#: Bytes of raw lines per in-memory run (bounds the run when lines are large).
RUN_BYTES: Final = 64 << 20
#: Runs merged at once (open files during a merge).
FAN_IN: Final = 64

_REJECTED: Final = -1  # the sort key of a rejected line: before every event time (>= year 2000)

Row = tuple[int, int, bytes]  # (event time or _REJECTED, line number, raw line)


def sort_by_time(
    lines: Iterable[tuple[int, bytes]],
    *,
    run_lines: int = RUN_LINES,
    run_bytes: int = RUN_BYTES,
    fan_in: int = FAN_IN,
    progress: TextIO | None = None,
    tmp_dir: str | None = None,
) -> Generator[tuple[int, bytes], None, None]:
    """``(line number, raw line)`` of ``lines``, rejected lines first, then events by
    ``(event time, line number)`` (see the module docstring)."""
    if run_lines < 1 or run_bytes < 1 or fan_in < 2:
        raise ValueError("run_lines and run_bytes must be >= 1, fan_in >= 2")
    shown = Progress(progress, label="sorting by event time: reading ", unit="lines") if progress is not None else None
    with ExitStack() as stack:
        tmp: str | None = None
        runs: list[str] = []
        run: list[Row] = []
        size = count = nbytes = 0
        for lineno, raw in lines:
            ev = parse_event(raw)
            run.append((ev.ts_ms if type(ev) is Event else _REJECTED, lineno, raw))
            size += len(raw)
            count += 1
            nbytes += len(raw) + 1
            if len(run) >= run_lines or size >= run_bytes:
                if tmp is None:
                    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="intentstream-sort-", dir=tmp_dir))
                runs.append(_write_run(tmp, len(runs), run))
                run, size = [], 0
            if shown is not None:
                shown.update(count, nbytes)
        if shown is not None:
            shown.finish()
        if tmp is None:  # one run: no disk
            run.sort()
            for _, lineno, raw in run:
                yield lineno, raw
            return
        if run:
            runs.append(_write_run(tmp, len(runs), run))
        del run
        if progress is not None and len(runs) > fan_in:  # (then the reading was shown too)
            shown = Progress(progress, label="sorting by event time: merging runs, ", unit="lines", total=count)
        runs = _merge_down(tmp, runs, fan_in, shown)
        if shown is not None:
            shown.finish()
        files = [stack.enter_context(open(path, "rb")) for path in runs]
        for _, lineno, raw in heapq.merge(*(_read_run(fh) for fh in files)):
            yield lineno, raw


def _write_run(tmp: str, n: int, rows: list[Row]) -> str:
    """Sort ``rows`` into a new run file; its path."""
    rows.sort()
    path = os.path.join(tmp, f"run-{n:06d}")
    _write(path, rows)
    return path


def _write(path: str, rows: Iterable[Row]) -> None:
    """One row per line: ``<key> <line number> <raw>`` (a raw line never holds a newline)."""
    with open(path, "wb", buffering=1 << 20) as fh:
        fh.writelines(b"%d %d %b\n" % row for row in rows)


def _read_run(fh: BinaryIO) -> Iterator[Row]:
    for line in fh:
        key, lineno, raw = line.split(b" ", 2)
        yield int(key), int(lineno), raw[:-1]


def _merge_down(tmp: str, runs: list[str], fan_in: int, shown: Progress | None) -> list[str]:
    """Merge runs in groups of ``fan_in`` into longer runs until at most ``fan_in`` are
    left (each pass reads and writes every line once more)."""
    n, done = len(runs), [0, 0]
    while len(runs) > fan_in:
        merged = []
        for i in range(0, len(runs), fan_in):
            group = runs[i : i + fan_in]
            if len(group) == 1:
                merged.append(group[0])
                continue
            path = os.path.join(tmp, f"run-{n:06d}")
            n += 1
            with ExitStack() as stack:
                files = [stack.enter_context(open(p, "rb")) for p in group]
                rows = heapq.merge(*(_read_run(fh) for fh in files))
                _write(path, rows if shown is None else _counted(rows, shown, done))
            for p in group:
                os.remove(p)
            merged.append(path)
        runs = merged
    return runs


def _counted(rows: Iterator[Row], shown: Progress, done: list[int]) -> Iterator[Row]:
    """``rows``, counted into ``done`` ([lines, bytes]) and shown on the progress line."""
    for row in rows:
        done[0] += 1
        done[1] += len(row[2]) + 1
        if not done[0] & 0xFFF:
            shown.update(done[0], done[1])
        yield row
