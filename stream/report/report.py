"""``intentstream report``: the persona report, one section per cluster, zh or en, md or html.

Where the clusters come from:

* default: the live model, restored from the personas agent's checkpoint in Redis
  (``[redis] url``; see :mod:`intentstream.stream.state.redis.personas`);
* ``--segments SEG.jsonl``: closed segments (``intentstream segments`` output), learned
  here in file order;
* ``--input FILE.jsonl``: a clickstream, cut into segments by the offline sessionizer
  (:class:`intentstream.stream.engine.offline.OfflineRunner`, the live engine on a file), then learned.

For each cluster: title and full label (:func:`intentstream.stream.personas.model.persona_label`, which never
contradicts the statuses listed under it), key features, and six strategy sections
filled from the playbook (``config/playbook.toml``, :mod:`intentstream.stream.personas.playbook`), each with a
fallback so none is ever empty. Clusters whose persona holds fewer users than
``max(min_users, min_user_share x users)`` are folded into a final "other / small
clusters" section rather than given strategies nobody could act on.

The HTML is one self-contained file: inline CSS and SVG charts drawn here (cluster sizes
over time, feature profile bars), no scripts, fonts or links to anything outside it.
The same model gives byte-identical output (no generation timestamp; every ordering is
by cluster id or vocabulary).

>>> from intentstream.stream.synth.segments import synthetic_segments
>>> from intentstream.stream.personas.model import PersonaModel
>>> from intentstream.stream.settings import PersonaSettings
>>> model = PersonaModel(PersonaSettings(n_clusters=4))
>>> for seg in synthetic_segments(users=60, seed=2, days=3):
...     _ = model.learn_one(seg)
>>> rep = build_report(model, lang="zh", min_users=3)
>>> md = render_markdown(rep)
>>> md.splitlines()[0]
'# 基于业务驱动的用户画像与营销策略报告'
>>> all(section.lines for c in rep.clusters for section in c.strategies)
True
>>> "http" in render_html(rep)
False
"""

from __future__ import annotations

import argparse
import html
import math
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from intentstream.stream import codec
from intentstream.stream.contract.events import format_ts
from intentstream.stream.personas.model import ClusterStats, PersonaModel, persona_label
from intentstream.stream.personas.playbook import SECTIONS, Playbook, load_playbook
from intentstream.stream.settings import PersonaSettings, Settings, load_settings

