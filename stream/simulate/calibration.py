"""Calibration: does each uplift interval cover the planted truth?

For one run, :func:`checks` lays the uplift table of its outcome records
(:func:`intentstream.stream.outcomes.uplift.summarize`) beside its truth
(:mod:`intentstream.stream.simulate.truth`): for every trigger, the ``uplift_per_send``
interval against the true average effect on the treated; for every cell planted to do
nothing, the cell's interval against 0. A 95 % interval should cover the truth in about
95 % of (trigger, seed) pairs; :func:`coverage` counts them. A row without enough data
(fewer than ``min_per_arm`` decisions in an arm) has no interval and is not judged.

>>> truth = {"triggers": {"t": {"true_effect_on_treated": 0.1}}, "zero_cells": []}
>>> recs = [{"trigger": "t", "status": "sent" if arm == "treatment" else "holdout", "reason": None, "corrected": False,
...          "strategy": {"key": "k"}, "channel": "push", "persona": None, "opened": False, "clicked": False,
...          "experiment": {"arm": arm}, "converted": i % 10 < (3 if arm == "treatment" else 2)}
...         for arm in ("treatment", "holdout") for i in range(200)]
>>> trig, zero = checks(truth, recs, min_per_arm=30, confidence=0.95)
>>> [(c.key["trigger"], c.truth, round(c.estimate, 2), c.covered) for c in trig], zero
([('t', 0.1, 0.1, True)], [])
>>> coverage(trig)
(1, 1)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from intentstream.stream.outcomes.uplift import ALL, UpliftRow, summarize

TRIGGER_LEVEL = ("trigger",)
CELL_LEVEL = ("trigger", "strategy", "channel")


@dataclass(frozen=True)
class Check:
    """One interval against one true value (``estimate``/``low``/``high`` None: not enough data)."""

    key: Mapping[str, str]
    truth: float | None
    estimate: float | None
    low: float | None
    high: float | None
    treatment: int
    holdout: int
    sent: int

    @property
    def covered(self) -> bool | None:
        """Whether the interval holds the truth; None when there is no interval or no truth."""
        if self.low is None or self.high is None or self.truth is None:
            return None
        return self.low <= self.truth <= self.high

    @property
    def width(self) -> float | None:
        return None if self.low is None or self.high is None else self.high - self.low


def _check(row: UpliftRow, truth: float | None) -> Check:
    ps = row.uplift_per_send if row.enough else None
    key = {k: v for k, v in row.key.items() if v != ALL}
    if ps is None:
        return Check(key, truth, None, None, None, row.treatment, row.holdout, row.sent)
    return Check(key, truth, ps.estimate, ps.low, ps.high, row.treatment, row.holdout, row.sent)


def checks(
    truth: Mapping[str, Any], outcomes: Iterable[Mapping[str, Any]], *, min_per_arm: int | None = None,
    confidence: float | None = None,
) -> tuple[list[Check], list[Check]]:  # fmt: skip
    """(one check per trigger, one per cell planted to do nothing) for one run."""
    table = summarize(list(outcomes), levels=(TRIGGER_LEVEL, CELL_LEVEL), min_per_arm=min_per_arm, confidence=confidence)
    triggers, zero = [], []
    zero_cells = {tuple(c) for c in truth.get("zero_cells", [])}
    for row in table.rows:
        k = row.key
        if all(k.get(d) == ALL for d in CELL_LEVEL[1:]) and k["persona"] == ALL:
            t = truth["triggers"].get(k["trigger"], {}).get("true_effect_on_treated")
            triggers.append(_check(row, t))
        elif k["persona"] == ALL and (k["trigger"], k["strategy"], k["channel"]) in zero_cells:
            zero.append(_check(row, 0.0))
    return triggers, zero


def coverage(results: Sequence[Check]) -> tuple[int, int]:
    """(intervals that cover their truth, intervals judged)."""
    judged = [c.covered for c in results if c.covered is not None]
    return sum(judged), len(judged)
