"""What happens inside one session: the events of each session kind, as a short script.

A session is an optional message lead (``message_open``/``message_click`` on push, sms,
email or in_app with an ``action_id``), ``app_open`` or the home page, browsing
(``page_view``, ``click``, ``search``, ``coupon_view``), then maybe a flow: purchase,
coupon purchase, abandoned cart (the session *ends* on add_to_cart), failed payment (it
ends on payment_fail), KYC (kyc_start → maybe kyc_submit → maybe a decision, now or on a
later return), unsubscribe (``props.channel``; no messages on that channel afterwards).
Checkout to payment_success always stays under 10 minutes.

Events inside a session are seconds to minutes apart (log-normal, median 20–35 s by
persona, never more than 10 minutes) and browsing stops after an hour. Prices come from
a small catalogue of categories, in the user's currency.

Every function here plays on one :class:`~intentstream.stream.synth.users.SyntheticUser`:
it draws from the user's own random generator and appends ``(ts_ms, event)`` pairs to
its ``buf``.
"""

from __future__ import annotations

import math
from bisect import bisect
from datetime import datetime
from functools import lru_cache
from itertools import accumulate
from random import Random
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Final, Sequence

from intentstream.stream.contract.events import zone
from intentstream.stream.synth.config import HOUR_MS, MINUTE_MS

if TYPE_CHECKING:
    from intentstream.stream.synth.users import SyntheticUser

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
CATEGORY_NAMES: Final = tuple(_CATEGORIES)
_FX: Final = {"CNY": 7.0, "EUR": 0.92, "USD": 1.0}
_PAY_FAIL_REASONS: Final = ("card_declined", "insufficient_funds", "timeout", "3ds_failed")
_KYC_REJECT_REASONS: Final = ("document_unreadable", "name_mismatch", "expired_document")
_BROWSE_TYPES: Final = ("page_view", "click", "search", "coupon_view")
_BROWSE_CUM: Final = list(accumulate((0.55, 0.3, 0.12, 0.03)))
_COUPON_BROWSE_CUM: Final = list(accumulate((0.45, 0.2, 0.08, 0.27)))


@lru_cache(maxsize=None)
def gap_table(median_s: float) -> tuple[int, ...]:
    """1024 quantiles (ms) of the log-normal gap between events (sigma 0.9), clipped to
    0.8 s .. 10 min: one ``getrandbits(10)`` draws a gap."""
    dist = NormalDist(math.log(median_s * 1000), 0.9)
    return tuple(min(600_000, max(800, int(math.exp(dist.inv_cdf((i + 0.5) / 1024))))) for i in range(1024))


def _pick(rng: Random, seq: Sequence[Any]) -> Any:
    """``rng.choice(seq)``, cheaper: one ``random()`` call."""
    return seq[int(rng.random() * len(seq))]