#: The report's own words (status words and strategies come from the playbook).
TEXT: Final[dict[str, dict[str, str]]] = {
    "zh": {
        "title": "基于业务驱动的用户画像与营销策略报告",
        "intro": "本报告基于意图片段的在线聚类结果，为每个聚类生成差异化的营销策略。",
        "basis": "数据：{users} 个用户，{segments} 个意图片段，{clusters} 个聚类（估计器 {estimator}）",
        "span": "；事件时间 {first} 至 {last} (UTC)",
        "end": "。",
        "threshold": "用户数少于 {k} 的聚类归入“其他/小聚类”。",
        "summary": "聚类概览",
        "col_cluster": "聚类",
        "col_label": "标签",
        "col_users": "用户数",
        "col_share": "占比",
        "col_segments": "片段数",
        "full_label": "完整标签",
        "key_features": "关键特征",
        "users": "用户数: {n} 个独立用户（画像归属）",
        "unique_users": "有片段的用户: {n} 个{approx}",
        "approx": "（估算）",
        "segments": "片段数: {n} 个意图片段",
        "duration": "平均浏览时长: {v:.2f} 分钟",
        "interactions": "平均交互次数: {v:.2f} 次",
        "strength": "平均意图强度: {v:.2f}",
        "behaviour_stage": "行为模式",
        "urgency": "紧迫度",
        "main_activity": "主要活动",
        "kyc_status": "KYC状态",
        "transaction_status": "交易状态",
        "lifecycle_stage": "生命周期",
        "trait": "显著特征",
        "qualified": "{label}（{trait}）",
        "marketing": "营销策略",
        "content": "内容策略",
        "conversion": "转化策略",
        "price": "价格策略",
        "recommendation": "产品推荐",
        "campaigns": "差异化营销活动",
        "small": "其他/小聚类",
        "small_intro": "以下聚类的用户数少于 {k}，样本太小，不单独制定策略；其用户按整体策略运营，待聚类增长后再评估。",
        "none": "无",
        "chart_time": "聚类规模随时间变化（每个时间桶的片段数）",
        "chart_profile": "特征画像",
        "p_strength": "意图强度",
        "p_high": "高紧迫占比",
        "p_tx_done": "交易已完成",
        "p_tx_open": "交易进行中/失败",
        "p_kyc_done": "KYC已完成",
        "p_kyc_open": "KYC进行中/被拒",
        "p_coupon": "优惠券导向",
        "p_purchase": "购买导向",
        "p_duration": "浏览时长（相对）",
        "p_interactions": "交互次数（相对）",
        "empty": "尚无聚类：模型还没有学习任何意图片段。",
    },
    "en": {
        "title": "Business-driven user personas and marketing strategy report",
        "intro": "Online clustering of intent segments, with differentiated strategies for each cluster.",
        "basis": "Data: {users} users, {segments} intent segments, {clusters} clusters (estimator {estimator})",
        "span": "; event time {first} to {last} (UTC)",
        "end": ".",
        "threshold": "Clusters with fewer than {k} users are folded into \u201cother / small clusters\u201d.",
        "summary": "Clusters at a glance",
        "col_cluster": "Cluster",
        "col_label": "Label",
        "col_users": "Users",
        "col_share": "Share",
        "col_segments": "Segments",
        "full_label": "Full label",
        "key_features": "Key features",
        "users": "Users: {n} unique users (persona members)",
        "unique_users": "Users with segments here: {n}{approx}",
        "approx": " (estimated)",
        "segments": "Segments: {n} intent segments",
        "duration": "Mean browse duration: {v:.2f} minutes",
        "interactions": "Mean interactions: {v:.2f}",
        "strength": "Mean intent strength: {v:.2f}",
        "behaviour_stage": "Behaviour stage",
        "urgency": "Urgency",
        "main_activity": "Main activity",
        "kyc_status": "KYC status",
        "transaction_status": "Transaction status",
        "lifecycle_stage": "Lifecycle",
        "trait": "Distinguishing trait",
        "qualified": "{label} ({trait})",
        "marketing": "Marketing strategy",
        "content": "Content strategy",
        "conversion": "Conversion strategy",
        "price": "Price strategy",
        "recommendation": "Product recommendations",
        "campaigns": "Differentiated campaigns",
        "small": "Other / small clusters",
        "small_intro": "These clusters have fewer than {k} users: too few to act on separately. Their users follow the general strategy until the cluster grows.",
        "none": "none",
        "chart_time": "Cluster size over time (segments per time bucket)",
        "chart_profile": "Feature profiles",
        "p_strength": "intent strength",
        "p_high": "high urgency",
        "p_tx_done": "transaction completed",
        "p_tx_open": "transaction open/failed",
        "p_kyc_done": "KYC completed",
        "p_kyc_open": "KYC open/rejected",
        "p_coupon": "coupon-oriented",
        "p_purchase": "purchase-focused",
        "p_duration": "browse duration (relative)",
        "p_interactions": "interactions (relative)",
        "empty": "No clusters yet: the model has not learned any intent segment.",
    },
}
LANGS: Final = tuple(TEXT)
#: Status fields listed under each cluster, in order (label-bearing ones first).
FEATURE_FIELDS: Final = ("behaviour_stage", "urgency", "main_activity", "kyc_status", "transaction_status", "lifecycle_stage")
#: Fixed colours of clusters in the charts (cluster id modulo the palette).
#: Candidate distinguishing traits: (measure, trait when above the other clusters, trait
#: when below or None). Measures: a mean, or "field=value" for a share of segments.
TRAITS: Final = (
    ("duration_min", "long_sessions", "short_sessions"),
    ("interactions", "many_interactions", "few_interactions"),
    ("intent_strength", "strong_intent", "weak_intent"),
    ("transaction_status=completed", "more_customers", None),
    ("kyc_status=in_progress", "more_open_kyc", None),
    ("main_activity=coupon_oriented", "coupon_leaning", None),
    ("main_activity=purchase_focused", "purchase_leaning", None),
    ("urgency=high", "more_urgent", None),
)
PALETTE: Final = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#17becf", "#bcbd22",
)  # fmt: skip


