"""The feature vector of one closed intent segment (:func:`segment_features`).

A closed :class:`~intentstream.stream.sessions.segments.IntentSegment` (or its
``to_dict()`` form) becomes a fixed-shape vector: always every key of :data:`FEATURES`,
in this order.

Numeric, standardised online by :class:`~intentstream.stream.personas.model.FeatureScaler`:

========================  ==============================================================
``log_duration``          ``log1p(duration_min)``                              (>= 0)
``log_interactions``      ``log1p(interactions)``                              (>= 0)
``intent_strength``       the segment's intent strength, clipped to [0, 1]
``urgency``               low 0, medium 0.5, high 1 (unknown: 0.5)
``share_<intent>``        share of the segment's events (``type_counts``) whose type votes
                          for each intent: browsing, coupon, purchase, kyc, account
                          (:data:`TYPE_INTENT`, the sessionizer's table); generic
                          interactions count in the total only; all 0 for no events
``log_amount``            ``log1p(amount)`` (0 without an amount)
========================  ==============================================================

Categorical, one-hot (0 or 1, times ``categorical_weight``, not standardised, so a rare
category does not dominate the distance): ``main_activity=<v>``, ``kyc_status=<v>``,
``transaction_status=<v>``, ``behaviour_stage=<v>`` for every value of
:data:`CATEGORIES` plus ``=other`` for values outside the vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from intentstream.stream.sessions.segments import (
    BEHAVIOUR_STAGES,
    INTENTS,
    KYC_STATUSES,
    MAIN_ACTIVITY,
    TRANSACTION_STATUSES,
)
from intentstream.stream.sessions.segments import TYPE_INTENT as _TYPE_VOTES

__all__ = [
    "CATEGORICAL_FEATURES",
    "CATEGORIES",
    "FEATURES",
    "FEATURE_VERSION",
    "INTENT_GROUPS",
    "NUMERIC_FEATURES",
    "TYPE_INTENT",
    "URGENCY_LEVELS",
    "as_mapping",
    "non_negative",
    "segment_features",
]

#: Bumped when the vector changes: a checkpoint of another version is refused.
FEATURE_VERSION: Final = 1

#: Intent of each voting event type (from :mod:`intentstream.stream.sessions.segments`); other types (app_open,
#: message_*, unknown) are generic interactions and count towards no intent share.
TYPE_INTENT: Final[dict[str, str]] = {typ: INTENTS[i] for typ, (i, _) in _TYPE_VOTES.items()}
INTENT_GROUPS: Final = INTENTS
URGENCY_LEVELS: Final[dict[str, float]] = {"low": 0.0, "medium": 0.5, "high": 1.0}

#: The vocabulary of each categorical segment field that is one-hot encoded.
CATEGORIES: Final[dict[str, tuple[str, ...]]] = {
    "main_activity": tuple(MAIN_ACTIVITY.values()),
    "kyc_status": KYC_STATUSES,
    "transaction_status": TRANSACTION_STATUSES,
    "behaviour_stage": tuple(BEHAVIOUR_STAGES),
}

NUMERIC_FEATURES: Final = (
    "log_duration", "log_interactions", "intent_strength", "urgency",
    *(f"share_{g}" for g in INTENT_GROUPS), "log_amount",
)  # fmt: skip
CATEGORICAL_FEATURES: Final = tuple(f"{name}={v}" for name, vals in CATEGORIES.items() for v in (*vals, "other"))
FEATURES: Final = NUMERIC_FEATURES + CATEGORICAL_FEATURES


def as_mapping(segment: Any) -> Mapping[str, Any]:
    """A segment as a mapping: itself, or its ``to_dict()``."""
    if isinstance(segment, Mapping):
        return segment
    return segment.to_dict()


def non_negative(value: Any) -> float:
    """``value`` as a float when it is a finite number >= 0 (not a bool), else 0.0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


def segment_features(segment: Any) -> dict[str, float]:
    """The feature vector of one segment (a mapping or an object with ``to_dict()``).

    All keys of :data:`FEATURES`, in that order, always present; missing or malformed
    fields count as zero / "other".

    >>> x = segment_features({"duration_min": 0, "interactions": 3, "intent_strength": 2.0,
    ...                       "urgency": "high", "type_counts": {"page_view": 2, "kyc_start": 1},
    ...                       "kyc_status": "in_progress", "behaviour_stage": "shopping"})
    >>> list(x) == list(FEATURES)
    True
    >>> x["intent_strength"], x["urgency"], round(x["share_kyc"], 3), x["log_amount"]
    (1.0, 1.0, 0.333, 0.0)
    >>> x["kyc_status=in_progress"], x["behaviour_stage=other"], x["main_activity=other"]
    (1.0, 1.0, 1.0)
    """
    seg = as_mapping(segment)
    x: dict[str, float] = {
        "log_duration": math.log1p(non_negative(seg.get("duration_min"))),
        "log_interactions": math.log1p(non_negative(seg.get("interactions"))),
        "intent_strength": min(1.0, non_negative(seg.get("intent_strength"))),
        "urgency": URGENCY_LEVELS.get(seg.get("urgency"), 0.5),  # type: ignore[arg-type]
    }
    shares = dict.fromkeys(INTENT_GROUPS, 0.0)
    counts = seg.get("type_counts") or {}
    total = 0.0
    if isinstance(counts, Mapping):
        for typ, n in counts.items():
            n = non_negative(n)
            intent = TYPE_INTENT.get(typ)
            if intent is not None:
                shares[intent] += n
            total += n
    for g in INTENT_GROUPS:
        x[f"share_{g}"] = shares[g] / total if total else 0.0
    x["log_amount"] = math.log1p(non_negative(seg.get("amount")))
    for name, vocab in CATEGORIES.items():
        value = seg.get(name)
        hit = value if value in vocab else "other"
        for v in (*vocab, "other"):
            x[f"{name}={v}"] = 1.0 if v == hit else 0.0
    return x