def play_session(user: SyntheticUser, kind: str, t0: int) -> tuple[str, int] | None:
    """Play one session of ``kind`` from ``t0`` into ``user.buf``; returns a deferred KYC
    decision (event type, time) for a later return, if any."""
    rng = user.rng
    if kind == "msg_dismiss":  # a notification swiped away: a one-event session
        user.t = t0
        ch = rng.choice(user.msg_channels) if user.msg_channels else None
        if ch:
            _emit(user, "message_dismiss", {"props": {"channel": ch, "action_id": _action_id(user)}})
            return None
        kind = "browse"
    if kind.startswith("decision:"):  # the user comes back to the KYC result
        _open_session(user, t0, lead=False)
        _decision(user, kind.partition(":")[2])
        _browse(user, rng.randint(1, 4))
        return None
    _open_session(user, t0)
    if user.persona == "night_owl":  # nights run to local midnight; days are a quick glance
        local = datetime.fromtimestamp(t0 // 1000, zone(user.tz))
        if local.hour < 20:
            _browse(user, rng.randint(1, 3))
            return None
        user.until = t0 + ((24 - local.hour) * 3600 - local.minute * 60 - local.second) * 1000 - 10 * MINUTE_MS
    if kind == "browse":
        _browse(user, _browse_len(user))
    elif kind == "coupon":
        _emit(user, "page_view", {"page": "/coupons"})
        _browse(user, _browse_len(user), coupon_heavy=True)
        _claims(user)
    elif kind in ("purchase", "coupon_purchase"):
        _browse(user, rng.randint(0, 4), coupon_heavy=kind == "coupon_purchase")
        coupon = _claims(user) if kind == "coupon_purchase" else None
        total = _cart(user, rng.randint(1, 3))
        _emit(user, "page_view", {"page": "/cart"})
        _checkout(user, total, succeed=True, coupon=coupon)
        if rng.random() < 0.5:
            _browse(user, rng.randint(1, 3))
    elif kind == "cart_abandon":  # the session ends on add_to_cart
        _browse(user, rng.randint(1, 5))
        _cart(user, rng.randint(1, 3))
    elif kind == "payment_fail":  # the session ends on payment_fail
        _browse(user, rng.randint(0, 3))
        total = _cart(user, rng.randint(1, 2))
        _emit(user, "page_view", {"page": "/cart"})
        _checkout(user, total, succeed=False)
    elif kind in ("kyc_finish", "kyc_reject", "kyc_stall"):
        _browse(user, rng.randint(0, 2))
        outcome = {"kyc_finish": "kyc_approved", "kyc_reject": "kyc_rejected"}.get(kind)
        deferred = _kyc(user, user.hi, outcome)
        if rng.random() < 0.5:
            _browse(user, rng.randint(1, 3))
        return deferred
    elif kind == "unsubscribe":
        ch = rng.choice(user.msg_channels)
        _emit(user, "message_open", {"props": {"channel": ch, "action_id": _action_id(user)}})
        _emit(user, "page_view", {"page": "/account/notifications"})
        _emit(user, "unsubscribe", {"page": "/account/notifications", "props": {"channel": ch}})
        user.msg_channels = [c for c in user.msg_channels if c != ch]
        if rng.random() < 0.5:
            _browse(user, rng.randint(1, 3))
    return None


def _emit(user: SyntheticUser, typ: str, ev: dict[str, Any]) -> None:
    """Complete ``ev`` with the user's and the session's fields and add it at ``user.t``;
    the next event comes a log-normal gap (0.8 s to 10 min) later."""
    ev["type"] = typ
    ev["user_id"] = user.uid
    ev["device"] = user.session_device
    ev["channel"] = user.session_channel
    if user.tz:
        ev["tz"] = user.tz
    user.buf.append((user.t, ev))
    user.t += user.gaps[user.rng.getrandbits(10)]


def _item(user: SyntheticUser) -> tuple[str, str, float]:
    rng = user.rng
    cat = _pick(rng, user.favourites) if rng.random() < 0.8 else _pick(rng, CATEGORY_NAMES)
    prefix, base, _ = _CATEGORIES[cat]
    n = min(int(rng.paretovariate(1.1)), 5000)
    price = round(base * (0.4 + (n * 7919 % 160) / 100) * _FX[user.currency], 2)
    return cat, f"{prefix}-{n:05d}", price


def _browse(user: SyntheticUser, n: int, coupon_heavy: bool = False) -> None:
    rng, emit = user.rng, _emit
    cum = _COUPON_BROWSE_CUM if coupon_heavy else _BROWSE_CUM
    limit = min(user.t + HOUR_MS, user.until)
    for _ in range(n):
        if user.t > limit:
            break
        typ = _BROWSE_TYPES[bisect(cum, rng.random() * cum[-1])]
        if typ == "page_view":
            r = rng.random()
            if r < 0.6:
                cat, item, _ = _item(user)
                emit(user, "page_view", {"page": f"/item/{item}", "category": cat, "item_id": item})
            elif r < 0.85:
                cat = _pick(rng, user.favourites)
                emit(user, "page_view", {"page": f"/category/{cat}", "category": cat})
            else:
                emit(user, "page_view", {"page": _pick(rng, ("/home", "/home", "/deals", "/account"))})
        elif typ == "click":
            cat, item, _ = _item(user)
            target = _pick(rng, ("item", "item", "recommendation", "banner"))
            emit(user, "click", {"page": f"/category/{cat}", "category": cat, "item_id": item, "props": {"target": target}})
        elif typ == "search":
            cat = _pick(rng, user.favourites)
            emit(user, "search", {"page": "/search", "category": cat, "props": {"query": _pick(rng, _CATEGORIES[cat][2])}})
        else:
            cat = _pick(rng, user.favourites)
            coupon = f"cp-{cat[:3]}-{rng.randrange(1, 60):03d}"
            emit(user, "coupon_view", {"page": "/coupons", "category": cat, "props": {"coupon_id": coupon}})


def _browse_len(user: SyntheticUser) -> int:
    return 1 + int(user.rng.expovariate(1.0 / user.browse_mean))


def _action_id(user: SyntheticUser) -> str:
    return f"act-{user.rng.getrandbits(40):010x}"


def _open_session(user: SyntheticUser, t0: int, lead: bool = True) -> None:
    rng = user.rng
    user.t = t0
    user.until = t0 + HOUR_MS  # browsing stops after an hour
    user.session_device = user.device if rng.random() < 0.9 else rng.choice(("ios", "android", "desktop"))
    if user.session_device == "desktop":
        user.session_channel = "web"
    else:
        user.session_channel = user.channels[0] if rng.random() < 0.8 else user.channels[-1]
    if lead and user.recipient and user.msg_channels and rng.random() < 0.3:
        ch = rng.choice(user.msg_channels)
        action = _action_id(user)
        _emit(user, "message_open", {"props": {"channel": ch, "action_id": action}})
        if rng.random() < 0.6:
            _emit(user, "message_click", {"props": {"channel": ch, "action_id": action}})
    if user.session_channel == "app":
        _emit(user, "app_open", {"page": "/home"})
        if rng.random() < 0.08:
            _emit(user, "login", {"page": "/login"})
    else:
        _emit(user, "page_view", {"page": "/home"})


def _cart(user: SyntheticUser, n: int) -> float:
    total = 0.0
    for _ in range(n):
        cat, item, price = _item(user)
        _emit(user, "page_view", {"page": f"/item/{item}", "category": cat, "item_id": item})
        fields = {"page": f"/item/{item}", "category": cat, "item_id": item, "amount": price, "currency": user.currency}
        _emit(user, "add_to_cart", fields)
        total += price
    return round(total, 2)


def _step(user: SyntheticUser) -> None:
    """Payment steps are quick: 4 to 60 s after the previous event."""
    user.t = user.buf[-1][0] + user.rng.randrange(4_000, 60_000)


def _checkout(user: SyntheticUser, total: float, succeed: bool, coupon: str | None = None) -> None:
    rng, emit, cur = user.rng, _emit, user.currency
    order = f"ord-{rng.getrandbits(40):010x}"
    if coupon:
        emit(user, "coupon_redeem", {"page": "/cart", "props": {"coupon_id": coupon}})
        total = round(total * 0.85, 2)
        _step(user)
    emit(user, "checkout_start", {"page": "/checkout", "amount": total, "currency": cur, "props": {"order_id": order}})
    _step(user)
    fails = rng.randint(1, 2) if not succeed else (1 if rng.random() < 0.15 else 0)
    for _ in range(fails):
        pay = {"page": "/checkout/pay", "amount": total, "currency": cur, "props": {"order_id": order}}
        emit(user, "payment_submit", pay)
        _step(user)
        reason = rng.choice(_PAY_FAIL_REASONS)
        emit(user, "payment_fail", {"page": "/checkout/pay", "amount": total, "currency": cur, "props": {"order_id": order, "reason": reason}})
        _step(user)
    if succeed:  # checkout_start to payment_success stays under 10 min
        emit(user, "payment_submit", {"page": "/checkout/pay", "amount": total, "currency": cur, "props": {"order_id": order}})
        _step(user)
        emit(user, "payment_success", {"page": "/checkout/done", "amount": total, "currency": cur, "props": {"order_id": order}})


def _kyc(user: SyntheticUser, t_stop_decision: int, outcome: str | None) -> tuple[str, int] | None:
    """KYC steps; returns a deferred decision (type, time) or None."""
    rng, emit = user.rng, _emit
    emit(user, "page_view", {"page": "/kyc"})
    emit(user, "kyc_start", {"page": "/kyc/start", "props": {"step": "identity"}})
    for _ in range(rng.randint(1, 3)):
        emit(user, "page_view", {"page": rng.choice(("/kyc/document", "/kyc/selfie", "/kyc/address"))})
    if outcome is None and rng.random() < 0.5:  # stalled before submitting
        return None
    emit(user, "kyc_submit", {"page": "/kyc/submit", "props": {"step": "review"}})
    if outcome is None:
        return None
    submitted = user.buf[-1][0]
    deferred = submitted + rng.randrange(45 * MINUTE_MS, 6 * HOUR_MS)
    if rng.random() < 0.45 or deferred > t_stop_decision:  # instant decision
        user.t = submitted + rng.randrange(MINUTE_MS, 8 * MINUTE_MS)
        _decision(user, outcome)
        return None
    return outcome, deferred


def _decision(user: SyntheticUser, outcome: str) -> None:
    if outcome == "kyc_approved":
        _emit(user, "kyc_approved", {"page": "/kyc/result", "props": {"step": "approved"}})
    else:
        reason = user.rng.choice(_KYC_REJECT_REASONS)
        _emit(user, "kyc_rejected", {"page": "/kyc/result", "props": {"step": "rejected", "reason": reason}})


def _claims(user: SyntheticUser) -> str | None:
    rng, coupon = user.rng, None
    for _ in range(rng.randint(1, 3)):
        cat = rng.choice(user.favourites)
        coupon = f"cp-{cat[:3]}-{rng.randrange(1, 60):03d}"
        _emit(user, "coupon_view", {"page": "/coupons", "category": cat, "props": {"coupon_id": coupon}})
        if rng.random() < 0.7:
            _emit(user, "coupon_claim", {"page": "/coupons", "category": cat, "props": {"coupon_id": coupon}})
    return coupon
