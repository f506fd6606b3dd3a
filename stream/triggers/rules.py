"""Trigger rules: the moments that matter, detected on event time.

Rules see one user's events in event-time order (after the sessionizer's reorder
buffer) and that user's closed segments. Deadlines are *event-time timers* kept in the
user's :class:`TriggerState`; the partition engine indexes each user's earliest deadline
and calls :meth:`TriggerRules.fire_due` once the partition watermark passes it. A
timer-fired trigger happens *at its deadline* (``ts_ms`` = deadline), never at the
moment it was noticed, and nothing here reads a clock, so replay and live agree.

Default rules (every number is a ``[triggers]`` setting):

=========================  ==============================================================
``cart_abandoned``         ``add_to_cart``, then neither ``checkout_start`` nor
                           ``payment_success`` within 30 min of the *last* add_to_cart
                           (a ``remove_from_cart`` that empties the cart also cancels).
``payment_stalled``        ``checkout_start``, ``payment_submit`` or ``payment_fail``, then
                           no ``payment_success`` within 15 min of the last of them.
``kyc_stalled``            ``kyc_start`` or ``kyc_submit``, then no ``kyc_approved`` within
                           24 h of the last of them (``kyc_rejected`` cancels it).
``kyc_rejected``           fires at once on ``kyc_rejected``.
``churn_risk``             active on >= 2 distinct UTC days in the trailing 30 days, then no
                           event for 7 days after the last one.
``first_transaction_nudge`` a closed segment with intent strength >= 0.6 whose behaviour
                           stage is exploring or considering, from a user with no
                           completed transaction; fires at the segment's end.
``coupon_interest``        a closed coupon-oriented segment with intent strength >= 0.5 from
                           a user with no completed transaction in it; at the segment's end.
=========================  ==============================================================

Feedback: a sent or deferred decision arms a feedback timer at its delivery time +
24 h. ``message_open``/``message_click`` naming its ``props.action_id`` disarm it and
reset the *ignored* streak; the timer firing counts the message as ignored. After 5
consecutive ignored messages the decider switches the user to the strategy's alternate
group (the regret rule; :attr:`TriggerState.ignored_streak` carries the count).
``message_dismiss`` counts consecutive dismissals per trigger; after 3 the trigger is
blocked for that user for 30 days. Feedback events without a known ``action_id`` still
reset (open/click) or count (dismiss, against the trigger named in ``props.trigger``).

>>> from intentstream.stream.contract.events import parse_event
>>> rules, st = TriggerRules(), TriggerState()
>>> e = parse_event(b'{"event_id":"a1","user_id":"u1","ts":"2026-01-05T10:00:00Z","type":"add_to_cart","item_id":"sku9"}')
>>> rules.on_event(st, e)
[]
>>> st.next_due() == e.ts_ms + 30 * 60_000
True
>>> [(f.trigger, f.ts_ms - e.ts_ms, f.evidence) for f in rules.fire_due(st, e.ts_ms + 31 * 60_000)]
[('cart_abandoned', 1800000, ('a1',))]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from intentstream.stream.contract.events import Event
from intentstream.stream.settings import TriggerSettings, default_settings

DAY_MS = 86_400_000

#: Timer kinds armed by events, and the trigger each fires.
CART, PAYMENT, KYC, CHURN = "cart", "payment", "kyc", "churn"
TIMER_TRIGGER = {CART: "cart_abandoned", PAYMENT: "payment_stalled", KYC: "kyc_stalled", CHURN: "churn_risk"}

ALL_TRIGGERS = (
    "cart_abandoned", "payment_stalled", "kyc_stalled", "kyc_rejected",
    "churn_risk", "first_transaction_nudge", "coupon_interest",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fired:
    """A trigger occurrence: ``evidence`` identifies it (and so its action_id)."""

    trigger: str
    ts_ms: int
    evidence: tuple[str, ...]
    facts: Mapping[str, Any] = field(default_factory=dict)
    ignored_streak: int = 0
    #: (behaviour stage, main activity) of the user's latest closed segment when it fired
    persona: tuple[str, str] | None = None


@dataclass(slots=True)
class Timer:
    due_ms: int
    evidence: tuple[str, ...]
    facts: dict[str, Any]


@dataclass(slots=True)
class TriggerState:
    """One user's trigger memory; small, and serializable with :meth:`to_dict`."""

    timers: dict[str, Timer] = field(default_factory=dict)
    cart_items: int = 0
    days: list[int] = field(default_factory=list)  # distinct UTC day numbers, last N days
    last_event_ms: int = 0
    ignored_streak: int = 0
    dismiss_streak: dict[str, int] = field(default_factory=dict)
    blocked_until: dict[str, int] = field(default_factory=dict)
    # action_id -> (feedback deadline, trigger) for messages awaiting an open
    awaiting: dict[str, tuple[int, str]] = field(default_factory=dict)
    transacted: bool = False
    # behaviour stage and main activity of the user's latest closed segment
    persona: tuple[str, str] | None = None

    def next_due(self) -> int | None:
        """The earliest deadline of any timer, or None (hot: called per released event)."""
        best = None
        for t in self.timers.values():
            if best is None or t.due_ms < best:
                best = t.due_ms
        if self.awaiting:
            for due, _ in self.awaiting.values():
                if best is None or due < best:
                    best = due
        return best

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.timers:
            out["t"] = {k: [t.due_ms, list(t.evidence), t.facts] for k, t in self.timers.items()}
        if self.cart_items:
            out["c"] = self.cart_items
        if self.days:
            out["d"] = self.days
        if self.last_event_ms:
            out["l"] = self.last_event_ms
        if self.ignored_streak:
            out["i"] = self.ignored_streak
        if self.dismiss_streak:
            out["ds"] = self.dismiss_streak
        if self.blocked_until:
            out["b"] = self.blocked_until
        if self.awaiting:
            out["a"] = {k: [due, trig] for k, (due, trig) in self.awaiting.items()}
        if self.transacted:
            out["x"] = 1
        if self.persona:
            out["p"] = list(self.persona)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TriggerState:
        if not d:
            return cls()
        return cls(
            timers={k: Timer(v[0], tuple(v[1]), dict(v[2])) for k, v in d.get("t", {}).items()},
            cart_items=d.get("c", 0),
            days=list(d.get("d", [])),
            last_event_ms=d.get("l", 0),
            ignored_streak=d.get("i", 0),
            dismiss_streak=dict(d.get("ds", {})),
            blocked_until=dict(d.get("b", {})),
            awaiting={k: (v[0], v[1]) for k, v in d.get("a", {}).items()},
            transacted=bool(d.get("x", 0)),
            persona=tuple(d["p"]) if d.get("p") else None,  # type: ignore[arg-type]
        )