@dataclass
class StrategySection:
    key: str
    title: str
    lines: list[str]


@dataclass
class ClusterReport:
    """Everything the report says about one cluster, as plain values."""

    cluster_id: int
    title: str
    label: str
    users: int
    unique_users: int
    unique_exact: bool
    segments: int
    mean_duration: float
    mean_interactions: float
    mean_strength: float
    features: list[tuple[str, str]]
    strategies: list[StrategySection]
    profile: list[tuple[str, float]]
    timeline: dict[int, int]


@dataclass
class Report:
    lang: str
    estimator: str
    users: int
    segments: int
    min_users: int
    first_ms: int | None
    last_ms: int | None
    clusters: list[ClusterReport] = field(default_factory=list)
    small: list[ClusterReport] = field(default_factory=list)

    def text(self, key: str, **kw: Any) -> str:
        return TEXT[self.lang][key].format(**kw)


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def _mix(st: ClusterStats, name: str, lang: str, pb: Playbook, top: int = 3) -> str:
    dist = [(v, s) for v, s in st.distribution(name) if s > 0][:top]
    if not dist:
        return TEXT[lang]["none"]
    return " · ".join(f"{pb.vocab.term(name, v, lang)} {_pct(s)}" for v, s in dist)


def _measure(st: ClusterStats, name: str) -> float:
    field_, _, value = name.partition("=")
    return st.share(field_, value) if value else st.mean(name)


def cluster_traits(clusters: list[ClusterStats]) -> dict[int, list[tuple[str, float]]]:
    """Each cluster's distinguishing traits (:data:`TRAITS`) with their z-scores, most
    distinguishing first: how far the cluster's measure lies from the other clusters', in
    standard deviations across clusters. Empty for fewer than two clusters.

    >>> a, b, c = ClusterStats(0), ClusterStats(1), ClusterStats(2)
    >>> for st, minutes in ((a, 1.0), (b, 2.0), (c, 30.0)):
    ...     st.add({"duration_min": minutes, "interactions": 5, "intent_strength": 0.5})
    >>> {cid: traits[0][0] for cid, traits in cluster_traits([a, b, c]).items()}
    {0: 'short_sessions', 1: 'short_sessions', 2: 'long_sessions'}
    """
    if len(clusters) < 2:
        return {}
    zs: dict[str, list[float]] = {}
    for name, _, _ in TRAITS:
        values = [_measure(st, name) for st in clusters]
        m = sum(values) / len(values)
        sd = math.sqrt(sum((v - m) ** 2 for v in values) / len(values))
        zs[name] = [(v - m) / sd if sd > 1e-12 else 0.0 for v in values]
    out: dict[int, list[tuple[str, float]]] = {}
    for i, st in enumerate(clusters):
        cands = []
        for name, hi, lo in TRAITS:
            z = zs[name][i]
            trait = hi if z > 0 else lo
            if trait and z:
                cands.append((trait, z))
        out[st.cluster_id] = sorted(cands, key=lambda tz: -abs(tz[1]))
    return out


def _pick_traits(labels: dict[int, str], traits: dict[int, list[tuple[str, float]]]) -> dict[int, tuple[str, float]]:
    """One trait per cluster: the strongest, except that clusters sharing a label take, in
    id order, the strongest trait no earlier cluster with that label took."""
    taken: dict[str, set[str]] = {}
    out = {}
    for cid in sorted(labels):
        cands = traits.get(cid, [])
        used = taken.setdefault(labels[cid], set())
        pick = next((c for c in cands if c[0] not in used), cands[0] if cands else None)
        if pick:
            out[cid] = pick
            used.add(pick[0])
    return out


def min_users_threshold(total_users: int, cfg: PersonaSettings, min_users: int | None = None) -> int:
    """Smallest persona worth its own section: ``min_users`` when given, else
    ``max(report_min_users, ceil(report_min_user_share x users))``.

    >>> min_users_threshold(100_000, PersonaSettings()), min_users_threshold(40, PersonaSettings()), min_users_threshold(40, PersonaSettings(), 2)
    (1000, 5, 2)
    """
    if min_users is not None:
        return max(0, min_users)
    return max(cfg.report_min_users, math.ceil(cfg.report_min_user_share * total_users))


