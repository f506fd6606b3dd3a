"""The human tables of the commands (the replay / segments summary, ``backtest``,
``uplift``, ``import``, ``simulate``): drawn by ``rich`` on a terminal, which sizes the
columns to their contents and the terminal's width, and written as fixed-width plain
text anywhere else — a file, a pipe, a CI log — byte for byte what the commands always
wrote there, so scripts and tests that read it keep working. ``--format md`` / ``json``
never come here.

>>> t = Table(("trigger", "count"), [("cart_abandoned", "12")], widths=(16, 6), right=(1,), indent=2)
>>> print("\\n".join(t.plain()))
  trigger           count
  cart_abandoned       12
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from intentstream.stream.cli.terminal import isatty


@dataclass
class Table:
    """Columns ``heads`` over ``rows`` of strings. ``widths``: each column's plain-text
    width (None: the widest cell); ``right``: right-aligned columns (numbers); ``indent``,
    ``sep``: the plain layout; ``header``: whether the plain text shows ``heads``;
    ``title``: a line above; ``rstrip``: no trailing blanks. A short row ends in a note
    that may run past its column ("not enough data"); an empty row is a gap between groups."""

    heads: Sequence[str]
    rows: Sequence[Sequence[str]] = ()
    widths: Sequence[int | None] | None = None
    right: Sequence[int] = ()
    indent: int = 0
    sep: str = " "
    header: bool = True
    title: str | None = None
    rstrip: bool = False

    def _widths(self) -> list[int]:
        given = list(self.widths or [None] * len(self.heads))
        out = []
        for i, w in enumerate(given):
            # a short row's last cell is a note: it may run past its column
            cells = [r[i] for r in self.rows if i < len(r) - (len(r) < len(self.heads))] + ([self.heads[i]] if self.header else [])
            out.append(w if w is not None else max(map(len, cells), default=0))
        return out

    def plain(self) -> list[str]:
        """The fixed-width lines."""
        widths = self._widths()
        pad = " " * self.indent

        def line(cells: Sequence[str]) -> str:
            text = self.sep.join(c.rjust(w) if i in self.right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
            return pad + (text.rstrip() if self.rstrip else text)

        out = [self.title] if self.title is not None else []
        if self.header:
            out.append(line(self.heads))
        out += [line(r) if r else "" for r in self.rows]
        return out

    def rich(self) -> object:
        """The same table as a ``rich.table.Table``."""
        from rich import box
        from rich.table import Table as RichTable

        t = RichTable(title=self.title, title_justify="left", box=box.SIMPLE_HEAD, show_header=any(self.heads), show_edge=False, pad_edge=False)
        for i, head in enumerate(self.heads):
            t.add_column(head, justify="right" if i in self.right else "left", overflow="fold")
        for r in self.rows:
            if not r:
                t.add_section()
            else:
                t.add_row(*r, *[""] * (len(self.heads) - len(r)))
        return t


Block = str | Table


def write(blocks: Iterable[Block], stream: TextIO | None = None, *, tty: bool | None = None) -> None:
    """Text lines and tables on ``stream`` (standard output by default): through ``rich``
    on a terminal (``tty`` overrides the check), plain fixed-width text otherwise."""
    stream = stream if stream is not None else sys.stdout
    if not (isatty(stream) if tty is None else tty):
        stream.write("".join(line + "\n" for line in plain(blocks)))
        return
    from rich.console import Console

    console = Console(file=stream, highlight=False, force_terminal=tty)
    for b in blocks:
        if isinstance(b, Table):
            console.print(b.rich())
        else:
            console.print(b, markup=False, soft_wrap=True)


def plain(blocks: Iterable[Block]) -> list[str]:
    """The lines of ``blocks`` as plain text."""
    out: list[str] = []
    for b in blocks:
        out += b.plain() if isinstance(b, Table) else [b]
    return out
