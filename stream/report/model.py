"""The persona report's content: one :class:`ClusterReport` per cluster, as plain values.

:func:`build_report` reads a :class:`~intentstream.stream.personas.model.PersonaModel`'s
clusters (cost: O(clusters), not users): title and full label
(:func:`~intentstream.stream.personas.labels.cluster_label`, which never contradicts the
statuses listed under it), key features, a distinguishing trait when clusters share a
label, a feature profile and six strategy sections from the playbook of the report's
business domain (:mod:`~intentstream.stream.report.domain`: ``[report] domain``, or
detected from the clusters' journeys; :mod:`~intentstream.stream.report.playbooks`), with
no entry about a journey the data lacks. Clusters whose members (users whose current
persona it is: each user counts in exactly one cluster) are fewer than
:func:`min_users_threshold` are folded into ``Report.small``. Rendering is
:mod:`~intentstream.stream.report.markdown` and :mod:`~intentstream.stream.report.html`.
Given an uplift table per trigger and cluster
(:func:`intentstream.stream.report.triggers.cluster_uplift`), each cluster also carries
its rows (``ClusterReport.uplift``), rendered as a "triggers & uplift" part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

from intentstream.stream.contract.events import format_ts
from intentstream.stream.outcomes.uplift import UpliftRow, UpliftTable
from intentstream.stream.personas.labels import cluster_label
from intentstream.stream.personas.model import PersonaModel
from intentstream.stream.personas.playbook import SECTIONS, Playbook, Vocabulary
from intentstream.stream.personas.stats import ClusterStats
from intentstream.stream.report.domain import DomainChoice, choose_domain
from intentstream.stream.report.playbooks import domain_playbook
from intentstream.stream.report.text import LANGS, TEXT, percent, words
from intentstream.stream.report.triggers import cluster_rows
from intentstream.stream.settings import PersonaSettings, ReportSettings, load_settings

__all__ = [
    "FEATURE_FIELDS",
    "TRAITS",
    "ClusterReport",
    "Report",
    "StrategySection",
    "build_report",
    "cluster_traits",
    "min_users_threshold",
]

#: Status fields listed under each cluster, in order (label-bearing ones first).
FEATURE_FIELDS: Final = ("behaviour_stage", "urgency", "main_activity", "kyc_status", "transaction_status", "lifecycle_stage")

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


@dataclass
class StrategySection:
    """One strategy section of a cluster: its playbook key, title and lines."""

    key: str
    title: str
    lines: list[str]


@dataclass
class ClusterReport:
    """Everything the report says about one cluster, as plain values."""

    cluster_id: int
    title: str
    label: str
    #: users whose current persona is this cluster (each user counts in one cluster)
    users: int
    #: users with at least one segment in this cluster (>= users; overlaps other clusters)
    unique_users: int
    unique_exact: bool
    segments: int
    #: events of those segments
    events: int
    mean_duration: float
    mean_interactions: float
    mean_strength: float
    features: list[tuple[str, str]]
    strategies: list[StrategySection]
    profile: list[tuple[str, float]]
    timeline: dict[int, int]
    #: the cluster's rows of the report's uplift table, by trigger (None: no outcomes given)
    uplift: list[UpliftRow] | None = None


@dataclass
class Report:
    """The whole report as plain values: one :class:`ClusterReport` per cluster persona big
    enough for strategies (``clusters``), the rest folded into ``small``."""

    lang: str
    estimator: str
    users: int
    segments: int
    events: int
    min_users: int
    first_ms: int | None
    last_ms: int | None
    domain: DomainChoice
    vocab: Vocabulary
    clusters: list[ClusterReport] = field(default_factory=list)
    small: list[ClusterReport] = field(default_factory=list)
    #: uplift per trigger and cluster (None: the report has no "triggers & uplift" part)
    uplift: UpliftTable | None = None

    @property
    def words(self) -> dict[str, str]:
        """The report's own words in its language and domain."""
        return words(self.lang, self.domain.domain)

    def text(self, key: str, **kw: Any) -> str:
        return self.words[key].format(**kw)

    def basis(self) -> str:
        """The line that says what the report is based on (users, segments, events, clusters, span)."""
        n = len(self.clusters) + len(self.small)
        out = self.text("basis", users=self.users, segments=self.segments, events=self.events, clusters=n, estimator=self.estimator)
        if self.first_ms is not None and self.last_ms is not None:
            out += self.text("span", first=_minute(self.first_ms), last=_minute(self.last_ms))
        return out + self.text("end")

    def domain_lines(self) -> list[str]:
        """The report's domain and why; the journeys in the data and those not in it."""
        d, lang, term = self.domain, self.lang, self.vocab.term
        why = self.text(f"why_{d.detected}", **d.journeys)
        if d.forced:
            line = self.text("domain_forced", domain=term("domain", d.domain, lang), detected=term("domain", d.detected, lang), why=why)
        else:
            line = self.text("domain_auto", domain=term("domain", d.domain, lang), why=why)
        sep = self.words["list_sep"]
        names = [term("journey", j, lang) for j in sorted(d.present, key=list(d.journeys).index)]
        out = [line, self.text("journeys", present=sep.join(names) or self.words["none"])]
        if d.absent:
            out.append(self.text("journeys_absent", absent=sep.join(term("journey", j, lang) for j in d.absent)))
        return out

    def header_lines(self) -> list[str]:
        """The lines under the title: totals and how they add up, domain, journeys, threshold."""
        return [self.basis(), self.text("totals"), *self.domain_lines(), self.text("threshold", k=self.min_users)]

    def key_lines(self, c: ClusterReport) -> list[str]:
        """The key-feature lines of one cluster."""
        t = self.words
        unique = max(c.unique_users, c.users)  # a sketch's estimate may fall short of the exact members
        return [
            self.text("users", n=c.users),
            self.text("unique_users", n=unique, approx="" if c.unique_exact else t["approx"], members=c.users, others=unique - c.users),
            self.text("segments", n=c.segments, events=c.events),
            self.text("duration", v=c.mean_duration),
            self.text("interactions", v=c.mean_interactions),
            self.text("strength", v=c.mean_strength),
            *(f"{name}: {value}" for name, value in c.features),
        ]


