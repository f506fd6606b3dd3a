"""Rolling conversion and uplift per trigger for ``ops.metrics`` and ``/metrics`` (pure).

The engine counts each outcome record it commits as a step counter
``outcome:<trigger>:<arm>:<converted 0/1>:<measured 0/1>:<sent 0/1>``. An
:class:`OutcomeMeter` keeps, per trigger, the latest ``[outcomes] metrics_window``
*measured* records (:func:`intentstream.stream.outcomes.record.is_measured`) and
summarises them: conversion in each arm and the uplift (treatment − holdout, intention to
treat) with its interval (:func:`intentstream.stream.outcomes.uplift.newcombe_difference`),
or "not enough data" below ``min_per_arm`` in either arm. Per worker: each worker sees
the outcomes of its own partitions. The exact, complete table is ``intentstream uplift``.

>>> m = OutcomeMeter(window=100, min_per_arm=2, confidence=0.95)
>>> m.observe({"outcome:cart_abandoned:treatment:1:1:1": 3, "outcome:cart_abandoned:treatment:0:1:1": 1,
...            "outcome:cart_abandoned:holdout:0:1:0": 2, "outcome:cart_abandoned:holdout:0:0:0": 5, "events": 9})
>>> (s,) = m.summary()
>>> s["trigger"], s["records"], s["treatment"], s["holdout"], s["cvr"], s["holdout_cvr"], s["enough"]
('cart_abandoned', 6, 4, 2, 0.75, 0.0, True)
>>> round(s["uplift"]["estimate"], 2), s["uplift"]["low"] < 0.75 < s["uplift"]["high"]
(0.75, True)
>>> outcome_totals({"outcome:cart_abandoned:holdout:0:1:0": 2, "outcome:cart_abandoned:holdout:0:0:0": 5})
{('cart_abandoned', 'holdout', 'false'): 7}
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from intentstream.stream.outcomes.record import HOLDOUT, TREATMENT
from intentstream.stream.outcomes.uplift import newcombe_difference
from intentstream.stream.settings import OutcomeSettings, default_settings

#: Prefix of the engine's per-step outcome counters.
OUTCOME_PREFIX = "outcome:"


def parse_outcome_counter(name: str) -> tuple[str, str, bool, bool, bool] | None:
    """(trigger, arm, converted, measured, sent) of an outcome counter name, else None."""
    if not name.startswith(OUTCOME_PREFIX):
        return None
    parts = name.split(":")
    if len(parts) != 6:
        return None
    return parts[1], parts[2], parts[3] == "1", parts[4] == "1", parts[5] == "1"


def outcome_totals(counters: Mapping[str, float]) -> dict[tuple[str, str, str], float]:
    """Cumulative outcome records by (trigger, arm, converted "true"/"false")."""
    out: dict[tuple[str, str, str], float] = {}
    for name, value in counters.items():
        parsed = parse_outcome_counter(name)
        if parsed is not None:
            key = (parsed[0], parsed[1], "true" if parsed[2] else "false")
            out[key] = out.get(key, 0) + value
    return dict(sorted(out.items()))


class OutcomeMeter:
    """Per trigger, the latest ``window`` measured outcome records as (arm, converted)."""

    def __init__(self, window: int, min_per_arm: int, confidence: float) -> None:
        self.window = window
        self.min_per_arm = min_per_arm
        self.confidence = confidence
        self.recent: dict[str, deque[tuple[str, bool]]] = {}

    @classmethod
    def from_settings(cls, cfg: OutcomeSettings | None = None) -> OutcomeMeter:
        cfg = cfg or default_settings().outcomes
        return cls(cfg.metrics_window, cfg.min_per_arm, cfg.confidence)

    def observe(self, step_counters: Mapping[str, float]) -> None:
        """The counters of one engine step (only the outcome ones are read)."""
        for name, n in sorted(step_counters.items()):
            parsed = parse_outcome_counter(name)
            if parsed is None or not parsed[3]:
                continue
            trigger, arm, converted = parsed[0], parsed[1], parsed[2]
            q = self.recent.setdefault(trigger, deque(maxlen=self.window))
            q.extend([(arm, converted)] * int(n))

    def summary(self) -> list[dict[str, Any]]:
        """One entry per trigger (sorted): records in the window, each arm's size and
        conversion, and the uplift with its interval when both arms have enough."""
        out = []
        for trigger, q in sorted(self.recent.items()):
            n = {TREATMENT: 0, HOLDOUT: 0}
            k = {TREATMENT: 0, HOLDOUT: 0}
            for arm, converted in q:
                if arm in n:
                    n[arm] += 1
                    k[arm] += converted
            enough = n[TREATMENT] >= self.min_per_arm and n[HOLDOUT] >= self.min_per_arm
            uplift = None
            if enough:
                iv = newcombe_difference(k[TREATMENT], n[TREATMENT], k[HOLDOUT], n[HOLDOUT], self.confidence)
                uplift = {"estimate": iv.estimate, "low": iv.low, "high": iv.high}
            out.append({
                "trigger": trigger, "records": len(q), "treatment": n[TREATMENT], "holdout": n[HOLDOUT],
                "cvr": k[TREATMENT] / n[TREATMENT] if n[TREATMENT] else None,
                "holdout_cvr": k[HOLDOUT] / n[HOLDOUT] if n[HOLDOUT] else None,
                "uplift": uplift, "enough": enough,
            })  # fmt: skip
        return out