def build_report(
    model: PersonaModel, *, lang: str = "zh", min_users: int | None = None, playbook: Playbook | None = None
) -> Report:
    """The report's content for ``model``'s clusters (cost: O(clusters), not users)."""
    if lang not in TEXT:
        raise ValueError(f"unknown language {lang!r}; known: {', '.join(LANGS)}")
    cfg = model.settings
    pb = playbook or load_playbook(cfg.playbook or None)
    clusters = model.clusters()
    total_users = sum(st.assigned for st in clusters)
    threshold = min_users_threshold(total_users, cfg, min_users)
    firsts = [st.first_ms for st in clusters if st.first_ms is not None]
    lasts = [st.last_ms for st in clusters if st.last_ms is not None]
    rep = Report(
        lang=lang,
        estimator=cfg.estimator,
        users=total_users,
        segments=sum(st.segments for st in clusters),
        min_users=threshold,
        first_ms=min(firsts) if firsts else None,
        last_ms=max(lasts) if lasts else None,
    )
    max_duration = max((st.mean("duration_min") for st in clusters), default=0.0) or 1.0
    max_inter = max((st.mean("interactions") for st in clusters), default=0.0) or 1.0
    t = TEXT[lang]
    labels = {st.cluster_id: persona_label(st).text(lang, pb.vocab) for st in clusters}
    shared = {text for text in labels.values() if list(labels.values()).count(text) > 1}
    traits = _pick_traits(labels, cluster_traits(clusters))
    for st in clusters:
        label = persona_label(st)
        text = labels[st.cluster_id]
        trait = traits.get(st.cluster_id)
        trait_text = pb.vocab.term("trait", trait[0], lang) if trait else None
        if trait_text and text in shared:
            text = t["qualified"].format(label=text, trait=trait_text)
        features = [(t["behaviour_stage"], f"{pb.vocab.term('behaviour_stage', label.stage, lang)} ({_mix(st, 'behaviour_stage', lang, pb)})")]
        for name in FEATURE_FIELDS[1:]:
            features.append((t[name], _mix(st, name, lang, pb)))
        if trait and trait_text:
            features.append((t["trait"], f"{trait_text} (z = {trait[1]:+.1f})"))
        strategies = [
            StrategySection(key, t[key], pb.lines(key, st, lang, cfg.playbook_min_share, cfg.playbook_max_entries))
            for key in SECTIONS
        ]
        profile = [
            (t["p_strength"], st.mean("intent_strength")),
            (t["p_high"], st.share("urgency", "high")),
            (t["p_tx_done"], st.share("transaction_status", "completed")),
            (t["p_tx_open"], st.share("transaction_status", "in_progress") + st.share("transaction_status", "failed")),
            (t["p_kyc_done"], st.share("kyc_status", "completed")),
            (t["p_kyc_open"], st.share("kyc_status", "in_progress") + st.share("kyc_status", "rejected")),
            (t["p_coupon"], st.share("main_activity", "coupon_oriented")),
            (t["p_purchase"], st.share("main_activity", "purchase_focused")),
            (t["p_duration"], st.mean("duration_min") / max_duration),
            (t["p_interactions"], st.mean("interactions") / max_inter),
        ]
        cr = ClusterReport(
            cluster_id=st.cluster_id,
            title=label.title(st.cluster_id, lang, pb.vocab),
            label=text,
            users=st.assigned,
            unique_users=len(st.users),
            unique_exact=st.users.exact,
            segments=st.segments,
            mean_duration=st.mean("duration_min"),
            mean_interactions=st.mean("interactions"),
            mean_strength=st.mean("intent_strength"),
            features=features,
            strategies=strategies,
            profile=profile,
            timeline=dict(sorted(st.timeline.items())),
        )
        (rep.clusters if st.assigned >= threshold and st.assigned > 0 else rep.small).append(cr)
    return rep


# --------------------------------------------------------------------------- markdown


def _minute(ts_ms: int) -> str:
    return format_ts(ts_ms)[:16].replace("T", " ")


