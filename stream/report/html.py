"""The persona report as one self-contained HTML page: inline CSS and SVG charts drawn
here (cluster sizes over time, feature profile bars), no scripts, fonts or links to
anything outside it."""

from __future__ import annotations

import html
import math
from typing import Any, Final

from intentstream.stream.contract.events import format_ts
from intentstream.stream.report.model import ClusterReport, Report
from intentstream.stream.report.text import percent
from intentstream.stream.report.triggers import columns, row_cells, uplift_note

__all__ = ["PALETTE", "render_html", "svg_profile", "svg_timeline"]

#: Fixed colours of clusters in the charts (cluster id modulo the palette).
PALETTE: Final = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#17becf", "#bcbd22",
)  # fmt: skip

_CSS: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;margin:0;background:#f6f7f9;color:#222}
main{max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:.2em 0 .4em}h2{font-size:1.3em;margin:1.6em 0 .5em;border-bottom:2px solid #ddd;padding-bottom:.2em}
h3{font-size:1.05em;margin:1em 0 .3em}
section.cluster{background:#fff;border-radius:8px;padding:8px 20px 16px;margin:18px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.4em;vertical-align:baseline}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:4px 10px;border-bottom:1px solid #e5e5e5;text-align:left}
td.n,th.n{text-align:right}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:4px 24px}
ul{margin:.2em 0 .6em;padding-left:1.3em}li{margin:.15em 0}.muted{color:#666}
svg text{font-size:11px;fill:#333}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _colour(cluster_id: int) -> str:
    return PALETTE[cluster_id % len(PALETTE)]


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


def svg_timeline(rep: Report, width: int = 960, height: int = 260) -> str:
    """Line chart: segments per time bucket for every cluster (inline SVG)."""
    series = [c for c in rep.clusters + rep.small if c.timeline]
    buckets = sorted({b for c in series for b in c.timeline})
    if not buckets:
        return ""
    left, right, top, bottom = 48, 150, 12, 30
    pw, ph = width - left - right, height - top - bottom
    ymax = _nice_max(max(n for c in series for n in c.timeline.values()))
    step = pw / max(1, len(buckets) - 1)

    def xy(i: int, n: int) -> str:
        x = left + (i * step if len(buckets) > 1 else pw / 2)
        return f"{x:.1f},{top + ph - n / ymax * ph:.1f}"

    parts = [f'<svg role="img" viewBox="0 0 {width} {height}" width="100%" aria-label="{_e(rep.words["chart_time"])}">']
    for k in range(5):
        v = ymax * k / 4
        y = top + ph - v / ymax * ph
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
    every = max(1, math.ceil(len(buckets) / 10))
    for i, b in enumerate(buckets):
        if i % every == 0:
            x = left + (i * step if len(buckets) > 1 else pw / 2)
            parts.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle">{_e(format_ts(b)[5:10])}</text>')
    for j, c in enumerate(series):
        pts = " ".join(xy(i, c.timeline.get(b, 0)) for i, b in enumerate(buckets))
        parts.append(f'<polyline fill="none" stroke="{_colour(c.cluster_id)}" stroke-width="2" points="{pts}"/>')
        ly = top + 12 + j * 16
        parts.append(f'<rect x="{left + pw + 12}" y="{ly - 9}" width="10" height="10" fill="{_colour(c.cluster_id)}"/>')
        parts.append(f'<text x="{left + pw + 28}" y="{ly}">{_e(c.title.split(":")[0])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_profile(c: ClusterReport, width: int = 460) -> str:
    """Horizontal bars of a cluster's feature profile (all values in 0..1)."""
    row, label_w, bar_w = 20, 150, width - 150 - 50
    height = row * len(c.profile) + 6
    parts = [f'<svg role="img" viewBox="0 0 {width} {height}" width="{width}" aria-label="{_e(c.title)}">']
    for i, (name, value) in enumerate(c.profile):
        v = min(1.0, max(0.0, value))
        y = 3 + i * row
        parts.append(f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end">{_e(name)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="12" fill="#eef0f3"/>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{v * bar_w:.1f}" height="12" fill="{_colour(c.cluster_id)}"/>')
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 13}">{v:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(rep: Report) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, nothing external)."""
    t = rep.words
    lang_attr = "zh-CN" if rep.lang == "zh" else "en"
    out = [
        f'<!DOCTYPE html><html lang="{lang_attr}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{_e(t['title'])}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(t['title'])}</h1><p>{_e(t['intro'])}</p>",
        '<p class="muted">' + "<br>".join(_e(line) for line in rep.header_lines()) + "</p>",
    ]
    if rep.uplift is not None:
        out.append(f'<p class="muted">{_e(uplift_note(rep.uplift, rep.lang))}</p>')
    if not rep.clusters and not rep.small:
        out.append(f"<p>{_e(t['empty'])}</p></main></body></html>")
        return "\n".join(out)
    out.append(f"<h2>{_e(t['summary'])}</h2><table><thead><tr>")
    out.append(
        f"<th>{_e(t['col_cluster'])}</th><th>{_e(t['col_label'])}</th><th class=\"n\">{_e(t['col_users'])}</th>"
        f"<th class=\"n\">{_e(t['col_share'])}</th><th class=\"n\">{_e(t['col_segments'])}</th>"
        f"<th class=\"n\">{_e(t['col_events'])}</th></tr></thead><tbody>"
    )
    for c in rep.clusters + rep.small:
        share = c.users / rep.users if rep.users else 0.0
        out.append(
            f'<tr><td><span class="swatch" style="background:{_colour(c.cluster_id)}"></span>{c.cluster_id}</td>'
            f'<td>{_e(c.label)}</td><td class="n">{c.users}</td><td class="n">{percent(share)}</td><td class="n">{c.segments}</td>'
            f'<td class="n">{c.events}</td></tr>'
        )
    out.append("</tbody></table>")
    chart = svg_timeline(rep)
    if chart:
        out.append(f"<h3>{_e(t['chart_time'])}</h3>{chart}")
    for c in rep.clusters:
        out.append(f'<section class="cluster" id="cluster-{c.cluster_id}">')
        out.append(f'<h2><span class="swatch" style="background:{_colour(c.cluster_id)}"></span>{_e(c.title)}</h2>')
        out.append(f"<p><strong>{_e(t['full_label'])}</strong>: {_e(c.label)}</p>")
        out.append(f'<div class="grid"><div><h3>{_e(t["key_features"])}</h3><ul>')
        out.extend(f"<li>{_e(line)}</li>" for line in rep.key_lines(c))
        out.append(f'</ul></div><div><h3>{_e(t["chart_profile"])}</h3>{svg_profile(c)}</div></div><div class="grid">')
        for s in c.strategies:
            out.append(f"<div><h3>{_e(s.title)}</h3><ul>")
            out.extend(f"<li>{_e(line)}</li>" for line in s.lines)
            out.append("</ul></div>")
        out.append("</div>" + "".join(_uplift(rep, c)) + "</section>")
    if rep.small:
        out.append(f"<h2>{_e(t['small'])}</h2><p>{_e(rep.text('small_intro', k=rep.min_users))}</p><ul>")
        out.extend(
            f'<li><span class="swatch" style="background:{_colour(c.cluster_id)}"></span>{_e(c.title)} — {_e(c.label)}: '
            f"{_e(t['col_users'])} {c.users}, {_e(t['col_segments'])} {c.segments}, {_e(t['col_events'])} {c.events}</li>"
            for c in rep.small
        )
        out.append("</ul>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def _uplift(rep: Report, c: ClusterReport) -> list[str]:
    """The cluster's "triggers & uplift" part (nothing without outcomes)."""
    if c.uplift is None or rep.uplift is None:
        return []
    t = rep.words
    out = [f"<h3>{_e(t['uplift'])}</h3>"]
    if not c.uplift:
        return [*out, f'<p class="muted">{_e(t["no_outcomes"])}</p>']
    cols = columns(rep.lang)
    out.append("<table><thead><tr>" + f"<th>{_e(cols[0])}</th>" + "".join(f'<th class="n">{_e(h)}</th>' for h in cols[1:5]))
    out.append(f"<th>{_e(cols[5])}</th></tr></thead><tbody>")
    for r in c.uplift:
        cells = row_cells(r, rep.uplift, rep.lang)
        tds = f"<td>{_e(cells[0])}</td>" + "".join(f'<td class="n">{_e(x)}</td>' for x in cells[1:5])
        out.append(f"<tr>{tds}<td>{_e(cells[5])}</td></tr>")
    out.append("</tbody></table>")
    return out
