"""An :class:`~intentstream.stream.outcomes.uplift.UpliftTable` as text (an aligned
terminal table), Markdown, one self-contained HTML page, or JSON.

Every format says the same things: a header line (records, measured, confidence, the
minimum per arm), one row per cell — counts always; rates and uplift only for a cell
with enough data, else "not enough data (n=treatment / holdout, need N per arm)" — and
a short legend that tells the intention-to-treat uplift from the per-send one. Uplift
is in percentage points (pp), the relative uplift in percent, incremental conversions
as counts. Only the dimensions some row cuts by get a column. Output depends on the
table alone (no clock), so the same outcomes give the same bytes.

>>> from intentstream.stream.outcomes.uplift import Interval, UpliftRow, UpliftTable
>>> row = UpliftRow({"trigger": "cart_abandoned", "strategy": "*", "channel": "*", "persona": "*"},
...                 treatment=70, holdout=80, sent=60, opened=20, clicked=12, converted_treatment=56,
...                 converted_holdout=48, ctr=0.2, cvr=0.8, holdout_cvr=0.6,
...                 uplift_abs=Interval(0.2, 0.0524, 0.3339), uplift_rel=Interval(0.3333, 0.07, 0.66),
...                 uplift_per_send=Interval(0.2333, 0.0611, 0.3896), incremental=Interval(14.0, 3.67, 23.37), enough=True)
>>> print(render_text(UpliftTable([row], 0.95, 30, 160, 150)))
outcomes: 160 records, 150 measured; 95% intervals; at least 30 decisions per arm
TRIGGER         DECISIONS (T+H)  SENDS  CTR    CVR    HOLDOUT CVR  UPLIFT pp (ITT)      RELATIVE          PER SEND pp          INCREMENTAL
cart_abandoned  70+80            60     20.0%  80.0%  60.0%        +20.0 [+5.2, +33.4]  +33% [+7%, +66%]  +23.3 [+6.1, +39.0]  +14.0 [+3.7, +23.4]
<BLANKLINE>
uplift (ITT): conversion rate of the treatment arm minus the holdout's, ...
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Final

from intentstream.stream import codec
from intentstream.stream.cli.tables import Block, Table, plain
from intentstream.stream.outcomes.uplift import ALL, DIMENSIONS, Interval, UpliftRow, UpliftTable

__all__ = [
    "LEGEND",
    "fmt_count",
    "fmt_interval",
    "fmt_pp",
    "fmt_rate",
    "fmt_relative",
    "header",
    "not_enough",
    "render_html",
    "render_json",
    "render_markdown",
    "render_text",
    "text_blocks",
]

#: What the uplift columns mean, in every format.
LEGEND: Final = (
    "uplift (ITT): conversion rate of the treatment arm minus the holdout's, counting every decision of the "
    "treatment arm whether its message was sent or not (intention to treat: the arms stay randomised); "
    "Newcombe hybrid score interval.",
    "relative: treatment CVR / holdout CVR - 1 (log relative-risk interval; - when an arm has no conversion).",
    "per send: the ITT uplift divided by the share of the treatment arm that was sent, i.e. the effect of a "
    "message that goes out (interval scaled alike, treating that share as known).",
    "incremental: per send x sends, the conversions the messages caused.",
)

_NUMBER_COLS: Final = ("CTR", "CVR", "HOLDOUT CVR", "UPLIFT pp (ITT)", "RELATIVE", "PER SEND pp", "INCREMENTAL")
#: The same columns' titles in Markdown and HTML.
_NUMBER_HEADS: Final = ("CTR", "CVR", "holdout CVR", "uplift, pp (ITT)", "relative", "per send, pp", "incremental")


def fmt_rate(x: float | None) -> str:
    """A rate in percent, ``-`` when undefined.

    >>> fmt_rate(0.1234), fmt_rate(None)
    ('12.3%', '-')
    """
    return "-" if x is None else f"{x * 100:.1f}%"


def fmt_interval(i: Interval | None, scale: float = 1.0, unit: str = "", digits: int = 1) -> str:
    """``+e [+low, +high]`` with the values times ``scale``.

    >>> fmt_interval(Interval(0.2, -0.05, 0.33), 100)
    '+20.0 [-5.0, +33.0]'
    """
    if i is None:
        return "-"
    f = f"{{:+.{digits}f}}{unit}"
    return f"{f.format(i.estimate * scale)} [{f.format(i.low * scale)}, {f.format(i.high * scale)}]"


def fmt_pp(i: Interval | None) -> str:
    """A difference of proportions in percentage points."""
    return fmt_interval(i, 100.0)


def fmt_relative(i: Interval | None) -> str:
    """A relative uplift in percent.

    >>> fmt_relative(Interval(0.5, -0.1, 1.25))
    '+50% [-10%, +125%]'
    """
    return fmt_interval(i, 100.0, "%", 0)


def fmt_count(i: Interval | None) -> str:
    return fmt_interval(i, 1.0)


def not_enough(row: UpliftRow, min_per_arm: int) -> str:
    """What a cell without enough data shows instead of numbers.

    >>> from types import SimpleNamespace
    >>> not_enough(SimpleNamespace(treatment=12, holdout=3), 30)
    'not enough data (n=12 / 3, need 30 per arm)'
    """
    return f"not enough data (n={row.treatment} / {row.holdout}, need {min_per_arm} per arm)"


def header(table: UpliftTable) -> str:
    """The line that says what the table rests on."""
    return (
        f"outcomes: {table.records:,} records, {table.measured:,} measured; "
        f"{table.confidence * 100:g}% intervals; at least {table.min_per_arm} decisions per arm"
    )


def _dims(table: UpliftTable) -> list[str]:
    """The dimensions some row cuts by (the others would be a column of ``*``)."""
    return [d for d in DIMENSIONS if any(r.key.get(d, ALL) != ALL for r in table.rows)] or ["trigger"]


def _cells(row: UpliftRow, dims: list[str]) -> tuple[list[str], list[str] | None]:
    """The row's leading cells (key, decisions, sends) and its numbers (None: not enough data)."""
    lead = [row.key[d] for d in dims] + [f"{row.treatment}+{row.holdout}", str(row.sent)]
    if not row.enough:
        return lead, None
    numbers = [
        fmt_rate(row.ctr),
        fmt_rate(row.cvr),
        fmt_rate(row.holdout_cvr),
        fmt_pp(row.uplift_abs),
        fmt_relative(row.uplift_rel),
        fmt_pp(row.uplift_per_send),
        fmt_count(row.incremental),
    ]
    return lead, numbers


