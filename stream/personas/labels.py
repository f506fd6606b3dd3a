"""Cluster labels: the words that name a cluster persona.

A cluster is named by the behaviour its segments show most: :func:`cluster_label` takes the
cluster's most common behaviour stage *that agrees with its dominant transaction and KYC
statuses* (:func:`stage_agrees`), its dominant urgency and main activity. The label
describes the cluster; it is not the behaviour persona (stage · main activity) of any one
segment, and two clusters may share a label (the report then adds a distinguishing trait).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from intentstream.stream.personas.stats import ClusterStats

__all__ = ["STAGE_REQUIRES", "ClusterLabel", "cluster_label", "stage_agrees"]

#: A behaviour stage may name a cluster only when the cluster's dominant status agrees.
STAGE_REQUIRES: Final[dict[str, tuple[str, frozenset[str]]]] = {
    "transacted": ("transaction_status", frozenset({"completed"})),
    "transacting": ("transaction_status", frozenset({"in_progress", "failed"})),
    "verifying": ("kyc_status", frozenset({"in_progress", "rejected"})),
}


def stage_agrees(stage: str, dominant: Mapping[str, str]) -> bool:
    """True unless ``stage`` claims a status the cluster's dominant statuses deny.

    >>> stage_agrees("transacted", {"transaction_status": "in_progress"})
    False
    >>> stage_agrees("exploring", {"transaction_status": "in_progress"})
    True
    """
    rule = STAGE_REQUIRES.get(stage)
    return rule is None or dominant.get(rule[0]) in rule[1]


def _stage_from_statuses(dominant: Mapping[str, str]) -> str:
    tx, kyc = dominant.get("transaction_status"), dominant.get("kyc_status")
    if tx == "completed":
        return "transacted"
    if tx in ("in_progress", "failed"):
        return "transacting"
    if kyc in ("in_progress", "rejected"):
        return "verifying"
    return "exploring"


@dataclass(frozen=True)
class ClusterLabel:
    """Dominant behaviour stage, urgency and main activity of a cluster (vocabulary keys).

    Rendered by :meth:`text` / :meth:`title` with the playbook's vocabulary:

    >>> from intentstream.stream.personas.playbook import load_playbook
    >>> lab = ClusterLabel("transacted", "medium", "coupon_oriented")
    >>> vocab = load_playbook().vocab
    >>> lab.text("zh", vocab), lab.text("en", vocab)
    ('已完成交易·中紧迫·优惠券导向', 'transacted · medium urgency · coupon-oriented')
    >>> lab.title(0, "zh", vocab), lab.title(0, "en", vocab)
    ('聚类 0: 已完成交易·中紧迫', 'Cluster 0: transacted · medium urgency')
    """

    stage: str
    urgency: str
    activity: str

    def parts(self, lang: str, vocab: Any) -> tuple[str, str, str]:
        return (
            vocab.term("behaviour_stage", self.stage, lang),
            vocab.term("urgency", self.urgency, lang),
            vocab.term("main_activity", self.activity, lang),
        )

    def text(self, lang: str, vocab: Any) -> str:
        return vocab.separator(lang).join(self.parts(lang, vocab))

    def title(self, cluster_id: int, lang: str, vocab: Any) -> str:
        stage, urgency, _ = self.parts(lang, vocab)
        return f"{vocab.cluster_word(lang)} {cluster_id}: {stage}{vocab.separator(lang)}{urgency}"


def cluster_label(stats: ClusterStats) -> ClusterLabel:
    """The label of a cluster: its most common behaviour stage that agrees with its dominant
    transaction and KYC statuses (:func:`stage_agrees`), else a stage derived from those
    statuses; its dominant urgency and main activity.

    >>> st = ClusterStats(0)
    >>> for tx in ("in_progress", "in_progress", "completed"):
    ...     st.add({"behaviour_stage": "transacted", "transaction_status": tx, "urgency": "low",
    ...             "main_activity": "purchase_focused"})
    >>> cluster_label(st)   # "transacted" would contradict the dominant "in_progress"
    ClusterLabel(stage='transacting', urgency='low', activity='purchase_focused')
    """
    dominant = {name: stats.dominant(name)[0] for name in ("transaction_status", "kyc_status")}
    stage = next(
        (v for v, _ in stats.distribution("behaviour_stage") if v != "unknown" and stage_agrees(v, dominant)),
        None,
    )
    if stage is None:
        stage = _stage_from_statuses(dominant)
    urgency = stats.dominant("urgency")[0]
    activity = stats.dominant("main_activity")[0]
    return ClusterLabel(stage, urgency if urgency != "unknown" else "medium", activity)
