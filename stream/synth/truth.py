"""The ground truth: the journeys one user's events contain, and the user's truth record.

Ground truth is computed from each user's own events by the default rules, so it is
honest by construction: ``cart_abandoned`` (no add_to_cart, checkout_start or
payment_success within 30 min of the last add_to_cart), ``payment_stalled`` (no further
payment step or success within 15 min of the last checkout_start/payment_submit/
payment_fail), ``kyc_stalled`` (no kyc_approved/kyc_rejected within 24 h of the last
kyc_start/kyc_submit), ``kyc_completed``, ``kyc_rejected``, ``purchase``, ``unsubscribe``
and ``churn`` (silent for 7 days after being active on 2+ UTC days in the 30 before, at
the end of the window or in the middle). Timer journeys are listed only when their
``due`` time falls inside the window (so no ``kyc_stalled`` when ``days == 1`` and no
``churn`` when ``days <= 7``); planted abandonments and stalls end the session, so they
hold under the stricter reading "no event at all" as well.

Truth records (:func:`truth_record`): one per user, with ``user_id``, ``persona``, ``tz``
(or null), ``device``, ``currency``, counts (``events`` unique valid events, ``late``,
``very_late``, ``duplicates``, ``invalid``), ``first_active``, ``last_active``,
``active_days`` (UTC dates) and ``journeys``: objects with ``journey`` and ``at`` (the key
event: last add_to_cart, last payment step, kyc_start, payment_success, …), ``due`` for
timer journeys, and ``last_step``, ``amount``/``currency``, ``channel``,
``last_active``/``active_days`` where they apply. With real-world delivery on, the
record also lists the user's retried uploads, offline flushes and cross-device sessions
(:mod:`~intentstream.stream.synth.realworld`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from intentstream.stream.contract.events import format_ts
from intentstream.stream.synth.config import DAY_MS, GeneratorConfig

if TYPE_CHECKING:
    from intentstream.stream.synth.delivery import UserFeed


class JourneyTracker:
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
        last_day = self.last // DAY_MS
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
        self.days.add(ts // DAY_MS)
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


def truth_record(feed: UserFeed, found: list[dict[str, Any]]) -> dict[str, Any]:
    """The truth record of the user behind ``feed``, with the journeys ``found`` in its events."""
    user, journeys = feed.user, feed.journeys
    active = journeys.first is not None
    record = {
        "user_id": user.uid,
        "persona": user.persona,
        "tz": user.tz,
        "device": user.device,
        "currency": user.currency,
        "events": feed.n,
        "late": feed.late,
        "very_late": feed.very_late,
        "duplicates": feed.dups,
        "invalid": feed.bad,
        "first_active": format_ts(journeys.first) if journeys.first is not None else None,
        "last_active": format_ts(journeys.last) if active else None,
        "active_days": len(journeys.days),
        "journeys": found,
    }
    if feed.rw is not None:  # the real-world delivery modes that are on
        record.update(feed.rw.truth())
    return record
