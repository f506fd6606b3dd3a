"""The explanation as one self-contained HTML page: inline CSS, no scripts, no external
resources — the same header, timeline and decision checks as :mod:`.text`.
"""

from __future__ import annotations

from html import escape

from intentstream.stream.explain.story import Explanation
from intentstream.stream.explain.text import header, live_lines, on_clock, timeline

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:70rem;color:#1d2430;padding:0 1rem}
h1{font-size:1.3rem;margin:0 0 .3rem}
.meta{color:#555;margin:.1rem 0}
h2{font-size:1rem;margin:1.6rem 0 .4rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table.day{border-collapse:collapse;width:100%}
table.day td{vertical-align:top;padding:.15rem .5rem}
td.t{color:#666;white-space:nowrap;font-variant-numeric:tabular-nums;width:3.5rem}
tr.k0 td.x{color:#333}
tr.k1 td.x{color:#2d5f8a}
tr.k2 td.x{color:#7a5a00}
tr.k3 td.x{background:#f4f7fb;border-left:3px solid #2d5f8a}
.head{font-weight:600}
table.checks{border-collapse:collapse;margin:.3rem 0 .2rem}
table.checks th{text-align:left;font-weight:500;color:#555;padding:.05rem .8rem .05rem 0;white-space:nowrap;vertical-align:top}
table.checks td{padding:.05rem 0}
.full{color:#b3261e;font-weight:600}
"""


def _mark(text: str) -> str:
    """Escaped text, with the counters at their cap highlighted."""
    return escape(text).replace(" FULL", ' <span class="full">FULL</span>').replace("→ suppressed", '<span class="full">→ suppressed</span>')


def render_html(ex: Explanation) -> str:
    """The whole page."""
    title, *meta = header(ex)
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>intentstream explain {escape(ex.user_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        *(f'<p class="meta">{escape(line)}</p>' for line in meta),
    ]
    day = None
    for ms, kind, head, rows in timeline(ex):
        t = on_clock(ms, ex.tz)
        if t.date() != day:
            if day is not None:
                out.append("</table>")
            day = t.date()
            out += [f"<h2>{t:%Y-%m-%d %a}</h2>", '<table class="day">']
        cell = f'<div class="head">{_mark(head)}</div>' if rows else _mark(head)
        if rows:
            cell += '<table class="checks">' + "".join(f"<tr><th>{escape(label)}</th><td>{_mark(text)}</td></tr>" for label, text in rows) + "</table>"
        out.append(f'<tr class="k{kind}"><td class="t">{t:%H:%M}</td><td class="x">{cell}</td></tr>')
    if day is not None:
        out.append("</table>")
    head, rows = live_lines(ex)
    if head:
        out += [f"<h2>{escape(head)}</h2>", '<table class="checks">']
        out += [f"<tr><th>{escape(label)}</th><td>{_mark(text)}</td></tr>" for label, text in rows]
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