def _basis(rep: Report) -> str:
    n = len(rep.clusters) + len(rep.small)
    out = rep.text("basis", users=rep.users, segments=rep.segments, clusters=n, estimator=rep.estimator)
    if rep.first_ms is not None and rep.last_ms is not None:
        out += rep.text("span", first=_minute(rep.first_ms), last=_minute(rep.last_ms))
    return out + rep.text("end")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(rep: Report) -> str:
    """The report as Markdown (the example report's layout, with every section filled)."""
    t = TEXT[rep.lang]
    out = [f"# {t['title']}", "", t["intro"], "", _basis(rep), rep.text("threshold", k=rep.min_users), ""]
    if not rep.clusters and not rep.small:
        out += [t["empty"], ""]
        return "\n".join(out)
    out += [f"## {t['summary']}", "", f"| {t['col_cluster']} | {t['col_label']} | {t['col_users']} | {t['col_share']} | {t['col_segments']} |", "|---:|---|---:|---:|---:|"]
    for c in rep.clusters + rep.small:
        share = c.users / rep.users if rep.users else 0.0
        out.append(f"| {c.cluster_id} | {_md_cell(c.label)} | {c.users} | {_pct(share)} | {c.segments} |")
    out += ["", "---", ""]
    for c in rep.clusters:
        out += [f"## {c.title}", "", f"**{t['full_label']}**: {c.label}", "", f"### {t['key_features']}", ""]
        out += [f"- {line}" for line in _key_lines(rep, c)]
        for s in c.strategies:
            out += ["", f"### {s.title}", ""]
            out += [f"- {line}" for line in s.lines]
        out += ["", "---", ""]
    if rep.small:
        out += [f"## {t['small']}", "", rep.text("small_intro", k=rep.min_users), ""]
        out += [f"- {c.title} — {c.label}: {t['col_users']} {c.users}, {t['col_segments']} {c.segments}" for c in rep.small]
        out.append("")
    return "\n".join(out)


def _key_lines(rep: Report, c: ClusterReport) -> list[str]:
    t = TEXT[rep.lang]
    return [
        rep.text("users", n=c.users),
        rep.text("unique_users", n=c.unique_users, approx="" if c.unique_exact else t["approx"]),
        rep.text("segments", n=c.segments),
        rep.text("duration", v=c.mean_duration),
        rep.text("interactions", v=c.mean_interactions),
        rep.text("strength", v=c.mean_strength),
        *(f"{name}: {value}" for name, value in c.features),
    ]


