"""The persona report as Markdown."""

from __future__ import annotations

from intentstream.stream.report.model import ClusterReport, Report
from intentstream.stream.report.text import percent
from intentstream.stream.report.triggers import columns, row_cells, uplift_note

__all__ = ["render_markdown"]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(rep: Report) -> str:
    """The report as Markdown (the example report's layout, with every section filled)."""
    t = rep.words
    out = [f"# {t['title']}", "", t["intro"], "", *rep.header_lines(), ""]
    if rep.uplift is not None:
        out[-1:-1] = [uplift_note(rep.uplift, rep.lang)]
    if not rep.clusters and not rep.small:
        out += [t["empty"], ""]
        return "\n".join(out)
    head = (t["col_cluster"], t["col_label"], t["col_users"], t["col_share"], t["col_segments"], t["col_events"])
    out += [f"## {t['summary']}", "", "| " + " | ".join(head) + " |", "|---:|---|---:|---:|---:|---:|"]
    for c in rep.clusters + rep.small:
        share = c.users / rep.users if rep.users else 0.0
        out.append(f"| {c.cluster_id} | {_md_cell(c.label)} | {c.users} | {percent(share)} | {c.segments} | {c.events} |")
    out += ["", "---", ""]
    for c in rep.clusters:
        out += [f"## {c.title}", "", f"**{t['full_label']}**: {c.label}", "", f"### {t['key_features']}", ""]
        out += [f"- {line}" for line in rep.key_lines(c)]
        for s in c.strategies:
            out += ["", f"### {s.title}", ""]
            out += [f"- {line}" for line in s.lines]
        out += _uplift(rep, c)
        out += ["", "---", ""]
    if rep.small:
        out += [f"## {t['small']}", "", rep.text("small_intro", k=rep.min_users), ""]
        out += [
            f"- {c.title} — {c.label}: {t['col_users']} {c.users}, {t['col_segments']} {c.segments}, {t['col_events']} {c.events}"
            for c in rep.small
        ]
        out.append("")
    return "\n".join(out)


def _uplift(rep: Report, c: ClusterReport) -> list[str]:
    """The cluster's "triggers & uplift" part (nothing without outcomes)."""
    if c.uplift is None or rep.uplift is None:
        return []
    t = rep.words
    out = ["", f"### {t['uplift']}", ""]
    if not c.uplift:
        return [*out, t["no_outcomes"]]
    out += ["| " + " | ".join(columns(rep.lang)) + " |", "|---|---:|---:|---:|---:|---|"]
    out += ["| " + " | ".join(_md_cell(x) for x in row_cells(r, rep.uplift, rep.lang)) + " |" for r in c.uplift]
    return out
