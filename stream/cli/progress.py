"""The progress bar a long command (``replay --offline`` / ``--to-kafka``, ``segments``,
``import``, ``report --input``, ``backtest``, ``simulate``, ``--sort``) keeps up to date
on standard error, drawn by ``rich``: a maintained library gets widths, redraws,
colours and odd terminals right where a hand-written ``\\r`` line did not.

It is shown only where a person watches: on a terminal (never in a pipe or a CI log, so
logs stay clean), unless ``--no-progress`` (every command takes it) or ``NO_COLOR`` /
``TERM=dumb`` ask for a plain terminal (``rich`` then leaves animation out). It never
writes to standard output, so what a command writes there is byte-for-byte the same
with or without it. Nothing is drawn for a command that ends within its first
``delay`` seconds, and the bar is erased when it ends (the command's summary follows).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from intentstream.stream.cli.terminal import isatty

#: False after ``--no-progress`` (:func:`configure`, called by :func:`intentstream.stream.cli.main`).
_SHOW = True


def configure(show: bool) -> None:
    """Show progress bars (on a terminal) or never; the command line's ``--no-progress``."""
    global _SHOW
    _SHOW = show


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
    """A progress bar on ``stream`` (standard error in the commands). ``label`` starts it;
    ``unit`` names what is counted; with ``total`` (a count) or ``total_bytes`` (the
    input's size) it has a bar and an estimate of the time left, else it counts. ``tty``
    overrides the terminal check (tests). :meth:`update` is cheap: one clock read, and a
    redraw at most every ``every`` s; a disabled one does nothing at all.

    >>> import io
    >>> Progress(io.StringIO(), clock=lambda: 2.0, label="sort: ", unit="lines", total=40).text(10, 2048, 4.0)
    'sort: 10 of 40 lines  5 lines/s  2.0 KiB'
    >>> Progress(io.StringIO(), clock=lambda: 0.0, label="read: ", unit="lines", total_bytes=8192).text(10, 2048, 2.0)
    'read: 10 lines  5 lines/s  2.0 KiB of 8.0 KiB'
    >>> Progress(io.StringIO()).on   # not a terminal: off
    False
    """

    def __init__(
        self,
        stream: TextIO | None,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
        every: float = 0.2,
        delay: float = 0.5,
        *,
        label: str = "",
        unit: str = "events",
        total: int | None = None,
        total_bytes: int | None = None,
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.on = stream is not None and _SHOW and (isatty(stream) if tty is None else tty)
        self.every = every
        self.started = clock()
        self.next = self.started + delay  # first draw: short commands show nothing
        self.label, self.unit, self.total, self.total_bytes = label, unit, total, total_bytes
        self.bar: Any = None  # the rich Progress, made at the first draw
        self.task: Any = None

    def text(self, count: int, nbytes: int, now: float) -> str:
        """The counts beside the bar (rich adds the bar, the share and the time)."""
        elapsed = max(now - self.started, 1e-9)
        what = f"{count:,} of {self.total:,} {self.unit}" if self.total else f"{count:,} {self.unit}"
        text = f"{self.label}{what}  {count / elapsed:,.0f} {self.unit}/s"
        if nbytes or self.total_bytes:  # (what counts no bytes shows none)
            text += "  " + human_bytes(nbytes) + (f" of {human_bytes(self.total_bytes)}" if self.total_bytes else "")
        return text

    def update(self, count: int, nbytes: int = 0) -> None:
        """Show the counts if the last redraw is old enough."""
        if not self.on:
            return
        now = self.clock()
        if now < self.next:
            return
        self.next = now + self.every
        if self.bar is None:
            self._start()
        done = count if self.total else min(nbytes, self.total_bytes or 0)
        self.bar.update(self.task, completed=done, info=self.text(count, nbytes, now))
        self.bar.refresh()

    def _start(self) -> None:
        # imported here: a command that never draws (a pipe, CI) does not pay for it
        from rich.console import Console
        from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        total = self.total or self.total_bytes
        columns: list[Any] = [TextColumn("{task.fields[info]}")]
        if total:
            columns += [BarColumn(), TaskProgressColumn(), TimeRemainingColumn()]
        columns.append(TimeElapsedColumn())
        console = Console(file=self.stream, force_terminal=True, stderr=True)
        # no refresh thread (it would take the GIL from the engine), no capture of
        # stdout: the command's output goes straight to its file
        self.bar = Bar(*columns, console=console, auto_refresh=False, transient=True, redirect_stdout=False, redirect_stderr=False)
        self.task = self.bar.add_task("", total=total or None, info="")
        self.bar.start()

    def finish(self) -> None:
        """Erase the bar, so what follows starts on a clean line."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
