"""``intentstream generate``: a deterministic synthetic clickstream with planted ground truth.

The stream is the input of the demo, the tests and the benchmarks; the truth file lets later
stages score clustering and triggers against what was really planted.

The model
---------
* **Users** ``u000000``, ``u000001``, … each get one primary *persona*, assigned by exact
  quotas of :data:`DEFAULT_MIX` (largest remainder, at least one user per persona once there
  are enough users) and shuffled by the seed. Every user draws its own attributes and
  timeline from ``random.Random`` seeded with ``(seed, user index)``, so given its persona a
  user's events depend on nothing else (no wall clock, no ``hash()``, no set order); delivery
  accidents (late, duplicate, invalid lines) come from a second per-user generator, so
  changing their shares never changes the events themselves.
* **Time**: activity spans ``days`` days from ``start`` (UTC). Most users carry an IANA
  ``tz`` and are active by a diurnal curve in their local time (peaks at noon and in the
  evening); some carry no ``tz`` and live in UTC. Night owls start most sessions between
  20:00 and 23:15 local time in Shanghai, Berlin, New York or São Paulo.
* **Sessions**: on each active day a user has a few sessions (planned at least 2 h apart);
  events inside a session are seconds to minutes apart (log-normal, median 20–35 s, never
  more than 10 minutes), browsing stops after an hour, and a session starts at least
  :attr:`GeneratorConfig.session_gap_s` (40 min) after the previous one ended, so a 30-minute
  inactivity gap cuts exactly the planted sessions. About 8 events per user per day over
  the window (16 on an active day; explorers and coupon hunters more, churners and KYC
  personas less). Each session is a short script: an optional message
  lead (``message_open``/``message_click`` on push, sms, email or in_app with an
  ``action_id``), browsing (``page_view``, ``click``, ``search``, ``coupon_view``), then
  maybe a flow: purchase, coupon purchase, abandoned cart, failed payment, KYC, unsubscribe.
* **Personas** and what they plant: explorer (long browsing, never carts or buys),
  coupon_hunter (coupon_view/claim, purchases with ``coupon_redeem``), buyer_complete
  (add_to_cart → checkout_start → payment_submit → payment_success, always within 10 min),
  cart_abandoner (a session that *ends* on add_to_cart), payment_failer (checkout and
  payment_fail, then the session ends), kyc_finisher (kyc_start → kyc_submit → kyc_approved
  within hours), kyc_staller (kyc_start, maybe kyc_submit, never a decision), kyc_rejected,
  churner (active on at least two days, then silent for ``churn_silence_s`` until the end,
  which needs ``days >= 9``; in shorter windows they are active in the first 36 h only),
  night_owl (daytime sessions are a short glance), unsubscriber (``unsubscribe`` with
  ``props.channel``; no messages on that channel afterwards). Users outside the
  payment personas may also buy now and then; explorers never do.
* **Delivery**: lines come in event-time order, except *late* events (delayed 2–240 s, or
  for a quarter of them 7–30 min, beyond the 5-minute allowed lateness; events that drive
  journeys are never made too late), *duplicates* (the identical line again 0.5–300 s
  later) and, optionally, *invalid* lines (malformed JSON, missing fields, bad ts, …) right
  after the event they were derived from, with their own event ids.
* **Ground truth** is computed from each user's own events by the default rules, so it is
  honest by construction: ``cart_abandoned`` (no add_to_cart, checkout_start or
  payment_success within 30 min of the last add_to_cart), ``payment_stalled`` (no further
  payment step or success within 15 min of the last checkout_start/payment_submit/
  payment_fail), ``kyc_stalled`` (no kyc_approved/kyc_rejected within 24 h of the last kyc_start/kyc_submit),
  ``kyc_completed``, ``kyc_rejected``, ``purchase``, ``unsubscribe`` and ``churn`` (silent
  for 7 days after being active on 2+ UTC days in the 30 before, at the end of the window or in the middle). Timer journeys are listed only when their ``due``
  time falls inside the window (so no ``kyc_stalled`` when ``days == 1`` and no ``churn``
  when ``days <= 7``); planted abandonments and stalls end the session, so they
  hold under the stricter reading "no event at all" as well. Planted timer journeys start at
  least 6 h before the end of the window, so the last events of a dense trace carry the
  watermark past their due time.
* **Truth records** (:func:`generate_truth`, ``--truth``): one per user, by user id, with
  ``user_id``, ``persona``, ``tz`` (or null), ``device``, ``currency``, counts (``events``
  unique valid events, ``late``, ``very_late``, ``duplicates``, ``invalid``),
  ``first_active``, ``last_active``, ``active_days`` (UTC dates) and ``journeys``: objects
  with ``journey`` and ``at`` (the key event: last add_to_cart, last payment step,
  kyc_start, payment_success, …), ``due`` for timer journeys, and ``last_step``,
  ``amount``/``currency``, ``channel``, ``last_active``/``active_days`` where they apply.

>>> cfg = GeneratorConfig(users=3, days=1, seed=7)
>>> print(next(generate_lines(cfg)).decode(), end="")
{"channel":"web","device":"desktop","event_id":"e000002-00000","page":"/home","ts":"2026-01-05T06:02:39.148Z","type":"page_view","tz":"Asia/Shanghai","user_id":"u000002"}
>>> [(t["user_id"], t["persona"], [j["journey"] for j in t["journeys"]]) for t in generate_truth(cfg)]
[('u000000', 'coupon_hunter', ['purchase']), ('u000001', 'buyer_complete', ['purchase']), ('u000002', 'explorer', [])]
>>> b"".join(generate_lines(cfg)) == b"".join(generate_lines(cfg))
True
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
import time
from bisect import bisect
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from itertools import accumulate
from statistics import NormalDist
from typing import Any, BinaryIO, Final, Iterable, Iterator, Sequence

from intentstream.stream import codec
from intentstream.stream.cli import positive_int, share
from intentstream.stream.contract.events import format_ts, parse_ts, zone

__all__ = [
    "DEFAULT_MIX",
    "PERSONAS",
    "GenerationStats",
    "GeneratorConfig",
    "generate_events",
    "generate_lines",
    "generate_truth",
    "iso_ts",
    "persona_counts",
    "register",
    "run",
    "user_events",
]

#: Share of users per persona (sums to 1).
DEFAULT_MIX: Final[dict[str, float]] = {
    "explorer": 0.18,
    "coupon_hunter": 0.10,
    "buyer_complete": 0.13,
    "cart_abandoner": 0.10,
    "payment_failer": 0.07,
    "kyc_finisher": 0.08,
    "kyc_staller": 0.07,
    "kyc_rejected": 0.04,
    "churner": 0.09,
    "night_owl": 0.08,
    "unsubscriber": 0.06,
}
PERSONAS: Final = tuple(DEFAULT_MIX)

_MIN: Final = 60_000
_HOUR: Final = 3_600_000
_DAY: Final = 86_400_000

# (zone or None for "no tz, lives in UTC", weight)
_ZONES: Final = (
    ("Asia/Shanghai", 34), ("Europe/Berlin", 14), ("America/New_York", 14), ("America/Sao_Paulo", 9),
    ("Europe/London", 6), ("Asia/Singapore", 5), ("Asia/Tokyo", 4), (None, 14),
)  # fmt: skip
_NIGHT_ZONES: Final = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "America/Sao_Paulo")
_CURRENCY: Final = {"Asia/Shanghai": "CNY", "Europe/Berlin": "EUR", "Europe/London": "EUR"}
_FX: Final = {"CNY": 7.0, "EUR": 0.92, "USD": 1.0}
_DEVICES: Final = (("ios", 38), ("android", 44), ("desktop", 18))
_MSG_CHANNELS: Final = ("push", "sms", "email", "in_app")

# category -> (item prefix, base price in USD, search words)
_CATEGORIES: Final = {
    "electronics": ("ele", 180.0, ("phone", "earbuds", "laptop", "charger")),
    "fashion": ("fas", 45.0, ("jacket", "sneakers", "dress", "scarf")),
    "beauty": ("bea", 25.0, ("serum", "lipstick", "sunscreen")),
    "home": ("hom", 60.0, ("lamp", "pillow", "kettle", "rug")),
    "grocery": ("gro", 12.0, ("coffee", "tea", "snacks", "rice")),
    "sports": ("spo", 55.0, ("yoga mat", "running shoes", "dumbbell")),
    "books": ("boo", 15.0, ("novel", "cookbook", "manga")),
    "funds": ("fun", 500.0, ("index fund", "bond fund", "money market")),
    "stocks": ("sto", 800.0, ("tech stocks", "dividend", "etf")),
    "insurance": ("ins", 300.0, ("travel insurance", "health plan")),
    "travel": ("tra", 400.0, ("flight", "hotel", "train ticket")),
}
_CATEGORY_NAMES: Final = tuple(_CATEGORIES)
_PAY_FAIL_REASONS: Final = ("card_declined", "insufficient_funds", "timeout", "3ds_failed")
_KYC_REJECT_REASONS: Final = ("document_unreadable", "name_mismatch", "expired_document")

# Weight of each local hour 0..23 as a session start, for day people and for night owls.
_DAY_HOURS: Final = (1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2.5, 4, 4, 3.5, 3.5, 4.5, 4, 3, 3, 3.5, 4, 4.5, 5.5, 6, 5.5, 4, 2)
_NIGHT_HOURS: Final = tuple(0.08 * w if h < 20 else 18.0 for h, w in enumerate(_DAY_HOURS))


@dataclass(frozen=True, slots=True)
class _PersonaModel:
    active_day: float  # chance a day is active
    sessions: float  # mean sessions on an active day
    browse: float  # mean browsing events per session
    dwell_s: float  # median seconds between events
    background: tuple[tuple[str, float], ...]  # session kinds outside the planted ones
    messages: float  # chance the user receives (and reacts to) messages


_MODELS: Final = {
    "explorer": _PersonaModel(0.75, 3.0, 12, 35, (("browse", 0.9), ("coupon", 0.1)), 0.35),
    "coupon_hunter": _PersonaModel(0.7, 2.6, 6, 20, (("browse", 0.35), ("coupon", 0.5), ("coupon_purchase", 0.15)), 0.5),
    "buyer_complete": _PersonaModel(0.6, 2.4, 6, 20, (("browse", 0.75), ("purchase", 0.2), ("coupon", 0.05)), 0.35),
    "cart_abandoner": _PersonaModel(0.6, 2.4, 6, 20, (("browse", 0.9), ("purchase", 0.05), ("coupon", 0.05)), 0.35),
    "payment_failer": _PersonaModel(0.55, 2.2, 6, 20, (("browse", 0.95), ("coupon", 0.05)), 0.3),
    "kyc_finisher": _PersonaModel(0.55, 2.2, 6, 20, (("browse", 0.92), ("purchase", 0.05), ("coupon", 0.03)), 0.3),
    "kyc_staller": _PersonaModel(0.5, 2.0, 6, 20, (("browse", 1.0),), 0.3),
    "kyc_rejected": _PersonaModel(0.5, 2.0, 6, 20, (("browse", 1.0),), 0.3),
    "churner": _PersonaModel(0.85, 2.4, 6, 20, (("browse", 0.85), ("purchase", 0.1), ("coupon", 0.05)), 0.35),
    "night_owl": _PersonaModel(0.8, 2.2, 7, 25, (("browse", 0.85), ("purchase", 0.1), ("coupon", 0.05)), 0.35),
    "unsubscriber": _PersonaModel(0.6, 2.4, 6, 20, (("browse", 0.9), ("purchase", 0.05), ("coupon", 0.05)), 1.0),
}


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Same config, same output, byte for byte."""

    users: int = 1000
    days: int = 7
    seed: int = 0
    #: First instant of the window, ISO-8601 with an offset.
    start: str = "2026-01-05T00:00:00Z"
    late_share: float = 0.02
    duplicate_share: float = 0.01
    invalid_share: float = 0.0
    #: Persona shares; defaults to :data:`DEFAULT_MIX`.
    mix: tuple[tuple[str, float], ...] = tuple(DEFAULT_MIX.items())
    # The default trigger rules the ground truth follows (seconds).
    cart_window_s: int = 1800
    payment_window_s: int = 900
    kyc_window_s: int = 86_400
    churn_silence_s: int = 7 * 86_400
    #: Late events up to this delay are "within allowed lateness"; the rest are too late.
    allowed_lateness_s: int = 300
    #: Minimum silence between two sessions of one user (> inactivity gap and cart window).
    session_gap_s: int = 2400

    def __post_init__(self) -> None:
        if self.users < 1 or self.days < 1:
            raise ValueError("users and days must be at least 1")
        for name in ("late_share", "duplicate_share", "invalid_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.late_share + self.duplicate_share > 1.0:
            raise ValueError("late_share + duplicate_share must not exceed 1")
        if not isinstance(parse_ts(self.start), int):
            raise ValueError(f"start is not ISO-8601 with an offset: {self.start!r}")
        unknown = [name for name, _ in self.mix if name not in _MODELS]
        if unknown:
            raise ValueError(f"unknown persona(s) {unknown}; known: {', '.join(PERSONAS)}")
        if self.session_gap_s <= max(self.cart_window_s, self.payment_window_s):
            raise ValueError("session_gap_s must exceed the cart and payment windows")

    @property
    def start_ms(self) -> int:
        ms = parse_ts(self.start)
        assert isinstance(ms, int)
        return ms

    @property
    def end_ms(self) -> int:
        """End of the window (exclusive); no event is at or after it."""
        return self.start_ms + self.days * _DAY


@dataclass
class GenerationStats:
    """Counters of one generation, filled while its lines are consumed.

    With ``collect_truth=True`` the per-user ground truth is kept too (one small dict per
    user), so a single pass can write both the stream and the truth file.
    """

    collect_truth: bool = False
    users: int = 0
    lines: int = 0
    events: int = 0
    late: int = 0
    very_late: int = 0
    duplicates: int = 0
    invalid: int = 0
    personas: dict[str, int] = field(default_factory=dict)
    journeys: dict[str, int] = field(default_factory=dict)
    truth: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    def truth_records(self) -> list[dict[str, Any]]:
        """The collected ground truth, sorted by user id."""
        return [self.truth[i] for i in sorted(self.truth)]

    def summary(self) -> str:
        personas = ", ".join(f"{name} {n}" for name, n in self.personas.items())
        journeys = ", ".join(f"{name} {n}" for name, n in sorted(self.journeys.items()))
        return (
            f"{self.lines} lines: {self.events} events, {self.late} late ({self.very_late} beyond allowed lateness), "
            f"{self.duplicates} duplicates, {self.invalid} invalid\n"
            f"{self.users} users: {personas}\n"
            f"journeys: {journeys or 'none'}"
        )


def persona_counts(users: int, mix: Iterable[tuple[str, float]] | None = None) -> dict[str, int]:
    """Users per persona: exact quotas by largest remainder, each persona at least once
    when there are enough users.

    >>> persona_counts(100)["explorer"], sum(persona_counts(1234).values())
    (18, 1234)
    """
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


def _assign_personas(cfg: GeneratorConfig) -> list[str]:
    personas = [name for name, n in persona_counts(cfg.users, cfg.mix).items() for _ in range(n)]
    random.Random(f"intentstream:{cfg.seed}:personas").shuffle(personas)
    return personas


def user_id(index: int, users: int) -> str:
    """``u000123``: zero-padded so that sorting ids sorts users by index."""
    return f"u{index:0{max(6, len(str(users - 1)))}d}"


@lru_cache(maxsize=4096)
def _local_midnight_ms(tz: str | None, ordinal: int) -> int:
    d = date.fromordinal(ordinal)
    return int(datetime(d.year, d.month, d.day, tzinfo=zone(tz) if tz else timezone.utc).timestamp()) * 1000


def _cum(weights: Iterable[float]) -> list[float]:
    return list(accumulate(weights))


@lru_cache(maxsize=None)
def _gap_table(median_s: float) -> tuple[int, ...]:
    """1024 quantiles (ms) of the log-normal gap between events (sigma 0.9), clipped to
    0.8 s .. 10 min: one ``getrandbits(10)`` draws a gap."""
    dist = NormalDist(math.log(median_s * 1000), 0.9)
    return tuple(min(600_000, max(800, int(math.exp(dist.inv_cdf((i + 0.5) / 1024))))) for i in range(1024))


_DAY_PREFIX: dict[int, str] = {}


def iso_ts(ts_ms: int) -> str:
    """:func:`intentstream.stream.contract.events.format_ts`, about three times faster on a stream: the date part
    comes from ``format_ts`` once per day, the time of day is plain arithmetic.

    >>> iso_ts(1767607200123) == format_ts(1767607200123) == '2026-01-05T10:00:00.123Z'
    True
    """
    day, rem = divmod(ts_ms, _DAY)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = format_ts(day * _DAY)[:11]  # "2026-01-05T"
    seconds, ms = divmod(rem, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}Z"


def _pick(rng: random.Random, seq: Sequence[Any]) -> Any:
    """``rng.choice(seq)``, cheaper: one ``random()`` call."""
    return seq[int(rng.random() * len(seq))]


_ZONE_CUM: Final = _cum(w for _, w in _ZONES)
_DEVICE_CUM: Final = _cum(w for _, w in _DEVICES)
_DAY_CUM: Final = _cum(_DAY_HOURS)
_NIGHT_CUM: Final = _cum(_NIGHT_HOURS)
_BROWSE_TYPES: Final = ("page_view", "click", "search", "coupon_view")
_BROWSE_CUM: Final = _cum((0.55, 0.3, 0.12, 0.03))
_COUPON_BROWSE_CUM: Final = _cum((0.45, 0.2, 0.08, 0.27))

# Event types a very late delivery must not hit: they drive journeys and triggers.
_KEY_TYPES: Final = frozenset(
    {
        "add_to_cart", "checkout_start", "payment_submit", "payment_success", "payment_fail",
        "kyc_start", "kyc_submit", "kyc_approved", "kyc_rejected", "coupon_redeem", "unsubscribe",
    }
)  # fmt: skip


class _User:
    """One user's attributes, session plan and lazily expanded events (event-time order)."""

    __slots__ = (
        "cfg", "idx", "uid", "persona", "model", "rng", "tz", "device", "currency", "favourites",
        "channels", "msg_channels", "recipient", "plan", "buf", "t", "session_device",
        "session_channel", "gaps", "browse_mean", "lo", "hi", "end", "i", "prev_end", "until", "next_t0",
    )  # fmt: skip

    def __init__(self, cfg: GeneratorConfig, idx: int, persona: str, start_ms: int) -> None:
        self.cfg = cfg
        self.idx = idx
        self.uid = user_id(idx, cfg.users)
        self.persona = persona
        self.model = model = _MODELS[persona]
        self.rng = rng = random.Random(f"intentstream:{cfg.seed}:{idx}")
        if persona == "night_owl":
            self.tz = rng.choice(_NIGHT_ZONES)
        else:
            self.tz = _ZONES[bisect(_ZONE_CUM, rng.random() * _ZONE_CUM[-1])][0]
        self.device = _DEVICES[bisect(_DEVICE_CUM, rng.random() * _DEVICE_CUM[-1])][0]
        self.currency = _CURRENCY.get(self.tz or "", "USD")
        self.favourites = rng.sample(_CATEGORY_NAMES, rng.randint(2, 3))
        if self.device == "desktop":
            self.channels = ("web",)
        elif self.tz == "Asia/Shanghai" and rng.random() < 0.4:
            self.channels = ("mini_program", "app")
        else:
            self.channels = ("app", "web") if rng.random() < 0.8 else ("web", "app")
        self.msg_channels = rng.sample(_MSG_CHANNELS, rng.randint(2, 4))
        self.recipient = rng.random() < model.messages
        self.gaps = _gap_table(model.dwell_s)
        self.browse_mean = model.browse * rng.uniform(0.6, 1.4)
        self.end = cfg.end_ms
        self.lo = start_ms
        self.hi = self.end - 3 * _HOUR  # last session start: every event stays inside the window
        self.buf: list[tuple[int, dict[str, Any]]] = []
        self.t = 0
        self.i = 0
        self.until = self.end
        self.prev_end = -(10**15)
        self.session_device = self.device
        self.session_channel = self.channels[0]
        self.plan = self._plan(start_ms)
        self.next_t0: int | None = None
        self._advance()

    # -- planning -------------------------------------------------------------------------

    def _plan(self, start_ms: int) -> list[list[Any]]:
        cfg, rng, model = self.cfg, self.rng, self.model
        lo, hi = self.lo, self.hi
        if self.persona == "churner":  # silent for churn_silence_s (plus margin) at the end
            hi = max(min(hi, lo + 36 * _HOUR), self.end - cfg.churn_silence_s * 1000 - 3 * _HOUR)
            self.hi = hi
        hours = _NIGHT_CUM if self.persona == "night_owl" else _DAY_CUM
        activity = rng.uniform(0.6, 1.0)
        first = (start_ms // _DAY) + date(1970, 1, 1).toordinal() - 1
        starts: list[int] = []
        for ordinal in range(first, first + cfg.days + 2):
            if rng.random() >= model.active_day * activity:
                continue
            midnight = _local_midnight_ms(self.tz, ordinal)
            n = min(6, 1 + int(rng.expovariate(1.0 / max(model.sessions - 1, 0.1))))
            for _ in range(n):
                hour = bisect(hours, rng.random() * hours[-1])
                seconds = hour * 3600 + rng.randrange(3600)
                if self.persona == "night_owl" and hour == 23:
                    seconds = 23 * 3600 + rng.randrange(900)  # so the session ends before midnight
                t = midnight + seconds * 1000
                if lo <= t <= hi:
                    starts.append(t)
        if self.persona == "churner" and hi - lo > 30 * _HOUR:  # at least two distinct days
            starts.append(lo + rng.randrange(_HOUR, 6 * _HOUR))
            starts.append(lo + rng.randrange(26 * _HOUR, 30 * _HOUR))
        if not starts:
            starts.append(rng.randrange(lo, max(lo + 1, hi)))
        starts.sort()
        spaced = starts[:1]  # session starts at least 2 h apart: sessions rarely push each other
        for t in starts[1:]:
            if t - spaced[-1] >= 2 * _HOUR:
                spaced.append(t)
        kinds = [name for name, _ in model.background]
        cum = _cum(w for _, w in model.background)
        # [planned start, kind, planted]: planted sessions carry the persona's journeys
        plan = [[t, kinds[bisect(cum, rng.random() * cum[-1])], False] for t in spaced]
        if self.recipient:
            for p in plan:
                if rng.random() < 0.12:
                    p[1] = "msg_dismiss"
        self._plant(plan)
        return plan

    def _eligible(self, plan: list[list[Any]], before_ms: int, skip_first: bool = False) -> list[int]:
        """Indexes of sessions planned early enough for a timer journey to fall due inside
        the window; when there is none, a session is added at a random earlier time."""
        idx = [i for i, p in enumerate(plan) if p[0] <= before_ms and not (skip_first and i == 0)]
        if idx:
            return idx
        if before_ms > self.lo:
            t = self.rng.randrange(self.lo, before_ms)
            i = bisect([p[0] for p in plan], t)
            plan.insert(i, [t, "browse", False])
            return [i]
        return [i for i, p in enumerate(plan) if p[0] <= self.end - 6 * _HOUR] or [0]

    def _plant(self, plan: list[list[Any]]) -> None:
        rng, persona, cfg = self.rng, self.persona, self.cfg
        sig_hi = self.end - 6 * _HOUR
        if persona == "buyer_complete":
            for i in rng.sample(range(len(plan)), min(len(plan), rng.randint(1, 3))):
                plan[i][1:] = "purchase", True
        elif persona == "coupon_hunter":
            plan[rng.randrange(len(plan))][1:] = "coupon_purchase", True
        elif persona == "cart_abandoner":
            eligible = self._eligible(plan, sig_hi)
            for i in rng.sample(eligible, min(len(eligible), rng.randint(1, 3))):
                plan[i][1:] = "cart_abandon", True
        elif persona == "payment_failer":
            eligible = self._eligible(plan, sig_hi)
            chosen = sorted(rng.sample(eligible, min(len(eligible), rng.randint(1, 2))))
            for i in chosen:
                plan[i][1:] = "payment_fail", True
            later = [i for i in range(chosen[0] + 1, len(plan)) if plan[i][1] != "payment_fail"]
            if later and rng.random() < 0.4:  # came back another time and paid
                plan[rng.choice(later)][1:] = "purchase", True
        elif persona in ("kyc_finisher", "kyc_rejected"):
            eligible = self._eligible(plan, self.end - 12 * _HOUR)
            plan[rng.choice(eligible)][1:] = ("kyc_finish" if persona == "kyc_finisher" else "kyc_reject"), True
        elif persona == "kyc_staller":
            eligible = self._eligible(plan, self.end - cfg.kyc_window_s * 1000 - 6 * _HOUR)
            i = rng.choice(eligible)
            plan[i][1:] = "kyc_stall", True
        elif persona == "unsubscriber":
            eligible = self._eligible(plan, sig_hi, skip_first=len(plan) > 1)
            i = rng.choice(eligible[len(eligible) // 2 :])
            plan[i][1:] = "unsubscribe", True

    # -- event building ---------------------------------------------------------------------

    def _emit(self, typ: str, ev: dict[str, Any]) -> None:
        """Complete ``ev`` with the user's and the session's fields and add it at ``t``; the
        next event comes a log-normal gap (0.8 s to 10 min) later."""
        ev["type"] = typ
        ev["user_id"] = self.uid
        ev["device"] = self.session_device
        ev["channel"] = self.session_channel
        if self.tz:
            ev["tz"] = self.tz
        self.buf.append((self.t, ev))
        self.t += self.gaps[self.rng.getrandbits(10)]

    def _item(self) -> tuple[str, str, float]:
        rng = self.rng
        cat = _pick(rng, self.favourites) if rng.random() < 0.8 else _pick(rng, _CATEGORY_NAMES)
        prefix, base, _ = _CATEGORIES[cat]
        n = min(int(rng.paretovariate(1.1)), 5000)
        price = round(base * (0.4 + (n * 7919 % 160) / 100) * _FX[self.currency], 2)
        return cat, f"{prefix}-{n:05d}", price

    def _browse(self, n: int, coupon_heavy: bool = False) -> None:
        rng, emit = self.rng, self._emit
        cum = _COUPON_BROWSE_CUM if coupon_heavy else _BROWSE_CUM
        limit = min(self.t + _HOUR, self.until)
        for _ in range(n):
            if self.t > limit:
                break
            typ = _BROWSE_TYPES[bisect(cum, rng.random() * cum[-1])]
            if typ == "page_view":
                r = rng.random()
                if r < 0.6:
                    cat, item, _ = self._item()
                    emit("page_view", {"page": f"/item/{item}", "category": cat, "item_id": item})
                elif r < 0.85:
                    cat = _pick(rng, self.favourites)
                    emit("page_view", {"page": f"/category/{cat}", "category": cat})
                else:
                    emit("page_view", {"page": _pick(rng, ("/home", "/home", "/deals", "/account"))})
            elif typ == "click":
                cat, item, _ = self._item()
                target = _pick(rng, ("item", "item", "recommendation", "banner"))
                emit("click", {"page": f"/category/{cat}", "category": cat, "item_id": item, "props": {"target": target}})
            elif typ == "search":
                cat = _pick(rng, self.favourites)
                emit("search", {"page": "/search", "category": cat, "props": {"query": _pick(rng, _CATEGORIES[cat][2])}})
            else:
                cat = _pick(rng, self.favourites)
                coupon = f"cp-{cat[:3]}-{rng.randrange(1, 60):03d}"
                emit("coupon_view", {"page": "/coupons", "category": cat, "props": {"coupon_id": coupon}})

    def _browse_len(self) -> int:
        return 1 + int(self.rng.expovariate(1.0 / self.browse_mean))

    def _action_id(self) -> str:
        return f"act-{self.rng.getrandbits(40):010x}"

    def _open_session(self, t0: int, lead: bool = True) -> None:
        rng = self.rng
        self.t = t0
        self.until = t0 + _HOUR  # browsing stops after an hour
        self.session_device = self.device if rng.random() < 0.9 else rng.choice(("ios", "android", "desktop"))
        if self.session_device == "desktop":
            self.session_channel = "web"
        else:
            self.session_channel = self.channels[0] if rng.random() < 0.8 else self.channels[-1]
        if lead and self.recipient and self.msg_channels and rng.random() < 0.3:
            ch = rng.choice(self.msg_channels)
            action = self._action_id()
            self._emit("message_open", {"props": {"channel": ch, "action_id": action}})
            if rng.random() < 0.6:
                self._emit("message_click", {"props": {"channel": ch, "action_id": action}})
        if self.session_channel == "app":
            self._emit("app_open", {"page": "/home"})
            if rng.random() < 0.08:
                self._emit("login", {"page": "/login"})
        else:
            self._emit("page_view", {"page": "/home"})

    def _cart(self, n: int) -> float:
        total = 0.0
        for _ in range(n):
            cat, item, price = self._item()
            self._emit("page_view", {"page": f"/item/{item}", "category": cat, "item_id": item})
            fields = {"page": f"/item/{item}", "category": cat, "item_id": item, "amount": price, "currency": self.currency}
            self._emit("add_to_cart", fields)
            total += price
        return round(total, 2)

    def _step(self) -> None:
        """Payment steps are quick: 4 to 60 s after the previous event."""
        self.t = self.buf[-1][0] + self.rng.randrange(4_000, 60_000)

    def _checkout(self, total: float, succeed: bool, coupon: str | None = None) -> None:
        rng, emit, cur, step = self.rng, self._emit, self.currency, self._step
        order = f"ord-{rng.getrandbits(40):010x}"
        if coupon:
            emit("coupon_redeem", {"page": "/cart", "props": {"coupon_id": coupon}})
            total = round(total * 0.85, 2)
            step()
        emit("checkout_start", {"page": "/checkout", "amount": total, "currency": cur, "props": {"order_id": order}})
        step()
        fails = rng.randint(1, 2) if not succeed else (1 if rng.random() < 0.15 else 0)
        for _ in range(fails):
            pay = {"page": "/checkout/pay", "amount": total, "currency": cur, "props": {"order_id": order}}
            emit("payment_submit", pay)
            step()
            reason = rng.choice(_PAY_FAIL_REASONS)
            emit("payment_fail", {"page": "/checkout/pay", "amount": total, "currency": cur, "props": {"order_id": order, "reason": reason}})
            step()
        if succeed:  # checkout_start to payment_success stays under 10 min
            emit("payment_submit", {"page": "/checkout/pay", "amount": total, "currency": cur, "props": {"order_id": order}})
            step()
            emit("payment_success", {"page": "/checkout/done", "amount": total, "currency": cur, "props": {"order_id": order}})

    def _kyc(self, t_stop_decision: int, outcome: str | None) -> tuple[str, int] | None:
        """KYC steps; returns a deferred decision (type, time) or None."""
        rng, emit = self.rng, self._emit
        emit("page_view", {"page": "/kyc"})
        emit("kyc_start", {"page": "/kyc/start", "props": {"step": "identity"}})
        for _ in range(rng.randint(1, 3)):
            emit("page_view", {"page": rng.choice(("/kyc/document", "/kyc/selfie", "/kyc/address"))})
        if outcome is None and rng.random() < 0.5:  # stalled before submitting
            return None
        emit("kyc_submit", {"page": "/kyc/submit", "props": {"step": "review"}})
        if outcome is None:
            return None
        submitted = self.buf[-1][0]
        deferred = submitted + rng.randrange(45 * _MIN, 6 * _HOUR)
        if rng.random() < 0.45 or deferred > t_stop_decision:  # instant decision
            self.t = submitted + rng.randrange(_MIN, 8 * _MIN)
            self._decision(outcome)
            return None
        return outcome, deferred

    def _decision(self, outcome: str) -> None:
        if outcome == "kyc_approved":
            self._emit("kyc_approved", {"page": "/kyc/result", "props": {"step": "approved"}})
        else:
            reason = self.rng.choice(_KYC_REJECT_REASONS)
            self._emit("kyc_rejected", {"page": "/kyc/result", "props": {"step": "rejected", "reason": reason}})

    def _session(self, kind: str, t0: int) -> tuple[str, int] | None:
        """Expand one session into ``buf``; returns a deferred KYC decision, if any."""
        rng = self.rng
        if kind == "msg_dismiss":  # a notification swiped away: a one-event session
            self.t = t0
            ch = rng.choice(self.msg_channels) if self.msg_channels else None
            if ch:
                self._emit("message_dismiss", {"props": {"channel": ch, "action_id": self._action_id()}})
                return None
            kind = "browse"
        if kind.startswith("decision:"):  # the user comes back to the KYC result
            self._open_session(t0, lead=False)
            self._decision(kind.partition(":")[2])
            self._browse(rng.randint(1, 4))
            return None
        self._open_session(t0)
        if self.persona == "night_owl":  # nights run to local midnight; days are a quick glance
            local = datetime.fromtimestamp(t0 // 1000, zone(self.tz))
            if local.hour < 20:
                self._browse(rng.randint(1, 3))
                return None
            self.until = t0 + ((24 - local.hour) * 3600 - local.minute * 60 - local.second) * 1000 - 10 * _MIN
        if kind == "browse":
            self._browse(self._browse_len())
        elif kind == "coupon":
            self._emit("page_view", {"page": "/coupons"})
            self._browse(self._browse_len(), coupon_heavy=True)
            self._claims()
        elif kind in ("purchase", "coupon_purchase"):
            self._browse(rng.randint(0, 4), coupon_heavy=kind == "coupon_purchase")
            coupon = self._claims() if kind == "coupon_purchase" else None
            total = self._cart(rng.randint(1, 3))
            self._emit("page_view", {"page": "/cart"})
            self._checkout(total, succeed=True, coupon=coupon)
            if rng.random() < 0.5:
                self._browse(rng.randint(1, 3))
        elif kind == "cart_abandon":  # the session ends on add_to_cart
            self._browse(rng.randint(1, 5))
            self._cart(rng.randint(1, 3))
        elif kind == "payment_fail":  # the session ends on payment_fail
            self._browse(rng.randint(0, 3))
            total = self._cart(rng.randint(1, 2))
            self._emit("page_view", {"page": "/cart"})
            self._checkout(total, succeed=False)
        elif kind in ("kyc_finish", "kyc_reject", "kyc_stall"):
            self._browse(rng.randint(0, 2))
            outcome = {"kyc_finish": "kyc_approved", "kyc_reject": "kyc_rejected"}.get(kind)
            deferred = self._kyc(self.hi, outcome)
            if rng.random() < 0.5:
                self._browse(rng.randint(1, 3))
            return deferred
        elif kind == "unsubscribe":
            ch = rng.choice(self.msg_channels)
            self._emit("message_open", {"props": {"channel": ch, "action_id": self._action_id()}})
            self._emit("page_view", {"page": "/account/notifications"})
            self._emit("unsubscribe", {"page": "/account/notifications", "props": {"channel": ch}})
            self.msg_channels = [c for c in self.msg_channels if c != ch]
            if rng.random() < 0.5:
                self._browse(rng.randint(1, 3))
        return None

    def _claims(self) -> str | None:
        rng, coupon = self.rng, None
        for _ in range(rng.randint(1, 3)):
            cat = rng.choice(self.favourites)
            coupon = f"cp-{cat[:3]}-{rng.randrange(1, 60):03d}"
            self._emit("coupon_view", {"page": "/coupons", "category": cat, "props": {"coupon_id": coupon}})
            if rng.random() < 0.7:
                self._emit("coupon_claim", {"page": "/coupons", "category": cat, "props": {"coupon_id": coupon}})
        return coupon

    def _advance(self) -> None:
        """Find the next session: it starts as planned, or ``session_gap_s`` after the previous
        one ends. Sessions pushed past the last start are dropped, except planted ones while
        they still fit in the window."""
        plan, gap = self.plan, self.cfg.session_gap_s * 1000
        while self.i < len(plan):
            planned, _, planted = plan[self.i]
            t0 = max(planned, self.prev_end + gap)
            if t0 <= self.hi or (planted and t0 <= self.end - 2 * _HOUR):
                self.next_t0 = t0
                return
            self.i += 1
        self.next_t0 = None

    def next_start(self) -> int | None:
        """Start of the next session (its first event time), or None when the plan is done."""
        return self.next_t0

    def next_session(self) -> list[tuple[int, dict[str, Any]]] | None:
        """Expand the next session: its (ts_ms, event) pairs, or None when the plan is done."""
        t0 = self.next_t0
        if t0 is None:
            return None
        kind = self.plan[self.i][1]
        self.i += 1
        self.buf = []
        deferred = self._session(kind, t0)
        if deferred is not None:  # the next session is the user's return to the KYC result
            self.plan.insert(self.i, [deferred[1], "decision:" + deferred[0], True])
        if self.buf[-1][0] >= self.end:  # never past the window, however long the session ran
            self.buf = [item for item in self.buf if item[0] < self.end]
        self.prev_end = self.buf[-1][0]
        self._advance()
        session, self.buf = self.buf, []  # hand the events over; keep nothing between sessions
        return session


class _Journeys:
    """Reads one user's events in event-time order and lists the journeys they contain."""

    __slots__ = ("cfg", "out", "cart", "txn", "txn_step", "kyc", "kyc_step", "first", "last", "days")

    def __init__(self, cfg: GeneratorConfig) -> None:
        self.cfg = cfg
        self.out: list[tuple[int, dict[str, Any]]] = []
        self.cart: int | None = None
        self.txn: int | None = None
        self.txn_step = ""
        self.kyc: int | None = None
        self.kyc_step = ""
        self.first: int | None = None
        self.last = 0
        self.days: set[int] = set()

    def _timer(self, name: str, at: int, window_s: int, **extra: Any) -> None:
        due = at + window_s * 1000
        if due <= self.cfg.end_ms:
            self.out.append((at, {"journey": name, "at": format_ts(at), "due": format_ts(due), **extra}))

    def _churn(self) -> None:
        """Silence after the last event: churn if active on 2+ UTC days in the 30 before."""
        last_day = self.last // _DAY
        recent = sum(1 for d in self.days if last_day - 30 < d <= last_day)
        if recent >= 2:
            self._timer("churn", self.last, self.cfg.churn_silence_s, last_active=format_ts(self.last), active_days=recent)

    def feed(self, ts: int, ev: dict[str, Any]) -> None:
        cfg, typ = self.cfg, ev["type"]
        if self.first is None:
            self.first = ts
        elif ts > self.last + cfg.churn_silence_s * 1000:
            self._churn()  # a silence in the middle counts too
        self.last = ts
        self.days.add(ts // _DAY)
        if self.cart is not None and ts > self.cart + cfg.cart_window_s * 1000:
            self._timer("cart_abandoned", self.cart, cfg.cart_window_s)
            self.cart = None
        if self.txn is not None and ts > self.txn + cfg.payment_window_s * 1000:
            self._timer("payment_stalled", self.txn, cfg.payment_window_s, last_step=self.txn_step)
            self.txn = None
        if self.kyc is not None and ts > self.kyc + cfg.kyc_window_s * 1000:
            self._timer("kyc_stalled", self.kyc, cfg.kyc_window_s, last_step=self.kyc_step)
            self.kyc = None
        if typ == "add_to_cart":
            self.cart = ts
        elif typ in ("checkout_start", "payment_submit", "payment_fail"):
            if typ == "checkout_start":
                self.cart = None
            self.txn, self.txn_step = ts, typ
        elif typ == "payment_success":
            self.cart = self.txn = None
            extra = {"amount": ev.get("amount"), "currency": ev.get("currency")}
            self.out.append((ts, {"journey": "purchase", "at": format_ts(ts), **extra}))
        elif typ in ("kyc_start", "kyc_submit"):
            self.kyc, self.kyc_step = ts, typ  # the deadline runs from the last step
        elif typ in ("kyc_approved", "kyc_rejected"):
            self.kyc = None
            name = "kyc_completed" if typ == "kyc_approved" else "kyc_rejected"
            self.out.append((ts, {"journey": name, "at": format_ts(ts)}))
        elif typ == "unsubscribe":
            self.out.append((ts, {"journey": "unsubscribe", "at": format_ts(ts), "channel": ev["props"]["channel"]}))

    def finish(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        if self.cart is not None:
            self._timer("cart_abandoned", self.cart, cfg.cart_window_s)
        if self.txn is not None:
            self._timer("payment_stalled", self.txn, cfg.payment_window_s, last_step=self.txn_step)
        if self.kyc is not None:
            self._timer("kyc_stalled", self.kyc, cfg.kyc_window_s, last_step=self.kyc_step)
        if self.first is not None:
            self._churn()
        self.out.sort(key=lambda item: item[0])
        return [j for _, j in self.out]


def _invalid_line(rng: random.Random, ev: dict[str, Any]) -> bytes:
    """A broken copy of ``ev`` (own event id) that the event contract must reject."""
    bad = dict(ev)
    bad["event_id"] = ev["event_id"] + "-x"
    kind = rng.randrange(8)
    if kind == 0:  # truncated JSON
        line = codec.dumps_line(bad)
        return line[: rng.randrange(1, len(line) - 2)] + b"\n"
    if kind == 1:
        del bad[rng.choice(("user_id", "ts", "type", "event_id"))]
    elif kind == 2:
        bad["ts"] = rng.choice(("yesterday", "2026-13-45T25:61:00Z", ev["ts"].rstrip("Z")))
    elif kind == 3:
        bad["amount"] = -round(rng.uniform(1, 100), 2)
    elif kind == 4:
        bad["channel"] = "tv"
    elif kind == 5:
        bad["tz"] = "Mars/Olympus_Mons"
    elif kind == 6:
        bad["user_id"] = rng.randrange(1, 10**6)
    else:
        bad["ts"] = 1.5e12  # epoch must be integer milliseconds
    return codec.dumps_line(bad)


# (ts_ms, user index, seq, event, late delay ms, duplicate delay ms or -1, invalid line or None)
_Record = tuple[int, int, int, dict[str, Any], int, int, "bytes | None"]


class _Feed:
    """A user's delivery side: ids and ts, delivery accidents, journeys and counters."""

    __slots__ = ("cfg", "user", "drng", "journeys", "prefix", "n", "late", "very_late", "dups", "bad")

    def __init__(self, cfg: GeneratorConfig, user: _User) -> None:
        self.cfg = cfg
        self.user = user
        self.drng = random.Random(f"intentstream:{cfg.seed}:{user.idx}:delivery")
        self.journeys = _Journeys(cfg)
        self.prefix = "e" + user.uid[1:] + "-"
        self.n = self.late = self.very_late = self.dups = self.bad = 0

    def records(self, session: list[tuple[int, dict[str, Any]]]) -> list[_Record]:
        """Records of one session: (ts_ms, user index, seq, event, late delay ms,
        duplicate delay ms or -1, invalid line or None)."""
        cfg, drng, feed, prefix, idx = self.cfg, self.drng, self.journeys.feed, self.prefix, self.user.idx
        late_p, dup_p, bad_p = cfg.late_share, cfg.late_share + cfg.duplicate_share, cfg.invalid_share
        allowed = cfg.allowed_lateness_s * 1000
        n = self.n
        out: list[_Record] = []
        for ts, ev in session:
            ev["event_id"] = f"{prefix}{n:05d}"
            ev["ts"] = iso_ts(ts)
            feed(ts, ev)
            late_ms, dup_ms, line = 0, -1, None
            r = drng.random()
            if r < late_p:
                if drng.random() < 0.25 and ev["type"] not in _KEY_TYPES:
                    late_ms = drng.randrange(allowed + 120_000, max(allowed + 120_001, 1_800_000))
                    self.very_late += 1
                else:
                    late_ms = drng.randrange(2_000, max(2_001, allowed - 60_000))
                self.late += 1
            elif r < dup_p:
                dup_ms = drng.randrange(500, 300_000)
                self.dups += 1
            if bad_p and drng.random() < bad_p:
                line = _invalid_line(drng, ev)
                self.bad += 1
            out.append((ts, idx, n, ev, late_ms, dup_ms, line))
            n += 1
        self.n = n
        return out

    def finish(self, stats: GenerationStats) -> None:
        stats.events += self.n
        stats.late += self.late
        stats.very_late += self.very_late
        stats.duplicates += self.dups
        stats.invalid += self.bad
        found = self.journeys.finish()
        for j in found:
            stats.journeys[j["journey"]] = stats.journeys.get(j["journey"], 0) + 1
        if stats.collect_truth:
            stats.truth[self.user.idx] = self.truth(found)

    def truth(self, found: list[dict[str, Any]]) -> dict[str, Any]:
        user, journeys = self.user, self.journeys
        active = journeys.first is not None
        return {
            "user_id": user.uid,
            "persona": user.persona,
            "tz": user.tz,
            "device": user.device,
            "currency": user.currency,
            "events": self.n,
            "late": self.late,
            "very_late": self.very_late,
            "duplicates": self.dups,
            "invalid": self.bad,
            "first_active": format_ts(journeys.first) if active else None,
            "last_active": format_ts(journeys.last) if active else None,
            "active_days": len(journeys.days),
            "journeys": found,
        }


def _users(cfg: GeneratorConfig) -> Iterator[_User]:
    start_ms = cfg.start_ms
    for idx, persona in enumerate(_assign_personas(cfg)):
        yield _User(cfg, idx, persona, start_ms)


def _deliver(cfg: GeneratorConfig, stats: GenerationStats | None) -> Iterator[dict[str, Any] | bytes]:
    """Events (dicts) and invalid lines (bytes) in delivery order.

    Sessions are expanded in order of their start; an event is released once no session
    still to be expanded can start before it, so only the events of sessions in progress
    are held (plus the late and duplicate deliveries in flight).
    """
    stats = GenerationStats() if stats is None else stats
    stats.users = cfg.users
    stats.personas = persona_counts(cfg.users, cfg.mix)
    feeds: list[_Feed | None] = [_Feed(cfg, user) for user in _users(cfg)]
    starts: list[tuple[int, int]] = []  # (next session start, user index)
    for idx, f in enumerate(feeds):
        assert f is not None
        t = f.user.next_start()
        if t is None:
            f.finish(stats)
        else:
            starts.append((t, idx))
    heapq.heapify(starts)
    ready: list[_Record] = []  # events of expanded sessions, by (ts, user, seq)
    pending: list[tuple[int, int, dict[str, Any]]] = []  # late and duplicate deliveries
    push, pop, order = heapq.heappush, heapq.heappop, 0
    while True:
        horizon = starts[0][0] if starts else None
        while ready and (horizon is None or ready[0][0] < horizon):
            ts, _, _, ev, late_ms, dup_ms, line = pop(ready)
            while pending and pending[0][0] <= ts:
                yield pop(pending)[2]
            if late_ms:
                push(pending, (ts + late_ms, order, ev))
            else:
                yield ev
                if dup_ms >= 0:  # the redelivery: an equal copy, so it serializes to the same bytes
                    push(pending, (ts + dup_ms, order, dict(ev)))
            order += 1
            if line is not None:
                yield line
        if horizon is None:
            break
        _, idx = pop(starts)
        feed = feeds[idx]
        assert feed is not None
        session = feed.user.next_session()
        assert session is not None
        for rec in feed.records(session):
            push(ready, rec)
        nxt = feed.user.next_start()
        if nxt is None:
            feed.finish(stats)
            feeds[idx] = None  # done: let it go
        else:
            push(starts, (nxt, idx))
    while pending:
        yield pop(pending)[2]


def generate_lines(cfg: GeneratorConfig, stats: GenerationStats | None = None) -> Iterator[bytes]:
    """JSONL lines (with newline) in delivery order, invalid lines included.

    ``stats`` is filled as the lines are consumed and is complete once they are exhausted.
    """
    dumps_line = codec.dumps_line
    for item in _deliver(cfg, stats):
        yield item if type(item) is bytes else dumps_line(item)
    if stats is not None:
        stats.lines = stats.events + stats.duplicates + stats.invalid


def generate_events(cfg: GeneratorConfig, stats: GenerationStats | None = None) -> Iterator[dict[str, Any]]:
    """Valid events as contract dicts (``ts`` ISO-8601 UTC) in delivery order, duplicates
    included (as equal copies); invalid lines are left out (use :func:`generate_lines`)."""
    for item in _deliver(cfg, stats):
        if type(item) is not bytes:
            yield item
    if stats is not None:
        stats.lines = stats.events + stats.duplicates + stats.invalid


def _user_feed(cfg: GeneratorConfig, user: _User) -> tuple[_Feed, list[dict[str, Any]]]:
    feed, events = _Feed(cfg, user), []
    while (session := user.next_session()) is not None:
        events.extend(rec[3] for rec in feed.records(session))
    return feed, events


def generate_truth(cfg: GeneratorConfig) -> Iterator[dict[str, Any]]:
    """Ground truth, one dict per user sorted by user id: persona, tz, counts and journeys.

    Computed from each user's own events, exactly as a full generation collects it.
    """
    for user in _users(cfg):
        feed, _ = _user_feed(cfg, user)
        yield feed.truth(feed.journeys.finish())


def user_events(cfg: GeneratorConfig, index: int) -> list[dict[str, Any]]:
    """One user's events in event-time order (no late, duplicate or invalid deliveries)."""
    user = _User(cfg, index, _assign_personas(cfg)[index], cfg.start_ms)
    return _user_feed(cfg, user)[1]


# -- CLI ------------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="write a deterministic synthetic clickstream (JSONL) with planted personas and journeys",
        description="Write a deterministic synthetic clickstream with planted personas and journeys; "
        "the same arguments always give byte-identical output.",
    )
    p.add_argument("--users", type=positive_int, required=True, help="number of users")
    p.add_argument("--days", type=positive_int, required=True, help="length of the window in days")
    p.add_argument("--seed", type=int, required=True, help="random seed")
    p.add_argument("--out", required=True, metavar="FILE", help="JSONL output, or - for standard output")
    p.add_argument("--start", default=GeneratorConfig.start, help="start of the window, ISO-8601 (default %(default)s)")
    p.add_argument("--late-share", type=share, default=0.02, help="share of events delivered late (default %(default)s)")
    p.add_argument("--duplicate-share", type=share, default=0.01, help="share of events delivered twice (default %(default)s)")
    p.add_argument("--invalid-share", type=share, default=0.0, help="invalid lines per event (default %(default)s)")
    p.add_argument("--truth", metavar="FILE", help="write the ground truth here (JSONL, one user a line)")
    p.set_defaults(func=run)


def _write(fh: BinaryIO, lines: Iterator[bytes]) -> None:
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= 4096:
            fh.write(b"".join(batch))
            batch.clear()
    fh.write(b"".join(batch))


def run(args: argparse.Namespace) -> int:
    try:
        cfg = GeneratorConfig(
            users=args.users,
            days=args.days,
            seed=args.seed,
            start=args.start,
            late_share=args.late_share,
            duplicate_share=args.duplicate_share,
            invalid_share=args.invalid_share,
        )
    except ValueError as exc:
        print(f"intentstream generate: {exc}", file=sys.stderr)
        return 2
    stats = GenerationStats(collect_truth=bool(args.truth))
    started = time.perf_counter()
    if args.out == "-":
        _write(sys.stdout.buffer, generate_lines(cfg, stats))
        sys.stdout.buffer.flush()
    else:
        with open(args.out, "wb") as fh:
            _write(fh, generate_lines(cfg, stats))
    if args.truth:
        with open(args.truth, "wb") as fh:
            _write(fh, (codec.dumps_line(record) for record in stats.truth_records()))
    elapsed = time.perf_counter() - started
    print(stats.summary(), file=sys.stderr)
    print(f"{elapsed:.2f}s, {stats.lines / max(elapsed, 1e-9):,.0f} lines/s", file=sys.stderr)
    return 0
