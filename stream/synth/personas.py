"""The planted personas: how many users each gets, how active they are, and which of a
user's sessions carry the persona's journeys.

* **Users** ``u000000``, ``u000001``, … each get one primary persona, assigned by exact
  quotas of :data:`~intentstream.stream.synth.config.DEFAULT_MIX` (largest remainder, at
  least one user per persona once there are enough users) and shuffled by the seed.
* **Time**: most users are active by a diurnal curve in their local time (peaks at noon
  and in the evening); night owls start most sessions between 20:00 and 23:15 local time.
  On each active day a user has a few sessions, planned at least 2 h apart.
* **What each persona plants** (a session kind, played by
  :mod:`intentstream.stream.synth.session_scripts`): explorer (long browsing, never carts
  or buys), coupon_hunter (a coupon purchase), buyer_complete (1–3 purchases),
  cart_abandoner (1–3 sessions that *end* on add_to_cart), payment_failer (1–2 failed
  payments, then maybe a purchase), kyc_finisher / kyc_rejected (a KYC flow decided
  within hours), kyc_staller (a KYC flow never decided), churner (active on at least two
  days, then silent for ``churn_silence_s`` until the end, which needs ``days >= 9``; in
  shorter windows they are active in the first 36 h only), night_owl (nothing planted;
  daytime sessions are a short glance), unsubscriber (an ``unsubscribe`` in the later
  half of its sessions). Users outside the payment personas may also buy now and then;
  explorers never do. Planted timer journeys start at least 6 h before the end of the
  window, so the last events of a dense trace carry the watermark past their due time.

>>> persona_counts(100)["explorer"], sum(persona_counts(1234).values())
(18, 1234)
"""

from __future__ import annotations

import random
from bisect import bisect
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Final, Iterable

from intentstream.stream.contract.events import zone
from intentstream.stream.synth.config import DAY_MS, DEFAULT_MIX, HOUR_MS, GeneratorConfig

if TYPE_CHECKING:
    from intentstream.stream.synth.users import SyntheticUser


@dataclass(frozen=True, slots=True)
class PersonaModel:
    active_day: float  # chance a day is active
    sessions: float  # mean sessions on an active day
    browse: float  # mean browsing events per session
    dwell_s: float  # median seconds between events
    background: tuple[tuple[str, float], ...]  # session kinds outside the planted ones
    messages: float  # chance the user receives (and reacts to) messages


PERSONA_MODELS: Final = {
    "explorer": PersonaModel(0.75, 3.0, 12, 35, (("browse", 0.9), ("coupon", 0.1)), 0.35),
    "coupon_hunter": PersonaModel(0.7, 2.6, 6, 20, (("browse", 0.35), ("coupon", 0.5), ("coupon_purchase", 0.15)), 0.5),
    "buyer_complete": PersonaModel(0.6, 2.4, 6, 20, (("browse", 0.75), ("purchase", 0.2), ("coupon", 0.05)), 0.35),
    "cart_abandoner": PersonaModel(0.6, 2.4, 6, 20, (("browse", 0.9), ("purchase", 0.05), ("coupon", 0.05)), 0.35),
    "payment_failer": PersonaModel(0.55, 2.2, 6, 20, (("browse", 0.95), ("coupon", 0.05)), 0.3),
    "kyc_finisher": PersonaModel(0.55, 2.2, 6, 20, (("browse", 0.92), ("purchase", 0.05), ("coupon", 0.03)), 0.3),
    "kyc_staller": PersonaModel(0.5, 2.0, 6, 20, (("browse", 1.0),), 0.3),
    "kyc_rejected": PersonaModel(0.5, 2.0, 6, 20, (("browse", 1.0),), 0.3),
    "churner": PersonaModel(0.85, 2.4, 6, 20, (("browse", 0.85), ("purchase", 0.1), ("coupon", 0.05)), 0.35),
    "night_owl": PersonaModel(0.8, 2.2, 7, 25, (("browse", 0.85), ("purchase", 0.1), ("coupon", 0.05)), 0.35),
    "unsubscriber": PersonaModel(0.6, 2.4, 6, 20, (("browse", 0.9), ("purchase", 0.05), ("coupon", 0.05)), 1.0),
}