def _level(row: UpliftRow) -> tuple[str, ...]:
    return tuple(d for d in DIMENSIONS if row.key.get(d, ALL) != ALL)


def render_text(table: UpliftTable) -> str:
    """An aligned table for a terminal: a blank line between levels; a cell without
    enough data shows the reason where its numbers would be."""
    return "\n".join(plain(text_blocks(table))) + "\n"


def text_blocks(table: UpliftTable) -> list[Block]:
    """:func:`render_text`'s lines and table (``intentstream uplift`` draws it with rich on a terminal)."""
    dims = _dims(table)
    heads = [d.upper() for d in dims] + ["DECISIONS (T+H)", "SENDS", *_NUMBER_COLS]
    rows: list[Sequence[str]] = []
    prev = None
    for row in table.rows:
        lead, numbers = _cells(row, dims)
        level = _level(row)
        if prev is not None and level != prev:
            rows.append(())
        prev = level
        rows.append(lead + (numbers if numbers is not None else [not_enough(row, table.min_per_arm)]))
    out: list[Block] = [header(table), Table(heads, rows, sep="  ", rstrip=True)]
    if not table.rows:
        out.append("(no measured outcome records)")
    return [*out, "", *LEGEND]


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(table: UpliftTable) -> str:
    """A Markdown table (numbers right-aligned); a cell without enough data says so in its
    CTR column and leaves the other numbers empty."""
    dims = _dims(table)
    heads = [*dims, "decisions (T+H)", "sends", *_NUMBER_HEADS]
    out = ["# Uplift", "", header(table), ""]
    out += ["| " + " | ".join(_md(h) for h in heads) + " |", "|" + "---|" * len(dims) + "---:|" * (len(heads) - len(dims))]
    for row in table.rows:
        lead, numbers = _cells(row, dims)
        if numbers is None:
            numbers = [not_enough(row, table.min_per_arm)] + [""] * (len(_NUMBER_COLS) - 1)
        out.append("| " + " | ".join(_md(c) for c in lead + numbers) + " |")
    if not table.rows:
        out += ["", "(no measured outcome records)"]
    out += ["", *(f"- {_md(line)}" for line in LEGEND)]
    return "\n".join(out) + "\n"


_CSS: Final = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;background:#fff}"
    "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #e5e5e5;text-align:left;white-space:nowrap}"
    "td.n,th.n{text-align:right}tr.level td{border-top:2px solid #bbb}.muted{color:#666}td.na{color:#999;font-style:italic}"
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def render_html(table: UpliftTable) -> str:
    """One self-contained page (inline CSS, no scripts or links); every text escaped."""
    dims = _dims(table)
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>Uplift</title><style>{_CSS}</style></head><body>",
        f'<h1>Uplift</h1><p class="muted">{_e(header(table))}</p>',
        "<table><thead><tr>"
        + "".join(f"<th>{_e(d)}</th>" for d in dims)
        + "".join(f'<th class="n">{_e(h)}</th>' for h in ("decisions (T+H)", "sends", *_NUMBER_HEADS))
        + "</tr></thead><tbody>",
    ]
    prev = None
    for row in table.rows:
        lead, numbers = _cells(row, dims)
        level = _level(row)
        cls = ' class="level"' if prev is not None and level != prev else ""
        prev = level
        tds = "".join(f"<td>{_e(c)}</td>" for c in lead[: len(dims)])
        tds += "".join(f'<td class="n">{_e(c)}</td>' for c in lead[len(dims) :])
        if numbers is None:
            tds += f'<td class="na" colspan="{len(_NUMBER_COLS)}">{_e(not_enough(row, table.min_per_arm))}</td>'
        else:
            tds += "".join(f'<td class="n">{_e(c)}</td>' for c in numbers)
        out.append(f"<tr{cls}>{tds}</tr>")
    out.append("</tbody></table>")
    if not table.rows:
        out.append("<p>(no measured outcome records)</p>")
    out.append('<ul class="muted">' + "".join(f"<li>{_e(line)}</li>" for line in LEGEND) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_json(table: UpliftTable) -> str:
    """The table's JSON form (:meth:`UpliftTable.to_dict`), keys sorted, one line."""
    return codec.dumps(table.to_dict()).decode() + "\n"
