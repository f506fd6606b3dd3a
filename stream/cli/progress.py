"""The progress line a long command (``replay --to-kafka``, ``--sort``, the offline file
commands as they read their input) keeps up to date on standard error: redrawn on a
terminal, a line every few seconds otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from intentstream.stream.cli.terminal import isatty


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
    on a terminal, else printed as a line every ``line_every`` s. ``label`` starts the
    line; ``unit`` names what is counted; with ``total`` the count shows ``n of total``.

    >>> import io
    >>> Progress(io.StringIO(), clock=lambda: 2.0, label="sort: ", unit="lines", total=40).text(10, 2048, 4.0)
    'sort: 10 of 40 lines (25%)  5 lines/s  2.0 KiB  2.0s'
    >>> Progress(io.StringIO(), clock=lambda: 0.0, label="read: ", unit="lines", total_bytes=8192).text(10, 2048, 2.0)
    'read: 10 lines  5 lines/s  2.0 KiB of 8.0 KiB (25%)  2.0s'
    """

    def __init__(
        self,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
        tty_every: float = 0.25,
        line_every: float = 10.0,
        *,
        label: str = "",
        unit: str = "events",
        total: int | None = None,
        total_bytes: int | None = None,
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.tty = isatty(stream) if tty is None else tty
        self.every = tty_every if self.tty else line_every
        self.started = clock()
        self.last = self.started
        self.drawn = False
        self.label, self.unit, self.total, self.total_bytes = label, unit, total, total_bytes

    def text(self, events: int, nbytes: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        count = f"{events:,}"
        if self.total:
            count += f" of {self.total:,} {self.unit} ({events / self.total:.0%})"
        else:
            count += f" {self.unit}"
        size = human_bytes(nbytes)
        if self.total_bytes:
            size += f" of {human_bytes(self.total_bytes)} ({min(nbytes / self.total_bytes, 1.0):.0%})"
        return f"{self.label}{count}  {events / elapsed:,.0f} {self.unit}/s  {size}  {elapsed:.1f}s"

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
