"""The planted truth of one run, as ``truth.json`` holds it.

The engine's uplift per send (:mod:`intentstream.stream.outcomes.uplift`) estimates the
average effect of a sent message on the users it was sent to. Its true value in a run is
known here: the mean planted effect over the decisions the estimate is about — measured
(:func:`~intentstream.stream.outcomes.record.is_measured`), in the treatment arm
(:func:`~intentstream.stream.outcomes.record.arm_of`), sent
(:func:`~intentstream.stream.outcomes.record.is_treated`) — per trigger, and per
(trigger, strategy, channel) cell, where it is the cell's planted effect.

*Interference* counts the decisions of a trigger other than the user's journey: during
the world's planned days they mean a journey fires more than its own trigger; after
them every user who was active on two days goes silent and gets ``churn_risk`` (the
world answers those with the churn reaction model, so they are measured like any other).

>>> from intentstream.stream.simulate.world import load_world
>>> recs = [{"action_id": f"a{i}", "user_id": "u1", "trigger": "cart_abandoned", "status": "sent", "reason": None,
...          "strategy": {"key": k, "group": "primary"}, "channel": ch, "corrected": False,
...          "experiment": {"id": "holdout-v2/cart_abandoned", "arm": "treatment"}}
...         for i, (k, ch) in enumerate([("cart_one_tap_checkout", "in_app"), ("cart_bigger_coupon", "push")])]
>>> t = true_effects(load_world(), recs)
>>> t["triggers"]["cart_abandoned"]["true_effect_on_treated"], t["triggers"]["cart_abandoned"]["sent"]
(0.09, 2)
>>> [(c["strategy"], c["channel"], c["true_effect"]) for c in t["cells"]]
[('cart_bigger_coupon', 'push', 0.18), ('cart_one_tap_checkout', 'in_app', 0.0)]
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from intentstream.stream.contract.events import format_ts, parse_ts
from intentstream.stream.decisions.contract import split_audit
from intentstream.stream.outcomes.record import HOLDOUT, TREATMENT, arm_of, is_measured, is_treated
from intentstream.stream.simulate.people import SimUser
from intentstream.stream.simulate.world import World


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def true_effects(world: World, outcomes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per trigger and per (trigger, strategy, channel) cell: the decisions and arms, and
    the true average effect on the treated (None when nothing was sent)."""
    triggers: dict[str, Counter[str]] = defaultdict(Counter)
    effects: dict[str, list[float]] = defaultdict(list)
    cells: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for rec in outcomes:
        trig = rec["trigger"]
        c = triggers[trig]
        c["records"] += 1
        if not is_measured(rec):
            continue
        c["measured"] += 1
        arm = arm_of(rec)
        c[arm] += 1
        if arm == TREATMENT and is_treated(rec):
            key = (rec.get("strategy") or {}).get("key") or "none"
            channel = rec["channel"] or "none"
            e = world.effect(trig, key, channel)
            effects[trig].append(e)
            cells[(trig, key, channel)].append(e)
    return {
        "triggers": {
            t: {
                "records": c["records"], "measured": c["measured"], "treatment": c[TREATMENT], "holdout": c[HOLDOUT],
                "sent": len(effects[t]), "base": world.base(t), "true_effect_on_treated": _mean(effects[t]),
            }
            for t, c in sorted(triggers.items())
        },
        "cells": [
            {"trigger": t, "strategy": k, "channel": ch, "sent": len(es), "true_effect": _mean(es)}
            for (t, k, ch), es in sorted(cells.items())
        ],
    }  # fmt: skip


def interference(users: Sequence[SimUser], audit: Iterable[Mapping[str, Any]], end_ms: int) -> dict[str, Any]:
    """Decisions by journey and trigger, and the ones of another trigger than the user's
    journey, split at the end of the world's planned days."""
    journey = {u.uid: u.journey for u in users}
    decided, _, _ = split_audit(audit)
    matrix: dict[str, Counter[str]] = defaultdict(Counter)
    during = after = 0
    for d in decided:
        j = journey.get(d["user_id"], "unknown")
        matrix[j][d["trigger"]] += 1
        if d["trigger"] != j:
            ts = parse_ts(d["decided_at"])
            if isinstance(ts, int) and ts < end_ms:
                during += 1
            else:
                after += 1
    total = len(decided)
    return {
        "decisions": total,
        "by_journey": {j: dict(sorted(c.items())) for j, c in sorted(matrix.items())},
        "other_trigger_during_world": during,
        "other_trigger_after_world": after,
        "share_during_world": round(during / total, 6) if total else 0.0,
        "world_end": format_ts(end_ms),
    }


def build_truth(
    world: World, *, seed: int, users: Sequence[SimUser], days: int, end_ms: int,
    audit: Sequence[Mapping[str, Any]], outcomes: Sequence[Mapping[str, Any]], reactions: Mapping[str, int],
) -> dict[str, Any]:  # fmt: skip
    """The whole ``truth.json``: the run, the planted tables, the true effects, the
    interference, and the reactions counted (with the clamps)."""
    decided = {d["action_id"] for d in split_audit(audit)[0]}
    seen = {o["action_id"] for o in outcomes}
    return {
        "seed": seed,
        "users": len(users),
        "days": days,
        "journeys": dict(sorted(Counter(u.journey for u in users).items())),
        "planted": world.planted(),
        "zero_cells": [list(c) for c in world.zero_cells()],
        **true_effects(world, outcomes),
        "interference": interference(users, audit, end_ms),
        "reactions": dict(sorted(reactions.items())),
        "decisions_without_outcome": len(decided - seen),
    }