# --------------------------------------------------------------------------- html

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

    parts = [f'<svg role="img" viewBox="0 0 {width} {height}" width="100%" aria-label="{_e(TEXT[rep.lang]["chart_time"])}">']
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
    t = TEXT[rep.lang]
    lang_attr = "zh-CN" if rep.lang == "zh" else "en"
    out = [
        f'<!DOCTYPE html><html lang="{lang_attr}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{_e(t['title'])}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(t['title'])}</h1><p>{_e(t['intro'])}</p>",
        f'<p class="muted">{_e(_basis(rep))} {_e(rep.text("threshold", k=rep.min_users))}</p>',
    ]
    if not rep.clusters and not rep.small:
        out.append(f"<p>{_e(t['empty'])}</p></main></body></html>")
        return "\n".join(out)
    out.append(f"<h2>{_e(t['summary'])}</h2><table><thead><tr>")
    out.append(
        f"<th>{_e(t['col_cluster'])}</th><th>{_e(t['col_label'])}</th><th class=\"n\">{_e(t['col_users'])}</th>"
        f"<th class=\"n\">{_e(t['col_share'])}</th><th class=\"n\">{_e(t['col_segments'])}</th></tr></thead><tbody>"
    )
    for c in rep.clusters + rep.small:
        share = c.users / rep.users if rep.users else 0.0
        out.append(
            f'<tr><td><span class="swatch" style="background:{_colour(c.cluster_id)}"></span>{c.cluster_id}</td>'
            f'<td>{_e(c.label)}</td><td class="n">{c.users}</td><td class="n">{_pct(share)}</td><td class="n">{c.segments}</td></tr>'
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
        out.extend(f"<li>{_e(line)}</li>" for line in _key_lines(rep, c))
        out.append(f'</ul></div><div><h3>{_e(t["chart_profile"])}</h3>{svg_profile(c)}</div></div><div class="grid">')
        for s in c.strategies:
            out.append(f"<div><h3>{_e(s.title)}</h3><ul>")
            out.extend(f"<li>{_e(line)}</li>" for line in s.lines)
            out.append("</ul></div>")
        out.append("</div></section>")
    if rep.small:
        out.append(f"<h2>{_e(t['small'])}</h2><p>{_e(rep.text('small_intro', k=rep.min_users))}</p><ul>")
        out.extend(
            f'<li><span class="swatch" style="background:{_colour(c.cluster_id)}"></span>{_e(c.title)} — {_e(c.label)}: '
            f"{_e(t['col_users'])} {c.users}, {_e(t['col_segments'])} {c.segments}</li>"
            for c in rep.small
        )
        out.append("</ul>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- sources


def segments_from_clickstream(lines: Iterable[tuple[int, bytes]], settings: Settings) -> Iterator[dict[str, Any]]:
    """Closed segments (dicts) of a clickstream, from the offline sessionizer."""
    from intentstream.stream.engine.offline import OfflineRunner

    topic = settings.topics.segments
    for t, payload in OfflineRunner(settings).run(lines, close_open=True):
        if t == topic:
            yield codec.loads(payload)


def read_segments(lines: Iterable[tuple[int, bytes]]) -> Iterator[dict[str, Any]]:
    """Segment dicts of a segments JSONL file (``intentstream segments`` output)."""
    for lineno, raw in lines:
        try:
            obj = codec.loads(raw)
        except codec.JSONDecodeError as exc:
            raise ValueError(f"line {lineno}: not JSON ({exc})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("user_id"), str):
            raise ValueError(f"line {lineno}: not an intent segment")
        yield obj


def learn(segments: Iterable[Any], cfg: PersonaSettings) -> PersonaModel:
    model = PersonaModel(cfg)
    for seg in segments:
        model.learn_one(seg)
    return model


def live_model(settings: Settings) -> PersonaModel:
    """The personas agent's model, from its last checkpoint in Redis."""
    from intentstream.stream.state.redis.personas import RedisPersonaStore

    store = RedisPersonaStore.from_settings(settings)
    try:
        data = store.load_checkpoint()
    finally:
        store.close()
    if data is None:
        raise LookupError("no persona checkpoint in Redis yet (is the personas agent running?)")
    return PersonaModel.from_checkpoint(data, settings.personas)


# --------------------------------------------------------------------------- command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="persona report per cluster with strategies (zh/en, markdown/html)",
        description="Persona report: one section per cluster with key features and strategies. "
        "From the live model (Redis checkpoint) by default, or offline from --input/--segments.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", metavar="FILE.jsonl", help="clickstream: sessionize and learn it offline")
    src.add_argument("--segments", metavar="SEG.jsonl", help="closed segments (intentstream segments output): learn them")
    p.add_argument("--lang", choices=LANGS, default="zh", help="report language (default zh)")
    p.add_argument("--format", choices=("md", "html"), default="md", help="markdown or self-contained HTML (default md)")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p.add_argument(
        "--min-users", type=int, metavar="K",
        help="fold clusters with fewer users into 'other / small clusters' "
        "(default: max([personas] report_min_users, report_min_user_share x users))",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentstream.stream.cli.validate import iter_lines

    settings = load_settings(args.config)
    started = time.perf_counter()
    try:
        if args.input or args.segments:
            path = args.input or args.segments
            with sys.stdin.buffer if path == "-" else open(path, "rb") as fh:
                lines = iter_lines(fh)
                segs = segments_from_clickstream(lines, settings) if args.input else read_segments(lines)
                model = learn(segs, settings.personas)
        else:
            model = live_model(settings)
    except (OSError, ValueError, LookupError) as exc:
        print(f"intentstream report: {exc}", file=sys.stderr)
        return 2
    learned = time.perf_counter()
    rep = build_report(model, lang=args.lang, min_users=args.min_users)
    text = render_html(rep) if args.format == "html" else render_markdown(rep)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    print(
        f"report: {len(rep.clusters)} clusters (+{len(rep.small)} small) for {rep.users} users, "
        f"{model.segments_seen} segments; model {learned - started:.2f}s, report {time.perf_counter() - learned:.3f}s",
        file=sys.stderr,
    )
    return 0