# Weight of each local hour 0..23 as a session start, for day people and for night owls.
_DAY_HOURS: Final = (1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2.5, 4, 4, 3.5, 3.5, 4.5, 4, 3, 3, 3.5, 4, 4.5, 5.5, 6, 5.5, 4, 2)
_NIGHT_HOURS: Final = tuple(0.08 * w if h < 20 else 18.0 for h, w in enumerate(_DAY_HOURS))
_DAY_CUM: Final = list(accumulate(_DAY_HOURS))
_NIGHT_CUM: Final = list(accumulate(_NIGHT_HOURS))


def persona_counts(users: int, mix: Iterable[tuple[str, float]] | None = None) -> dict[str, int]:
    """Users per persona: exact quotas by largest remainder, each persona at least once
    when there are enough users."""
    mix = [(name, w) for name, w in (DEFAULT_MIX.items() if mix is None else mix) if w > 0]
    total = sum(w for _, w in mix)
    raw = [users * w / total for _, w in mix]
    counts = [int(r) for r in raw]
    order = sorted(range(len(mix)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: users - sum(counts)]:
        counts[i] += 1
    if users >= len(mix):  # take from the largest to give every persona a user
        for i in range(len(mix)):
            if counts[i] == 0:
                j = max(range(len(mix)), key=lambda k: (counts[k], -k))
                counts[j] -= 1
                counts[i] = 1
    return {name: n for (name, _), n in zip(mix, counts)}


def assign_personas(cfg: GeneratorConfig) -> list[str]:
    """The persona of each user index: the quotas of :func:`persona_counts`, shuffled by the seed."""
    personas = [name for name, n in persona_counts(cfg.users, cfg.mix).items() for _ in range(n)]
    random.Random(f"intentstream:{cfg.seed}:personas").shuffle(personas)
    return personas


@lru_cache(maxsize=4096)
def _local_midnight_ms(tz: str | None, ordinal: int) -> int:
    d = date.fromordinal(ordinal)
    return int(datetime(d.year, d.month, d.day, tzinfo=zone(tz) if tz else timezone.utc).timestamp()) * 1000


def last_session_start(cfg: GeneratorConfig, persona: str, lo: int, end: int) -> int:
    """The latest time a session may start: 3 h before the end, so every event stays inside
    the window; a churner stays silent for ``churn_silence_s`` (plus margin) at the end."""
    hi = end - 3 * HOUR_MS
    if persona == "churner":
        hi = max(min(hi, lo + 36 * HOUR_MS), end - cfg.churn_silence_s * 1000 - 3 * HOUR_MS)
    return hi


def plan_sessions(user: SyntheticUser, start_ms: int) -> list[list[Any]]:
    """The user's sessions as ``[planned start, kind, planted]``, by start; planted sessions
    carry the persona's journeys."""
    cfg, rng, model = user.cfg, user.rng, user.model
    lo, hi = user.lo, user.hi
    hours = _NIGHT_CUM if user.persona == "night_owl" else _DAY_CUM
    activity = rng.uniform(0.6, 1.0)
    first = (start_ms // DAY_MS) + date(1970, 1, 1).toordinal() - 1
    starts: list[int] = []
    for ordinal in range(first, first + cfg.days + 2):
        if rng.random() >= model.active_day * activity:
            continue
        midnight = _local_midnight_ms(user.tz, ordinal)
        n = min(6, 1 + int(rng.expovariate(1.0 / max(model.sessions - 1, 0.1))))
        for _ in range(n):
            hour = bisect(hours, rng.random() * hours[-1])
            seconds = hour * 3600 + rng.randrange(3600)
            if user.persona == "night_owl" and hour == 23:
                seconds = 23 * 3600 + rng.randrange(900)  # so the session ends before midnight
            t = midnight + seconds * 1000
            if lo <= t <= hi:
                starts.append(t)
    if user.persona == "churner" and hi - lo > 30 * HOUR_MS:  # at least two distinct days
        starts.append(lo + rng.randrange(HOUR_MS, 6 * HOUR_MS))
        starts.append(lo + rng.randrange(26 * HOUR_MS, 30 * HOUR_MS))
    if not starts:
        starts.append(rng.randrange(lo, max(lo + 1, hi)))
    starts.sort()
    spaced = starts[:1]  # session starts at least 2 h apart: sessions rarely push each other
    for t in starts[1:]:
        if t - spaced[-1] >= 2 * HOUR_MS:
            spaced.append(t)
    kinds = [name for name, _ in model.background]
    cum = list(accumulate(w for _, w in model.background))
    plan = [[t, kinds[bisect(cum, rng.random() * cum[-1])], False] for t in spaced]
    if user.recipient:
        for p in plan:
            if rng.random() < 0.12:
                p[1] = "msg_dismiss"
    _plant(user, plan)
    return plan


def _eligible(user: SyntheticUser, plan: list[list[Any]], before_ms: int, skip_first: bool = False) -> list[int]:
    """Indexes of sessions planned early enough for a timer journey to fall due inside
    the window; when there is none, a session is added at a random earlier time."""
    idx = [i for i, p in enumerate(plan) if p[0] <= before_ms and not (skip_first and i == 0)]
    if idx:
        return idx
    if before_ms > user.lo:
        t = user.rng.randrange(user.lo, before_ms)
        i = bisect([p[0] for p in plan], t)
        plan.insert(i, [t, "browse", False])
        return [i]
    return [i for i, p in enumerate(plan) if p[0] <= user.end - 6 * HOUR_MS] or [0]


def _plant(user: SyntheticUser, plan: list[list[Any]]) -> None:
    """Turn some of the planned sessions into the persona's journeys."""
    rng, persona, cfg = user.rng, user.persona, user.cfg
    sig_hi = user.end - 6 * HOUR_MS
    if persona == "buyer_complete":
        for i in rng.sample(range(len(plan)), min(len(plan), rng.randint(1, 3))):
            plan[i][1:] = "purchase", True
    elif persona == "coupon_hunter":
        plan[rng.randrange(len(plan))][1:] = "coupon_purchase", True
    elif persona == "cart_abandoner":
        eligible = _eligible(user, plan, sig_hi)
        for i in rng.sample(eligible, min(len(eligible), rng.randint(1, 3))):
            plan[i][1:] = "cart_abandon", True
    elif persona == "payment_failer":
        eligible = _eligible(user, plan, sig_hi)
        chosen = sorted(rng.sample(eligible, min(len(eligible), rng.randint(1, 2))))
        for i in chosen:
            plan[i][1:] = "payment_fail", True
        later = [i for i in range(chosen[0] + 1, len(plan)) if plan[i][1] != "payment_fail"]
        if later and rng.random() < 0.4:  # came back another time and paid
            plan[rng.choice(later)][1:] = "purchase", True
    elif persona in ("kyc_finisher", "kyc_rejected"):
        eligible = _eligible(user, plan, user.end - 12 * HOUR_MS)
        plan[rng.choice(eligible)][1:] = ("kyc_finish" if persona == "kyc_finisher" else "kyc_reject"), True
    elif persona == "kyc_staller":
        eligible = _eligible(user, plan, user.end - cfg.kyc_window_s * 1000 - 6 * HOUR_MS)
        i = rng.choice(eligible)
        plan[i][1:] = "kyc_stall", True
    elif persona == "unsubscriber":
        eligible = _eligible(user, plan, sig_hi, skip_first=len(plan) > 1)
        i = rng.choice(eligible[len(eligible) // 2 :])
        plan[i][1:] = "unsubscribe", True
