"""Synthetic closed intent segments with planted personas, without a clickstream.

For tests, doctests and scale measurements of the persona model and report, where running
the generator and the sessionizer would cost more than the thing measured. Each segment
is a short scripted run of events fed through the sessionizer's own
:class:`~intentstream.stream.sessions.segments.SegmentAccumulator`, so every label (intent, strength, urgency,
statuses, behaviour stage) follows the real formulas; users carry their KYC and
transaction statuses from segment to segment. The persona names and user ids match the
clickstream generator's (:data:`intentstream.stream.synth.config.PERSONAS`,
:func:`intentstream.stream.synth.users.user_id`). Realistic traces for scoring come from
:mod:`intentstream.stream.synth.clickstream` and the sessionizer (``bench/personas.py``
uses them when available).

Segments come day by day (users in index order within a day); user ``i``'s segments of
day ``d`` depend only on ``(seed, i, d)`` and that user's earlier days.

>>> segs = list(synthetic_segments(users=5, days=2, seed=1))
>>> {s["user_id"] for s in segs} <= set(synthetic_truth(users=5, seed=1))
True
>>> segs == list(synthetic_segments(users=5, days=2, seed=1))
True
>>> {"behaviour_stage", "kyc_status", "type_counts"} <= set(segs[0])
True
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Iterator
from itertools import accumulate
from typing import Any, Final

from intentstream.stream.contract.events import parse_ts
from intentstream.stream.sessions.segments import Labeller, SegmentAccumulator
from intentstream.stream.synth.users import user_id

#: Persona -> (share of users, segment kinds with weights, mean segments per active day).
PERSONA_SCRIPTS: Final[dict[str, tuple[float, tuple[tuple[str, float], ...], float]]] = {
    "explorer": (0.18, (("browse", 0.9), ("coupon", 0.1)), 2.0),
    "coupon_hunter": (0.10, (("coupon", 0.55), ("coupon_buy", 0.25), ("browse", 0.2)), 1.8),
    "buyer_complete": (0.13, (("buy", 0.45), ("browse", 0.55)), 1.6),
    "cart_abandoner": (0.10, (("cart", 0.5), ("browse", 0.5)), 1.6),
    "payment_failer": (0.07, (("pay_fail", 0.45), ("browse", 0.55)), 1.4),
    "kyc_finisher": (0.08, (("kyc_finish", 0.35), ("browse", 0.65)), 1.4),
    "kyc_staller": (0.07, (("kyc_stall", 0.4), ("browse", 0.6)), 1.3),
    "kyc_rejected": (0.04, (("kyc_reject", 0.4), ("browse", 0.6)), 1.3),
    "churner": (0.09, (("browse", 0.85), ("buy", 0.15)), 2.0),
    "night_owl": (0.08, (("browse", 0.8), ("buy", 0.2)), 1.5),
    "unsubscriber": (0.06, (("account", 0.3), ("browse", 0.7)), 1.5),
}
PERSONAS: Final = tuple(PERSONA_SCRIPTS)

_DAY: Final = 86_400_000
_KYC_AFTER: Final = {"kyc_start": "in_progress", "kyc_submit": "in_progress", "kyc_approved": "completed", "kyc_rejected": "rejected"}
_TX_AFTER: Final = {"checkout_start": "in_progress", "payment_submit": "in_progress", "payment_success": "completed", "payment_fail": "failed"}
_BROWSE: Final = ("page_view", "page_view", "page_view", "click", "click", "search", "app_open", "message_open")
_LIFECYCLE: Final = (("introduction", 0.4), ("growth", 0.3), ("maturity", 0.2), ("decline", 0.1))
_LIFECYCLE_CUM: Final = list(accumulate(w for _, w in _LIFECYCLE))
_TZS: Final = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC")
_DEVICES: Final = ("ios", "android", "desktop")


def _assign(users: int, seed: int) -> list[str]:
    counts = {p: int(users * share) for p, (share, _, _) in PERSONA_SCRIPTS.items()}
    names = list(PERSONA_SCRIPTS)
    i = 0
    while sum(counts.values()) < users:  # remainder round-robin, largest share first
        counts[sorted(names, key=lambda p: -PERSONA_SCRIPTS[p][0])[i % len(names)]] += 1
        i += 1
    personas = [p for p in names for _ in range(counts[p])]
    random.Random(f"intentstream-synth:{seed}:personas").shuffle(personas)
    return personas


def synthetic_truth(users: int, seed: int = 0) -> dict[str, str]:
    """User id -> planted persona."""
    return {user_id(i, users): p for i, p in enumerate(_assign(users, seed))}


def _script(kind: str, rng: random.Random) -> list[str]:
    browse = [rng.choice(_BROWSE) for _ in range(rng.randint(1, 4))]
    if kind == "browse":
        return [rng.choice(_BROWSE) for _ in range(rng.randint(4, 30))]
    if kind == "coupon":
        return browse + ["coupon_view"] * rng.randint(2, 6) + ["coupon_claim"] * rng.randint(0, 2)
    if kind == "coupon_buy":
        return ["coupon_view", "coupon_claim", "add_to_cart", "checkout_start", "coupon_redeem", "payment_submit", "payment_success"]
    if kind == "buy":
        return browse + ["add_to_cart"] * rng.randint(1, 3) + ["checkout_start", "payment_submit", "payment_success"]
    if kind == "cart":
        return browse + ["page_view"] * rng.randint(2, 8) + ["add_to_cart"] * rng.randint(1, 2)
    if kind == "pay_fail":
        return ["add_to_cart", "checkout_start", "payment_submit", "payment_fail"]
    if kind == "kyc_finish":
        return ["kyc_start", "kyc_submit", "kyc_approved"]
    if kind == "kyc_stall":
        return ["kyc_start"] + ["kyc_submit"] * rng.randint(0, 1)
    if kind == "kyc_reject":
        return ["kyc_start", "kyc_submit", "kyc_rejected"]
    if kind == "account":
        return ["login", "form_start", "form_submit"] + (["unsubscribe"] if rng.random() < 0.5 else [])
    raise ValueError(kind)


def synthetic_segments(
    users: int, seed: int = 0, days: int = 7, start: str = "2026-01-05T00:00:00Z"
) -> Iterator[dict[str, Any]]:
    """Closed segments (``IntentSegment.to_dict()`` form) of ``users`` users over ``days`` days."""
    personas = _assign(users, seed)
    start_ms = parse_ts(start)
    assert isinstance(start_ms, int)
    labeller = Labeller.from_settings()
    status: dict[int, tuple[str, str, str, str, str]] = {}  # kyc, tx, lifecycle, tz, device
    for day in range(days):
        midnight = start_ms + day * _DAY
        for i, persona in enumerate(personas):
            rng = random.Random(f"intentstream-synth:{seed}:{i}:{day}")
            if i not in status:
                init = random.Random(f"intentstream-synth:{seed}:{i}")
                life = _LIFECYCLE[bisect(_LIFECYCLE_CUM, init.random() * _LIFECYCLE_CUM[-1])][0]
                if persona == "churner" and init.random() < 0.6:
                    life = "decline"
                status[i] = ("not_started", "not_started", life, init.choice(_TZS), init.choice(_DEVICES))
            if persona == "churner" and day >= 2:
                continue
            _, kinds, per_day = PERSONA_SCRIPTS[persona]
            if rng.random() > 0.7:
                continue
            kyc, tx, life, tz, device = status[i]
            uid = user_id(i, users)
            cum = list(accumulate(w for _, w in kinds))
            hour = rng.randint(20, 23) if persona == "night_owl" else rng.randint(7, 21)
            t = midnight + hour * 3_600_000 + rng.randrange(3_000_000)
            for s in range(max(1, round(rng.expovariate(1 / per_day)))):
                kind = kinds[bisect(cum, rng.random() * cum[-1])][0]
                acc = SegmentAccumulator()
                session = f"{uid}:{day}:{s}"
                for n, typ in enumerate(_script(kind, rng)):
                    t += int(rng.lognormvariate(10.0, 0.8))
                    kyc = _KYC_AFTER.get(typ, kyc)
                    tx = _TX_AFTER.get(typ, tx)
                    amount = round(rng.uniform(10, 900), 2) if typ == "payment_success" else None
                    acc.add((t, f"{session}:{n}", typ, device, "app", amount, tz, None), kyc, tx)
                yield acc.finish(uid, session, 0, life, tz, "inactivity", labeller).to_dict()
                t += 2_400_000 + rng.randrange(3_600_000)
            status[i] = (kyc, tx, life, tz, device)
