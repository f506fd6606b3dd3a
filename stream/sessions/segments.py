"""Intent segments: vocabulary, the accumulator that builds them, and every labelling formula.

A *session* (see :mod:`intentstream.stream.sessions.sessionizer`) is cut into *intent segments*: runs of events
with one dominant intent. A closed segment is an :class:`IntentSegment`, the record the
segments topic, the personas and the offline file carry.

Event types and votes
---------------------
Each event type votes for one intent with an integer weight (how committal the action
is); app_open, message_* and unknown types are *generic interactions*: counted in
``interactions`` and ``type_counts`` but no vote.

============  =====================================================================
intent        types (weight)
============  =====================================================================
browsing      page_view 1, click 1, search 1
coupon        coupon_view 1, coupon_claim 2, coupon_redeem 3
purchase      add_to_cart 2, remove_from_cart 1, checkout_start 3, payment_submit 3,
              payment_success 3, payment_fail 3
kyc           kyc_start 2, kyc_submit 3, kyc_approved 1, kyc_rejected 1
account       login 1, signup 2, form_start 1, form_submit 2, unsubscribe 1
(none)        app_open, message_open, message_click, message_dismiss, unknown types
============  =====================================================================

Formulas (``W[i]``: summed vote weight of intent i in the segment; ``N0``: generic
interactions, late events excluded; ``k`` = ``[sessions] intent_switch_votes``)
------------------------------------------------------------------------------

=================== ===================================================================
field               rule
=================== ===================================================================
intent              ``argmax W``; ties go to the more committal intent, in the order
                    purchase > kyc > coupon > account > browsing. No vote at all:
                    browsing (with strength 0).
cut rule            a new segment starts when ``k`` consecutive votes (generic
                    interactions between them neither vote nor break the run) go to
                    one intent X other than the current dominant one; the run's events
                    (with the generic ones among them) open the new segment. A vote for
                    the dominant intent or for a third intent ends the run and its
                    events stay in the current segment. A segment with fewer than ``k``
                    votes absorbs a completed run instead of being cut (a stray head is
                    no segment of its own), which may make X its dominant intent.
intent_strength     ``focus * depth``, rounded to 4 places, in [0, 1]:
                    focus = ``W[intent] / (sum(W) + N0)``,
                    depth = ``min(1, W[intent] / strength_full_weight)``.
main_activity       intent -> browsing: general_exploring, coupon: coupon_oriented,
                    purchase: purchase_focused, kyc: kyc_focused,
                    account: account_management.
kyc_status          the user's KYC status (profile, across sessions) as of the segment's
                    last event: not_started; in_progress after kyc_start/kyc_submit;
                    completed after kyc_approved; rejected after kyc_rejected
                    (see :mod:`intentstream.stream.sessions.profiles`).
transaction_status  the status of the user's latest payment attempt as of the segment's
                    last event: not_started (never); in_progress after checkout_start/
                    payment_submit; completed after payment_success; failed after
                    payment_fail.
behaviour_stage     first match: transacted iff transaction_status = completed;
                    transacting iff transaction_status in (in_progress, failed);
                    verifying iff no transaction and kyc_status in (in_progress,
                    rejected); considering iff none of the above and intent in
                    (purchase, coupon); exploring otherwise.
urgency             high if the segment left a funnel open (it holds a checkout_start/
                    payment_submit/payment_fail and transaction_status is in_progress or
                    failed, or a kyc_start/kyc_submit/kyc_rejected and kyc_status is
                    in_progress or rejected), or intent in (purchase, kyc) with strength
                    >= urgency_high_strength; else medium if intent in (purchase, kyc,
                    coupon) or strength >= urgency_medium_strength; else low.
lifecycle_stage     the user's stage as of the session's start (:mod:`intentstream.stream.sessions.profiles`).
amount              sum of payment_success amounts in the segment.
interactions        every event in the segment, generic and late ones included
                    (= sum of type_counts); devices and channels count the events
                    that carry them.
duration_min        (end_ms - start_ms) / 60000; start/end span the in-order events.
late                events that arrived after the horizon and were added to this
                    segment's counts only (no vote, no time range); see intentstream.stream.sessions.sessionizer.
closed_by           intent_change, inactivity (the gap), max_length, late_flush (a
                    segment made only of late events), end_of_input (offline flush).
=================== ===================================================================

>>> acc = SegmentAccumulator()
>>> for ts, eid, typ in [(0, "a", "page_view"), (60_000, "b", "add_to_cart"), (120_000, "c", "checkout_start")]:
...     acc.add((ts, eid, typ, "ios", "app", None), "not_started", "in_progress")
>>> seg = acc.finish("u1", "s1", 0, "introduction", "UTC", "inactivity", Labeller.from_settings())
>>> seg.intent, seg.intent_strength, seg.urgency, seg.behaviour_stage, seg.duration_min
('purchase', 0.4167, 'high', 'transacting', 2.0)
>>> IntentSegment.from_dict(seg.to_dict()) == seg
True
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Final

from intentstream.stream.contract.events import CANONICAL_TYPE_ORDER, format_ts
from intentstream.stream.settings import SessionSettings, default_settings

INTENTS: Final = ("browsing", "coupon", "purchase", "kyc", "account")
BROWSING, COUPON, PURCHASE, KYC, ACCOUNT = range(5)
#: Tie-break order of :data:`INTENTS` indices: the more committal intent wins a tie.
INTENT_PRIORITY: Final = (PURCHASE, KYC, COUPON, ACCOUNT, BROWSING)
_RANK: Final = {i: r for r, i in enumerate(INTENT_PRIORITY)}

MAIN_ACTIVITY: Final = {
    "browsing": "general_exploring",
    "coupon": "coupon_oriented",
    "purchase": "purchase_focused",
    "kyc": "kyc_focused",
    "account": "account_management",
}
URGENCIES: Final = ("low", "medium", "high")
KYC_STATUSES: Final = ("not_started", "in_progress", "completed", "rejected")
TRANSACTION_STATUSES: Final = ("not_started", "in_progress", "completed", "failed")
#: Behaviour stages and what each means (first match wins, see the module table).
BEHAVIOUR_STAGES: Final = {
    "transacted": "the user's latest payment attempt succeeded (transaction_status completed)",
    "transacting": "a payment attempt is open or has just failed (in_progress / failed)",
    "verifying": "never transacted; KYC started and not approved (in_progress / rejected)",
    "considering": "never transacted, not mid-KYC; the segment is about purchase or coupons",
    "exploring": "never transacted, not mid-KYC; browsing, account or generic activity",
}
LIFECYCLE_STAGES: Final = ("introduction", "growth", "maturity", "decline")
CLOSED_BY: Final = ("intent_change", "inactivity", "max_length", "late_flush", "end_of_input")

#: Event type -> (intent index, vote weight); types not listed are generic interactions.
TYPE_INTENT: Final[dict[str, tuple[int, int]]] = {
    "page_view": (BROWSING, 1), "click": (BROWSING, 1), "search": (BROWSING, 1),
    "coupon_view": (COUPON, 1), "coupon_claim": (COUPON, 2), "coupon_redeem": (COUPON, 3),
    "add_to_cart": (PURCHASE, 2), "remove_from_cart": (PURCHASE, 1),
    "checkout_start": (PURCHASE, 3), "payment_submit": (PURCHASE, 3),
    "payment_success": (PURCHASE, 3), "payment_fail": (PURCHASE, 3),
    "kyc_start": (KYC, 2), "kyc_submit": (KYC, 3), "kyc_approved": (KYC, 1), "kyc_rejected": (KYC, 1),
    "login": (ACCOUNT, 1), "signup": (ACCOUNT, 2), "form_start": (ACCOUNT, 1),
    "form_submit": (ACCOUNT, 2), "unsubscribe": (ACCOUNT, 1),
}  # fmt: skip
GENERIC_TYPES: Final = frozenset({"app_open", "message_open", "message_click", "message_dismiss"})

#: Funnel flags: the segment holds a payment-funnel step / a KYC step (for urgency).
FLAG_PAY, FLAG_KYC = 1, 2
_FLAGS: Final = {
    "checkout_start": FLAG_PAY, "payment_submit": FLAG_PAY, "payment_fail": FLAG_PAY,
    "kyc_start": FLAG_KYC, "kyc_submit": FLAG_KYC, "kyc_rejected": FLAG_KYC,
}  # fmt: skip

# An *event tuple*: one event's fields by position, for building segments and profiles
# by hand (tests, the segment synthesizer) without a per-event object. Not the
# sessionizer's stored buffer row, which has its own layout (sessionizer.buffered_row).
# (ts_ms, event_id, type, device, channel, amount, tz, message_channel)
TS, EID, TYPE, DEVICE, CHANNEL, AMOUNT, TZ, MSG_CHANNEL = range(8)

#: Type codes of events kept in stored state (reorder buffers): the contract's order.
TYPE_CODES: Final = CANONICAL_TYPE_ORDER
TYPE_CODE: Final = {t: i for i, t in enumerate(TYPE_CODES)}
#: Profile relevance of a type (see intentstream.stream.sessions.profiles): 0 none, 1 KYC, 2 payment, 3 unsubscribe.
_PROFILE_KIND: Final = {
    **{t: 1 for t in ("kyc_start", "kyc_submit", "kyc_approved", "kyc_rejected")},
    **{t: 2 for t in ("checkout_start", "payment_submit", "payment_success", "payment_fail")},
    "unsubscribe": 3,
}


def _info(t: str) -> tuple[str, int, int, int, int]:
    i, wt = TYPE_INTENT.get(t, (-1, 0))
    return (t, i, wt, _FLAGS.get(t, 0), _PROFILE_KIND.get(t, 0))


#: Type code or name -> (name, intent index or -1, weight, funnel flag, profile kind);
#: one lookup per event. Unknown types are absent: generic interactions.
TYPE_INFO: Final[dict[int | str, tuple[str, int, int, int, int]]] = {
    **{t: _info(t) for t in TYPE_CODES},
    **{i: _info(t) for i, t in enumerate(TYPE_CODES)},
}
GENERIC_INFO: Final = ("", -1, 0, 0, 0)


def type_info(code: int | str) -> tuple[str, int, int, int, int]:
    """:data:`TYPE_INFO` with unknown types as generic interactions."""
    info = TYPE_INFO.get(code)
    return info if info is not None else (str(code), -1, 0, 0, 0)


def dominant(w: list[int]) -> int:
    """Index of the dominant intent of vote weights ``w`` (ties: :data:`INTENT_PRIORITY`).

    >>> INTENTS[dominant([3, 0, 3, 0, 0])], INTENTS[dominant([0, 0, 0, 0, 0])]
    ('purchase', 'browsing')
    """
    best, bw = BROWSING, -1
    for i in INTENT_PRIORITY:
        if w[i] > bw:
            best, bw = i, w[i]
    return best if bw > 0 else BROWSING


@dataclass(frozen=True)
class Labeller:
    """The numeric knobs of the formulas (``[sessions]``; defaults in config/default.toml)."""

    strength_full_weight: int
    urgency_high_strength: float
    urgency_medium_strength: float

    @classmethod
    def from_settings(cls, s: SessionSettings | None = None) -> Labeller:
        """From ``[sessions]`` (default: the defaults file's)."""
        s = s or default_settings().sessions
        return cls(s.strength_full_weight, s.urgency_high_strength, s.urgency_medium_strength)

    def strength(self, w: list[int], d: int, neutral: int) -> float:
        total = sum(w) + neutral
        if not w[d] or not total:
            return 0.0
        return round(w[d] / total * min(1.0, w[d] / self.strength_full_weight), 4)

    def urgency(self, intent: str, strength: float, flags: int, kyc: str, tx: str) -> str:
        open_pay = flags & FLAG_PAY and tx in ("in_progress", "failed")
        open_kyc = flags & FLAG_KYC and kyc in ("in_progress", "rejected")
        if open_pay or open_kyc or (intent in ("purchase", "kyc") and strength >= self.urgency_high_strength):
            return "high"
        if intent in ("purchase", "kyc", "coupon") or strength >= self.urgency_medium_strength:
            return "medium"
        return "low"


def behaviour_stage(intent: str, kyc: str, tx: str) -> str:
    """The behaviour stage; never contradicts the statuses (see :data:`BEHAVIOUR_STAGES`).

    >>> behaviour_stage("coupon", "not_started", "completed"), behaviour_stage("coupon", "completed", "not_started")
    ('transacted', 'considering')
    """
    if tx == "completed":
        return "transacted"
    if tx != "not_started":
        return "transacting"
    if kyc in ("in_progress", "rejected"):
        return "verifying"
    return "considering" if intent in ("purchase", "coupon") else "exploring"


@dataclass(frozen=True, slots=True)
class IntentSegment:
    """A closed intent segment. Times are epoch ms; ``to_dict`` adds ISO ``start``/``end``."""

    user_id: str
    session_id: str
    segment_id: str
    seq: int
    start_ms: int
    end_ms: int
    duration_min: float
    interactions: int
    intent: str
    intent_strength: float
    urgency: str
    main_activity: str
    kyc_status: str
    transaction_status: str
    behaviour_stage: str
    lifecycle_stage: str
    devices: dict[str, int] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    type_counts: dict[str, int] = field(default_factory=dict)
    amount: float = 0.0
    first_event_id: str = ""
    last_event_id: str = ""
    tz: str = "UTC"
    closed_by: str = "inactivity"
    late: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: every field plus ``start`` and ``end`` as ISO-8601 UTC."""
        return {
            "user_id": self.user_id, "session_id": self.session_id, "segment_id": self.segment_id,
            "seq": self.seq, "start_ms": self.start_ms, "end_ms": self.end_ms,
            "duration_min": self.duration_min, "interactions": self.interactions, "intent": self.intent,
            "intent_strength": self.intent_strength, "urgency": self.urgency,
            "main_activity": self.main_activity, "kyc_status": self.kyc_status,
            "transaction_status": self.transaction_status, "behaviour_stage": self.behaviour_stage,
            "lifecycle_stage": self.lifecycle_stage, "devices": self.devices, "channels": self.channels,
            "type_counts": self.type_counts, "amount": self.amount, "first_event_id": self.first_event_id,
            "last_event_id": self.last_event_id, "tz": self.tz, "closed_by": self.closed_by,
            "late": self.late, "start": format_ts(self.start_ms), "end": format_ts(self.end_ms),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntentSegment:
        """Inverse of :meth:`to_dict` (``start``/``end`` and unknown keys are ignored)."""
        return cls(**{k: d[k] for k in _FIELD_NAMES if k in d})


_FIELD_NAMES: Final = tuple(f.name for f in fields(IntentSegment))


def segment_id(session_id: str, seq: int) -> str:
    """Deterministic segment id: ``<session_id>:<seq>``."""
    return f"{session_id}:{seq}"


class SegmentAccumulator:
    """Running sums of one segment: O(1) per event, mergeable, never keeps events.

    ``kyc``/``tx`` snapshot the user's statuses after the last event added, so the
    segment reports them as of its own end even when later events have moved on.
    """

    __slots__ = ("start", "end", "n", "nv", "w", "d", "tc", "dev", "ch", "amt", "feid", "leid", "late", "fx", "kyc", "tx")

    def __init__(self) -> None:
        self.start = self.end = -1
        self.n = self.nv = self.late = self.fx = 0
        self.w = [0, 0, 0, 0, 0]
        self.d = BROWSING
        self.tc: dict[str, int] = {}
        self.dev: dict[str, int] = {}
        self.ch: dict[str, int] = {}
        self.amt = 0.0
        self.feid = self.leid = ""
        self.kyc = self.tx = "not_started"

    def add_fields(self, ts: int, eid: str, info: tuple, dev: str | None, ch: str | None, amt: float | None, kyc: str, tx: str) -> None:
        """Add an event (``info`` from :func:`type_info`) with the user's statuses after it.

        Events come in ts order, except in late runs (start/end still take min/max)."""
        typ, i, wt, f, _ = info
        self.n += 1
        tc = self.tc
        tc[typ] = tc.get(typ, 0) + 1
        if dev is not None:
            self.dev[dev] = self.dev.get(dev, 0) + 1
        if ch is not None:
            self.ch[ch] = self.ch.get(ch, 0) + 1
        if f:
            self.fx |= f
        elif amt and typ == "payment_success":
            self.amt += amt
        if self.start < 0 or ts < self.start:
            self.start, self.feid = ts, eid
        if ts >= self.end:
            self.end, self.leid = ts, eid
        if i >= 0:
            w = self.w
            w[i] += wt
            self.nv += 1
            d = self.d
            if i != d and (w[i] > w[d] or (w[i] == w[d] and _RANK[i] < _RANK[d])):
                self.d = i
        self.kyc, self.tx = kyc, tx

    def add_late_fields(self, info: tuple, dev: str | None, ch: str | None, amt: float | None, kyc: str, tx: str) -> None:
        """Count a late event: counts and statuses only, no vote and no time range."""
        typ = info[0]
        self.n += 1
        self.late += 1
        self.tc[typ] = self.tc.get(typ, 0) + 1
        if dev is not None:
            self.dev[dev] = self.dev.get(dev, 0) + 1
        if ch is not None:
            self.ch[ch] = self.ch.get(ch, 0) + 1
        if info[3]:
            self.fx |= info[3]
        elif amt and typ == "payment_success":
            self.amt += amt
        self.kyc, self.tx = kyc, tx

    def add(self, ev: tuple, kyc: str = "not_started", tx: str = "not_started") -> None:
        """Add an event tuple ``(ts, event_id, type, device, channel, amount, ...)``
        with the user's statuses after it (:meth:`add_fields` on unpacked fields)."""
        self.add_fields(ev[TS], ev[EID], type_info(ev[TYPE]), ev[DEVICE], ev[CHANNEL], ev[AMOUNT], kyc, tx)


    def add_late(self, ev: tuple, kyc: str = "not_started", tx: str = "not_started") -> None:
        """:meth:`add_late_fields` for an event tuple."""
        self.add_late_fields(type_info(ev[TYPE]), ev[DEVICE], ev[CHANNEL], ev[AMOUNT], kyc, tx)

    def merge(self, later: SegmentAccumulator) -> None:
        """Fold ``later`` (whose events all come after this one's) into this one."""
        if later.start >= 0:
            if self.start < 0:
                self.start, self.feid = later.start, later.feid
            self.end, self.leid = later.end, later.leid
        self.n += later.n
        self.nv += later.nv
        self.late += later.late
        self.fx |= later.fx
        self.amt += later.amt
        self.w = [a + b for a, b in zip(self.w, later.w)]
        self.d = dominant(self.w)
        for mine, theirs in ((self.tc, later.tc), (self.dev, later.dev), (self.ch, later.ch)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        self.kyc, self.tx = later.kyc, later.tx

    def finish(
        self, user_id: str, session_id: str, seq: int, lifecycle: str, tz: str, closed_by: str, labeller: Labeller
    ) -> IntentSegment:
        """The closed :class:`IntentSegment` with every label computed."""
        intent = INTENTS[self.d]
        neutral = self.n - self.nv - self.late
        strength = labeller.strength(self.w, self.d, neutral)
        return IntentSegment(
            user_id=user_id,
            session_id=session_id,
            segment_id=segment_id(session_id, seq),
            seq=seq,
            start_ms=self.start,
            end_ms=self.end,
            duration_min=(self.end - self.start) / 60000,
            interactions=self.n,
            intent=intent,
            intent_strength=strength,
            urgency=labeller.urgency(intent, strength, self.fx, self.kyc, self.tx),
            main_activity=MAIN_ACTIVITY[intent],
            kyc_status=self.kyc,
            transaction_status=self.tx,
            behaviour_stage=behaviour_stage(intent, self.kyc, self.tx),
            lifecycle_stage=lifecycle,
            devices=dict(self.dev),  # copies: the accumulator may live on (JSON sorts keys)
            channels=dict(self.ch),
            type_counts=dict(self.tc),
            amount=round(self.amt, 2),
            first_event_id=self.feid,
            last_event_id=self.leid,
            tz=tz,
            closed_by=closed_by,
            late=self.n if closed_by == "late_flush" else self.late,
        )

    # -- stored form (a list; the whole per-user record: intentstream.stream.engine.user_state) --

    def dump(self) -> list[Any]:
        return [
            self.start, self.end, self.n, self.nv, self.w, self.tc, self.dev, self.ch,
            self.amt, self.feid, self.leid, self.late, self.fx,
            _KYC_CODE[self.kyc], _TX_CODE[self.tx],
        ]  # fmt: skip

    @classmethod
    def load(cls, a: list[Any]) -> SegmentAccumulator:
        acc = cls.__new__(cls)
        (acc.start, acc.end, acc.n, acc.nv, acc.w, acc.tc, acc.dev, acc.ch,
         acc.amt, acc.feid, acc.leid, acc.late, acc.fx, k, t) = a  # fmt: skip
        acc.kyc, acc.tx = KYC_STATUSES[k], TRANSACTION_STATUSES[t]
        acc.d = dominant(acc.w)
        return acc


_KYC_CODE: Final = {s: i for i, s in enumerate(KYC_STATUSES)}
_TX_CODE: Final = {s: i for i, s in enumerate(TRANSACTION_STATUSES)}