def _events(st: ClusterStats) -> int:
    """Events in a cluster's segments (a segment's interactions count every event in it)."""
    return int(round(st.sums["interactions"]))


def _minute(ts_ms: int) -> str:
    return format_ts(ts_ms)[:16].replace("T", " ")


def _mix(st: ClusterStats, name: str, lang: str, pb: Playbook, top: int = 3) -> str:
    dist = [(v, s) for v, s in st.distribution(name) if s > 0][:top]
    if not dist:
        return TEXT[lang]["none"]
    return " · ".join(f"{pb.vocab.term(name, v, lang)} {percent(s)}" for v, s in dist)


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

    >>> min_users_threshold(100_000, PersonaSettings.defaults()), min_users_threshold(40, PersonaSettings.defaults()), min_users_threshold(40, PersonaSettings.defaults(), 2)
    (1000, 5, 2)
    """
    if min_users is not None:
        return max(0, min_users)
    return max(cfg.report_min_users, math.ceil(cfg.report_min_user_share * total_users))


def build_report(
    model: PersonaModel,
    *,
    lang: str = "zh",
    min_users: int | None = None,
    playbook: Playbook | None = None,
    uplift: UpliftTable | None = None,
    settings: ReportSettings | None = None,
) -> Report:
    """The report's content for ``model``'s clusters (cost: O(clusters), not users);
    with ``uplift`` (per trigger and cluster), each cluster's rows of it too.
    ``settings``: ``[report]`` (default: :func:`~intentstream.stream.settings.load_settings`'s);
    ``playbook``: used as given instead of the domain's playbook."""
    if lang not in TEXT:
        raise ValueError(f"unknown language {lang!r}; known: {', '.join(LANGS)}")
    cfg = model.settings
    clusters = model.clusters()
    choice = choose_domain(clusters, settings or load_settings().report)
    pb = playbook or domain_playbook(choice.domain, choice.present, cfg.playbook or None)
    total_users = sum(st.assigned for st in clusters)
    threshold = min_users_threshold(total_users, cfg, min_users)
    firsts = [st.first_ms for st in clusters if st.first_ms is not None]
    lasts = [st.last_ms for st in clusters if st.last_ms is not None]
    rep = Report(
        lang=lang,
        estimator=cfg.estimator,
        users=total_users,
        segments=sum(st.segments for st in clusters),
        events=sum(_events(st) for st in clusters),
        min_users=threshold,
        first_ms=min(firsts) if firsts else None,
        last_ms=max(lasts) if lasts else None,
        domain=choice,
        vocab=pb.vocab,
        uplift=uplift,
    )
    max_duration = max((st.mean("duration_min") for st in clusters), default=0.0) or 1.0
    max_inter = max((st.mean("interactions") for st in clusters), default=0.0) or 1.0
    t = rep.words
    labels = {st.cluster_id: cluster_label(st).text(lang, pb.vocab) for st in clusters}
    shared = {text for text in labels.values() if list(labels.values()).count(text) > 1}
    traits = _pick_traits(labels, cluster_traits(clusters))
    for st in clusters:
        label = cluster_label(st)
        text = labels[st.cluster_id]
        trait = traits.get(st.cluster_id)
        trait_text = pb.vocab.term("trait", trait[0], lang) if trait else None
        if trait_text and text in shared:
            text = t["qualified"].format(label=text, trait=trait_text)
        features = [(t["behaviour_stage"], f"{pb.vocab.term('behaviour_stage', label.stage, lang)} ({_mix(st, 'behaviour_stage', lang, pb)})")]
        for name in FEATURE_FIELDS[1:]:
            if choice.shows(name):
                features.append((t[name], _mix(st, name, lang, pb)))
        if trait and trait_text:
            features.append((t["trait"], f"{trait_text} (z = {trait[1]:+.1f})"))
        strategies = [
            StrategySection(key, t[key], pb.lines(key, st, lang, cfg))
            for key in SECTIONS
        ]
        profile = [
            (t[key], value)
            for key, name, value in (
                ("p_strength", "", st.mean("intent_strength")),
                ("p_high", "", st.share("urgency", "high")),
                ("p_tx_done", "transaction_status", st.share("transaction_status", "completed")),
                ("p_tx_open", "transaction_status", st.share("transaction_status", "in_progress") + st.share("transaction_status", "failed")),
                ("p_kyc_done", "kyc_status", st.share("kyc_status", "completed")),
                ("p_kyc_open", "kyc_status", st.share("kyc_status", "in_progress") + st.share("kyc_status", "rejected")),
                ("p_coupon", "", st.share("main_activity", "coupon_oriented")),
                ("p_purchase", "", st.share("main_activity", "purchase_focused")),
                ("p_duration", "", st.mean("duration_min") / max_duration),
                ("p_interactions", "", st.mean("interactions") / max_inter),
            )
            if choice.shows(name)
        ]
        cr = ClusterReport(
            cluster_id=st.cluster_id,
            title=label.title(st.cluster_id, lang, pb.vocab),
            label=text,
            users=st.assigned,
            unique_users=len(st.users),
            unique_exact=st.users.exact,
            segments=st.segments,
            events=_events(st),
            mean_duration=st.mean("duration_min"),
            mean_interactions=st.mean("interactions"),
            mean_strength=st.mean("intent_strength"),
            features=features,
            strategies=strategies,
            profile=profile,
            timeline=dict(sorted(st.timeline.items())),
            uplift=None if uplift is None else cluster_rows(uplift, st.cluster_id),
        )
        (rep.clusters if st.assigned >= threshold and st.assigned > 0 else rep.small).append(cr)
    return rep
