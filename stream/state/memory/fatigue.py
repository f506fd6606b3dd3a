"""In-memory :class:`~intentstream.stream.state.fatigue.LedgerStore` (replay, demo, tests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from intentstream.stream.state.fatigue import (
    COUPON_CAPPED,
    COUPON_CHANNEL,
    COUPON_GRANTED,
    COUPON_NOT_SENT,
    LedgerRequest,
    Limits,
    Verdict,
    global_block,
    window_fits,
)


@dataclass
class _UserState:
    channels: dict[str, dict[str, int]] = field(default_factory=dict)  # channel -> action_id -> send time
    messages: dict[str, int] = field(default_factory=dict)  # action_id -> send time, all message channels
    cooldowns: dict[str, int] = field(default_factory=dict)  # trigger -> latest decided_at
    records: dict[str, tuple[int, Verdict]] = field(default_factory=dict)  # action_id -> (expires, verdict)


class MemoryLedgerStore:
    """In-process :class:`~intentstream.stream.state.fatigue.LedgerStore`; picklable plain state.

    Delivery history is pruned by event time exactly as the Redis script prunes it.
    Action records are forgotten ``limits.ttl_ms`` of event time after they were written,
    where Redis lets their keys expire after as much time on the server's clock (and its
    cooldown keys after cooldown + slack). The two differ only for a redelivery arriving
    after the user's later events have moved more than that horizon past the original,
    or for an event more than cooldown + slack late; live, event time ~ server time.

    >>> import pickle
    >>> store = MemoryLedgerStore()
    >>> req = LedgerRequest("a1", "u1", "churn_risk", 0, (("email", 0),), "email")
    >>> store.apply(req, Limits.from_settings()).channel
    'email'
    >>> copy = pickle.loads(pickle.dumps(store))          # a snapshot
    >>> copy.apply(req, Limits.from_settings()).duplicate, sorted(copy.users["u1"].channels["email"])
    (True, ['a1'])
    """

    def __init__(self) -> None:
        self.users: dict[str, _UserState] = {}

    def apply_many(self, reqs: Sequence[LedgerRequest], limits: Limits) -> list[Verdict]:
        return [self.apply(r, limits) for r in reqs]

    def apply(self, req: LedgerRequest, limits: Limits) -> Verdict:
        st = self.users.setdefault(req.user_id, _UserState())
        now = req.now
        self._prune(st, now, limits)
        rec = st.records.get(req.action_id)
        if rec is not None:
            return _as_duplicate(rec[1])
        want_coupon = req.coupon
        not_sent = COUPON_NOT_SENT if want_coupon else None

        def record(v: Verdict) -> Verdict:
            st.records[req.action_id] = (now + limits.ttl_ms, v)
            return v

        last = st.cooldowns.get(req.trigger)
        if last is not None and now < last + limits.cooldown_ms:
            return record(Verdict("suppressed", "cooldown", coupon=not_sent, payload=req.payload))
        if not req.options:
            return record(Verdict("suppressed", "opt_out", coupon=not_sent, payload=req.payload))
        chosen: tuple[str, int] | None = None
        for channel, t in req.options:
            if window_fits(st.channels.get(channel, {}).values(), t, limits.window_ms, limits.channel_cap):
                chosen = (channel, t)
                break
        if chosen is None:
            return record(Verdict("suppressed", "fatigue_cap", coupon=not_sent, payload=req.payload))
        channel, t = chosen
        if limits.global_caps:
            blocked = global_block(st.messages.values(), t, limits.global_caps, req.reserve_due)
            if blocked is not None:
                return record(Verdict("suppressed", blocked, coupon=not_sent, payload=req.payload))
        send_at = t if t > now else None
        fallback = req.first_choice if channel != req.first_choice else None
        st.cooldowns[req.trigger] = now  # > last: the cooldown check passed
        if req.holdout:
            return record(Verdict("holdout", "holdout", channel, send_at, fallback, not_sent, req.payload))
        st.channels.setdefault(channel, {})[req.action_id] = t
        if limits.global_caps:
            st.messages[req.action_id] = t
        coupon = None
        if want_coupon:
            coupons = st.channels.setdefault(COUPON_CHANNEL, {})
            if window_fits(coupons.values(), t, limits.window_ms, limits.coupon_cap):
                coupons[req.action_id] = t
                coupon = COUPON_GRANTED
            else:
                coupon = COUPON_CAPPED
        if send_at is None:
            return record(Verdict("sent", None, channel, None, fallback, coupon, req.payload))
        return record(Verdict("deferred", req.defer_reason(channel), channel, send_at, fallback, coupon, req.payload))

    @staticmethod
    def _prune(st: _UserState, now: int, limits: Limits) -> None:
        horizon = now - limits.window_ms - limits.retention_ms
        for deliveries in st.channels.values():
            stale = [aid for aid, t in deliveries.items() if t <= horizon]
            for aid in stale:
                del deliveries[aid]
        if st.messages:  # (only written while global caps are set)
            horizon = now - limits.global_window_ms - limits.retention_ms
            for aid in [aid for aid, t in st.messages.items() if t <= horizon]:
                del st.messages[aid]
        expired = [aid for aid, (exp, _) in st.records.items() if exp <= now]
        for aid in expired:
            del st.records[aid]


def _as_duplicate(v: Verdict) -> Verdict:
    return Verdict(v.status, v.reason, v.channel, v.send_at, v.fallback_from, v.coupon, v.payload, True)
