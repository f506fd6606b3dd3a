"""The persona report's "triggers & uplift" part: per cluster, what each trigger's
messages did for the cluster's users, against the trigger's holdout group.

Outcome records (:mod:`intentstream.stream.outcomes.record`) carry the decision's
behaviour persona, never the River cluster (the live persona model runs apart from the
engine). The report joins them here: each record's user is looked up in the model's
user -> cluster assignment (:meth:`~intentstream.stream.personas.model.PersonaModel.assignment`),
and :func:`~intentstream.stream.outcomes.uplift.summarize` groups by ``(trigger,
cluster)`` with that as ``persona_of``. Users the model has not assigned (no closed
segment yet) fall under :data:`UNASSIGNED` and in no cluster's section.

>>> from intentstream.stream.personas.model import PersonaModel
>>> from intentstream.stream.settings import PersonaSettings
>>> model = PersonaModel(PersonaSettings.defaults(n_clusters=2))
>>> cluster_of(model)({"user_id": "nobody"})
'unassigned'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from intentstream.stream.outcomes.render import fmt_pp, fmt_rate
from intentstream.stream.outcomes.uplift import UpliftRow, UpliftTable, summarize
from intentstream.stream.personas.model import PersonaModel
from intentstream.stream.report.text import TEXT
from intentstream.stream.settings import OutcomeSettings

__all__ = ["LEVELS", "UNASSIGNED", "cluster_of", "cluster_rows", "cluster_uplift", "columns", "row_cells", "uplift_note"]

#: The persona key of a record whose user has no cluster in the model.
UNASSIGNED: Final = "unassigned"

#: One level: per trigger and cluster (the cluster in the ``persona`` dimension).
LEVELS: Final = (("trigger", "persona"),)


def cluster_of(model: PersonaModel) -> Callable[[Mapping[str, Any]], str]:
    """``persona_of`` for :func:`summarize`: the record's user's cluster id, as text."""

    def persona_of(rec: Mapping[str, Any]) -> str:
        cid = model.assignment(rec["user_id"])
        return UNASSIGNED if cid is None else str(cid)

    return persona_of


def cluster_uplift(model: PersonaModel, records: Iterable[Mapping[str, Any]], cfg: OutcomeSettings | None = None) -> UpliftTable:
    """The uplift table per trigger and cluster of ``model`` (``cfg``: ``[outcomes]``
    min_per_arm and confidence; default the defaults)."""
    kw: dict[str, Any] = {} if cfg is None else {"min_per_arm": cfg.min_per_arm, "confidence": cfg.confidence}
    return summarize(records, levels=LEVELS, persona_of=cluster_of(model), **kw)


def cluster_rows(table: UpliftTable, cluster_id: int) -> list[UpliftRow]:
    """The rows of one cluster, by trigger."""
    cid = str(cluster_id)
    return [r for r in table.rows if r.key["persona"] == cid]


def uplift_note(table: UpliftTable, lang: str) -> str:
    """The line under the report's basis that says how the part is computed."""
    return TEXT[lang]["uplift_note"].format(
        records=table.records, measured=table.measured, conf=f"{table.confidence * 100:g}", k=table.min_per_arm
    )


def columns(lang: str) -> list[str]:
    """The part's column titles."""
    t = TEXT[lang]
    return [t[k] for k in ("col_trigger", "col_decisions", "col_sends", "col_cvr", "col_holdout_cvr", "col_uplift")]


def row_cells(row: UpliftRow, table: UpliftTable, lang: str) -> list[str]:
    """One trigger's cells: trigger, decisions (treatment+holdout), sends, CVR, holdout
    CVR, uplift in pp with its interval, or "not enough data" in place of the numbers."""
    lead = [row.key["trigger"], f"{row.treatment}+{row.holdout}", str(row.sent)]
    if not row.enough:
        text = TEXT[lang]["not_enough"].format(t=row.treatment, h=row.holdout, k=table.min_per_arm)
        return [*lead, "", "", text]
    return [*lead, fmt_rate(row.cvr), fmt_rate(row.holdout_cvr), fmt_pp(row.uplift_abs)]