#: Event types whose extra fields (item, currency, feedback references) the rules read.
EXTRA_TYPES = frozenset(
    {"add_to_cart", "checkout_start", "payment_submit", "payment_fail", "payment_success",
     "kyc_rejected", "message_open", "message_click", "message_dismiss"}
)  # fmt: skip


def trigger_extra(ev: Event) -> dict[str, Any] | None:
    """The few fields beyond (ts, id, type, amount) the rules need, for the types that
    need them: kept in the sessionizer's reorder buffer, so only what is used."""
    if ev.type not in EXTRA_TYPES:
        return None
    extra: dict[str, Any] = {}
    for name in ("item_id", "category", "currency"):
        value = getattr(ev, name)
        if value is not None:
            extra[name] = value
    for name in ("action_id", "trigger"):
        value = ev.props.get(name)
        if isinstance(value, str):
            extra[name] = value
    return extra or None


def _facts(extra: Mapping[str, Any], amount: float | None) -> dict[str, Any]:
    facts = {k: extra[k] for k in ("item_id", "category", "currency") if k in extra}
    if amount is not None:
        facts["amount"] = amount
    return facts


class TriggerRules:
    """Pure rule logic over a :class:`TriggerState`; see the module docstring."""

    def __init__(self, config: TriggerSettings | None = None) -> None:
        """``config``: the ``[triggers]`` settings (default: the defaults file's)."""
        self.cfg = config or default_settings().triggers
        self.enabled = frozenset(self.cfg.enabled)

    # ------------------------------------------------------------------ events
    def on_event(self, st: TriggerState, ev: Event) -> list[Fired]:
        """Update timers for one :class:`~intentstream.stream.contract.events.Event` (in event-time order);
        deadlines before it fire first: the user's own later event proves they passed."""
        due = st.next_due()
        fired = self.fire_due(st, ev.ts_ms - 1) if due is not None and due < ev.ts_ms else []
        return fired + self.on_fields(st, ev.ts_ms, ev.event_id, ev.type, ev.amount, trigger_extra(ev))

    def on_fields(
        self, st: TriggerState, ms: int, event_id: str, t: str, amount: float | None, extra: Mapping[str, Any] | None
    ) -> list[Fired]:
        """:meth:`on_event` on the fields the sessionizer keeps (``extra``: see
        :func:`trigger_extra`), once deadlines before ``ms`` have fired (the sessionizer
        settles them first). Returns the triggers fired at once (kyc_rejected)."""
        cfg = self.cfg
        extra = extra or {}
        fired: list[Fired] = []
        self._note_activity(st, ms)

        if t == "add_to_cart":
            st.cart_items += 1
            prev = st.timers.get(CART)
            evidence = ((prev.evidence if prev else ()) + (event_id,))[-5:]
            self._arm(st, CART, ms + cfg.cart_abandon_s * 1000, evidence, _facts(extra, amount))
        elif t == "remove_from_cart":
            st.cart_items = max(0, st.cart_items - 1)
            if st.cart_items == 0:
                st.timers.pop(CART, None)
        if t in ("checkout_start", "payment_success"):
            st.timers.pop(CART, None)
            st.cart_items = 0
        if t in ("checkout_start", "payment_submit", "payment_fail"):
            prev = st.timers.get(PAYMENT)
            facts = {**(prev.facts if prev else {}), **_facts(extra, amount)}
            evidence = ((prev.evidence if prev else ()) + (event_id,))[-5:]
            self._arm(st, PAYMENT, ms + cfg.payment_stall_s * 1000, evidence, facts)
        elif t == "payment_success":
            st.timers.pop(PAYMENT, None)
            st.transacted = True
        if t in ("kyc_start", "kyc_submit"):
            prev = st.timers.get(KYC)
            evidence = ((prev.evidence if prev else ()) + (event_id,))[-5:]
            self._arm(st, KYC, ms + cfg.kyc_stall_s * 1000, evidence, {"step": t})
        elif t in ("kyc_approved", "kyc_rejected"):
            st.timers.pop(KYC, None)
            if t == "kyc_rejected":
                fired += self._fire(st, Fired("kyc_rejected", ms, (event_id,), _facts(extra, amount)))
        elif t in ("message_open", "message_click"):
            aid = extra.get("action_id", "")
            trig = self._feedback_trigger(st, aid, extra)
            st.awaiting.pop(aid, None)
            st.ignored_streak = 0
            if trig:
                st.dismiss_streak.pop(trig, None)
        elif t == "message_dismiss":
            aid = extra.get("action_id", "")
            trig = self._feedback_trigger(st, aid, extra)
            st.awaiting.pop(aid, None)
            if trig:
                n = st.dismiss_streak.get(trig, 0) + 1
                st.dismiss_streak[trig] = n
                if n >= cfg.dismiss_streak_block:
                    st.blocked_until[trig] = ms + cfg.dismiss_block_s * 1000
                    st.dismiss_streak.pop(trig)

        # churn: re-armed by every event of a user active on enough distinct days
        if len(st.days) >= cfg.churn_min_active_days:
            churn = st.timers.get(CHURN)
            if churn is None:
                self._arm(st, CHURN, ms + cfg.churn_silence_s * 1000, (event_id,), {"active_days": len(st.days)})
            else:  # hot path: most events of active users land here; no new objects
                churn.due_ms = ms + cfg.churn_silence_s * 1000
                churn.evidence = (event_id,)
                churn.facts["active_days"] = len(st.days)
        return fired

    def _note_activity(self, st: TriggerState, ms: int) -> None:
        st.last_event_ms = max(st.last_event_ms, ms)
        day = ms // DAY_MS
        if day not in st.days:
            st.days.append(day)
            st.days.sort()
        horizon = day - self.cfg.churn_lookback_days + 1
        if st.days and st.days[0] < horizon:
            st.days = [d for d in st.days if d >= horizon]

    @staticmethod
    def _feedback_trigger(st: TriggerState, aid: str, extra: Mapping[str, Any]) -> str | None:
        if aid in st.awaiting:
            return st.awaiting[aid][1]
        return extra.get("trigger")

    def _arm(self, st: TriggerState, kind: str, due: int, evidence: tuple[str, ...], facts: dict[str, Any]) -> None:
        if TIMER_TRIGGER[kind] in self.enabled:
            st.timers[kind] = Timer(due, evidence, facts)

    def _fire(self, st: TriggerState, f: Fired) -> list[Fired]:
        if f.trigger not in self.enabled:
            return []
        if st.blocked_until.get(f.trigger, -1) > f.ts_ms:
            return []
        return [Fired(f.trigger, f.ts_ms, f.evidence, f.facts, st.ignored_streak, st.persona)]

    # ---------------------------------------------------------------- segments
    def on_segment(self, st: TriggerState, seg: Any) -> list[Fired]:
        """Persona-driven triggers from a closed segment (an IntentSegment)."""
        cfg, fired = self.cfg, []
        st.persona = (seg.behaviour_stage, seg.main_activity)
        never_transacted = not st.transacted and seg.transaction_status != "completed"
        if (
            never_transacted
            and seg.intent_strength >= cfg.nudge_min_strength
            and seg.behaviour_stage in ("exploring", "considering")
        ):
            fired += self._fire(st, Fired("first_transaction_nudge", seg.end_ms, (seg.segment_id,)))
        if (
            seg.main_activity == "coupon_oriented"
            and seg.intent_strength >= cfg.coupon_min_strength
            and seg.transaction_status != "completed"
        ):
            fired += self._fire(st, Fired("coupon_interest", seg.end_ms, (seg.segment_id,)))
        return fired

    # ------------------------------------------------------------------ timers
    def fire_due(self, st: TriggerState, watermark_ms: int) -> list[Fired]:
        """Fire every timer whose deadline the watermark has passed, in deadline order.

        Feedback deadlines interleave with trigger deadlines, so each fired trigger sees
        the ignored streak as of its own deadline.
        """
        due: list[tuple[int, int, str]] = [
            (t.due_ms, 1, kind) for kind, t in st.timers.items() if t.due_ms <= watermark_ms
        ]
        due += [(d, 0, aid) for aid, (d, _trig) in st.awaiting.items() if d <= watermark_ms]
        fired: list[Fired] = []
        for due_ms, is_timer, name in sorted(due):
            if not is_timer:
                del st.awaiting[name]
                st.ignored_streak += 1
                continue
            timer = st.timers.pop(name)
            fired += self._fire(st, Fired(TIMER_TRIGGER[name], due_ms, timer.evidence, timer.facts))
        return fired

    def on_delivery(self, st: TriggerState, action_id: str, trigger: str, delivery_ms: int) -> None:
        """A decision was sent or deferred: await its open until delivery + 24 h."""
        st.awaiting[action_id] = (delivery_ms + self.cfg.feedback_ignore_s * 1000, trigger)

    @staticmethod
    def fired_order(fired: Iterable[Fired]) -> list[Fired]:
        """Deterministic order for fired triggers of one step."""
        return sorted(fired, key=lambda f: (f.ts_ms, f.trigger, f.evidence))
