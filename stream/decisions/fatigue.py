"""The fatigue ledger: may this message go to this user now, on which channel, and when?

Rules, in the order they apply to a :class:`Candidate` (all times are event times in epoch
ms handed in by the caller; nothing here reads a clock):

1. **Idempotency** — an ``action_id`` already recorded returns the recorded verdict
   (``duplicate=True``) and changes nothing: a redelivered event never sends twice.
2. **Cooldown** — the same trigger reached the user less than ``cooldown`` ago (or the
   candidate is older than that latest decision): ``suppressed``/``cooldown``.
3. **Opt-out** — channels the user unsubscribed from are removed; nothing left:
   ``suppressed``/``opt_out``.
4. **Channels in order** — each channel's send time is the decision time, or for
   ``quiet_channels`` (push, sms) inside the user's local quiet hours, the next local
   ``quiet_end`` (DST-correct, :class:`QuietHours`). The first channel whose cap still
   holds *at its send time* wins: at most ``channel_cap`` deliveries in any rolling
   window of ``window`` ms (two deliveries exactly one window apart do not share one).
   None fits: ``suppressed``/``fatigue_cap``. A later send time means ``deferred``/
   ``quiet_hours`` with ``send_at``; a channel other than the strategy's first choice sets
   ``fallback_from``.
5. **Global caps and priority** — across every message channel together (the coupon
   pseudo-channel is not a message), at most ``max`` deliveries in any rolling window of
   each ``[fatigue] global_caps`` pair (default 2 per 24 h and 5 per 7 days), checked at
   the chosen channel's send time with the same window rule as the channel caps. A
   message that does not fit: ``suppressed``/``global_cap`` — no fallback, the cap is
   across channels. **Priority** (``[fatigue] trigger_priority``, :class:`TriggerPriority`):
   a message may not take the *last* free slot of a global window while the same user
   has a pending journey of a higher-priority trigger — an armed, not stale trigger timer
   (``Candidate.pending``: trigger → deadline, filled by the engine from the user's
   trigger state) — whose message could fall in that window too: its deadline (the
   earliest send time it can have) is before this send time + the window's length.
   Then ``suppressed``/``priority``. So a churn timer due in 6 days keeps the last slot of
   the 7-day window, not of the 24-hour one; a cart timer due in 30 minutes keeps both.
   Otherwise the first decided message takes a free slot (nothing is held back for a
   journey that is not pending). The rule depends only on the user's state at decision
   time, which replay and live share. Triggers the engine fires in one step are decided
   in deadline order and do not count as pending for each other. Like the channel caps,
   both checks run before the holdout split, so both arms are filtered alike; neither
   starts the cooldown.
6. **Holdout** — users whose stable hash of (the trigger's experiment, user_id) falls in
   its holdout share (:class:`HoldoutDesign`) get ``holdout``/``holdout`` with the channel they would have had. Holdout
   decisions are recorded (idempotency) and start the trigger's cooldown, so a holdout
   user's records are as frequent as a treated user's messages, but they never count
   against channel, global or coupon caps.
7. **Coupon** — a strategy's coupon is attached to its message, not a separate decision:
   the ``coupon`` pseudo-channel has its own cap (``coupon_cap`` per window, counted at the
   message's send time). Capped: the message still goes, without the coupon
   (``coupon="fatigue_cap"``); a message that does not go carries none (``"not_sent"``).

Steps 1–2 and 4–7 read and write the per-user state through a
:class:`~intentstream.stream.state.fatigue.LedgerStore` (the protocol, with the values it
speaks: :class:`~intentstream.stream.state.fatigue.LedgerRequest`,
:class:`~intentstream.stream.state.fatigue.Verdict`, :class:`~intentstream.stream.state.fatigue.Limits`
and the cap rules :func:`~intentstream.stream.state.fatigue.window_fits` and
:func:`~intentstream.stream.state.fatigue.global_block`), which does them
atomically per user: ``intentstream.stream.state.memory.fatigue.MemoryLedgerStore`` offline and
``intentstream.stream.state.redis.fatigue.RedisLedgerStore`` (one Lua script) for the live engine.
Both give identical verdicts (``tests/stream/state/test_fatigue_contract.py``).

>>> from intentstream.stream.settings import FatigueSettings
>>> from intentstream.stream.state.memory.fatigue import MemoryLedgerStore
>>> ledger = FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=0.0))
>>> noon = 1767614400000  # 2026-01-05T12:00Z
>>> def cand(aid, ts, trigger="cart_abandoned", pending={}):
...     return Candidate(aid, "u1", trigger, ts, ("push", "email"), tz="UTC", pending=pending)
>>> [ledger.check(cand(f"a{i}", noon + i * DAY_MS)).channel for i in range(5)]
['push', 'push', 'push', 'email', 'email']
>>> v = ledger.check(cand("late", noon + 4 * DAY_MS + HOUR_MS))  # an hour after a4
>>> v.status, v.reason, v.channel
('suppressed', 'cooldown', None)
>>> ledger.check(cand("a0", noon)).duplicate                 # redelivery: no-op
True
>>> ledger.check(cand("b", noon + 5 * DAY_MS, "churn_risk")).reason  # a0..a4: 5 in 7 days
'global_cap'
>>> ledger.check(cand("c", noon + 7 * DAY_MS, "churn_risk")).status  # a0 is a week old
'sent'
>>> # a day later a2, a3, a4, c leave one slot of 5: not for a lower-priority trigger
>>> # while the user's cart journey is pending (due in 30 min), first come otherwise
>>> ledger.check(cand("d", noon + 8 * DAY_MS, "coupon_interest", {"cart_abandoned": noon + 8 * DAY_MS + 30 * 60_000})).reason
'priority'
>>> ledger.check(cand("e", noon + 8 * DAY_MS, "coupon_interest")).status
'sent'
>>> ledger.check(cand("f", noon + 8 * DAY_MS + HOUR_MS, "payment_stalled")).reason  # full again
'global_cap'
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from intentstream.stream.contract.events import zone
from intentstream.stream.decisions.send_time import SendTimeRule
from intentstream.stream.settings import FatigueSettings, Settings, default_settings
# DAY_MS and HOUR_MS: for the docstring examples (they run in this module's namespace)
from intentstream.stream.state.fatigue import (
    DAY_MS, HOUR_MS, SECOND_MS, LedgerRequest, LedgerStore, Limits, Verdict,  # noqa: F401
)  # fmt: skip


# --------------------------------------------------------------------------- inputs


def _parse_hhmm(text: str) -> time:
    hh, _, mm = text.strip().partition(":")
    try:
        return time(int(hh), int(mm or 0))
    except ValueError as exc:
        raise ValueError(f"bad HH:MM time {text!r}") from exc


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local quiet hours ``[start, end)`` (may wrap midnight) for some channels.

    >>> q = QuietHours.from_settings()  # 22:00-08:00 for push and sms
    >>> ny = "America/New_York"
    >>> from intentstream.stream.contract.events import format_ts, parse_ts
    >>> format_ts(q.next_allowed(parse_ts("2026-03-07T23:30:00-05:00"), ny))  # spring forward
    '2026-03-08T12:00:00.000Z'
    >>> format_ts(q.send_time("email", parse_ts("2026-03-07T23:30:00-05:00"), ny))
    '2026-03-08T04:30:00.000Z'
    """

    start: time
    end: time
    channels: frozenset[str]

    @classmethod
    def from_settings(cls, fs: FatigueSettings | None = None) -> QuietHours:
        """From ``[fatigue] quiet_*`` (default: :func:`~intentstream.stream.settings.default_settings`)."""
        fs = fs or default_settings().fatigue
        return cls(_parse_hhmm(fs.quiet_start), _parse_hhmm(fs.quiet_end), frozenset(fs.quiet_channels))

    def is_quiet(self, local: time) -> bool:
        """Whether a local wall-clock time falls in the quiet hours."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, ts_ms: int, tz: str) -> int:
        """``ts_ms`` if it is outside the quiet hours in ``tz``, else the next local ``end``.

        The local ``end`` is resolved with :mod:`zoneinfo` on the right calendar day, so the
        UTC result moves with DST. An ``end`` that does not exist that day (a DST gap)
        resolves to the wall time just after the gap.
        """
        z = zone(tz)
        local = datetime.fromtimestamp(ts_ms // SECOND_MS, z).replace(microsecond=(ts_ms % SECOND_MS) * 1000)
        wall = local.time().replace(tzinfo=None)
        if not self.is_quiet(wall):
            return ts_ms
        day = local.date() if wall < self.end else local.date() + timedelta(days=1)
        target = datetime.combine(day, self.end, tzinfo=z)
        return round(target.timestamp()) * SECOND_MS

    def send_time(self, channel: str, ts_ms: int, tz: str) -> int:
        """When a message on ``channel`` decided at ``ts_ms`` may leave."""
        return self.next_allowed(ts_ms, tz) if channel in self.channels else ts_ms


def in_holdout(user_id: str, experiment: str, share: float) -> bool:
    """Whether the user is in the experiment's holdout group (stable across processes).

    BLAKE2b of ``experiment NUL user_id`` (never Python's randomised ``hash()``), read
    as a fraction of 2**64 and compared with ``share``.

    >>> sum(in_holdout(f"u{i}", "exp", 0.05) for i in range(20000))
    955
    >>> in_holdout("u1", "exp", 0.0), in_holdout("u1", "exp", 1.0)
    (False, True)
    """
    if share <= 0:
        return False
    digest = hashlib.blake2b(f"{experiment}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2.0**64


@dataclass(frozen=True, slots=True)
class TriggerPriority:
    """``[fatigue] trigger_priority``: triggers, highest priority first; a trigger not
    listed ranks below every listed one.

    :meth:`reserve_due` is the earliest deadline of the *pending* triggers (armed journey
    timers of the same user, trigger → deadline) that rank strictly above ``trigger``, or
    None: the ledger keeps the last free slot of every global window that deadline could
    share with the message (:func:`~intentstream.stream.state.fatigue.global_block`).

    >>> p = TriggerPriority.from_settings()
    >>> p.rank("cart_abandoned"), p.rank("first_transaction_nudge"), p.rank("made_up")
    (0, 6, 7)
    >>> p.reserve_due("churn_risk", {"kyc_stalled": 50, "cart_abandoned": 70, "coupon_interest": 10})
    50
    >>> p.reserve_due("kyc_stalled", {"churn_risk": 10}), p.reserve_due("cart_abandoned", {"cart_abandoned": 10})
    (None, None)
    """

    order: tuple[str, ...]

    def __post_init__(self) -> None:
        dup = sorted({t for t in self.order if self.order.count(t) > 1})
        if dup:
            raise ValueError(f"[fatigue] trigger_priority lists {dup} more than once")

    @classmethod
    def from_settings(cls, fs: FatigueSettings | None = None) -> TriggerPriority:
        fs = fs or default_settings().fatigue
        return cls(tuple(fs.trigger_priority))

    def rank(self, trigger: str) -> int:
        """0 for the highest priority; ``len(order)`` for triggers not listed."""
        return self.order.index(trigger) if trigger in self.order else len(self.order)

    def reserve_due(self, trigger: str, pending: Mapping[str, int]) -> int | None:
        rank = self.rank(trigger)
        return min((due for p, due in pending.items() if self.rank(p) < rank), default=None)


@dataclass(frozen=True, slots=True)
class HoldoutDesign:
    """One experiment and one control group per trigger: ``<experiment>/<trigger>``,
    holding out ``shares[trigger]`` (else ``share``) of the users.

    Why the assignment is stable across restarts and replays: it is a pure function of
    (experiment id, user_id, share) — a BLAKE2b hash compared with the share — and reads
    no state, no clock and no process randomness, so every worker, every restart and
    every offline replay computes the same arm. Raising a share only adds users (the
    threshold moves up); renaming the experiment reshuffles every group.

    >>> d = HoldoutDesign("holdout-v2", 0.05, {"churn_risk": 0.5})
    >>> d.experiment_id("churn_risk"), d.share_of("churn_risk"), d.share_of("cart_abandoned")
    ('holdout-v2/churn_risk', 0.5, 0.05)
    >>> sum(d.assign(f"u{i}", "churn_risk")[1] for i in range(2000)), sum(d.assign(f"u{i}", "cart_abandoned")[1] for i in range(2000))
    (990, 107)
    """

    experiment: str
    share: float
    shares: Mapping[str, float]

    def __post_init__(self) -> None:
        for trigger, s in {"*": self.share, **self.shares}.items():
            if not 0.0 <= s <= 1.0:
                raise ValueError(f"holdout share of {trigger} must be within [0, 1], not {s}")

    @classmethod
    def from_settings(cls, fs: FatigueSettings | None = None) -> HoldoutDesign:
        fs = fs or default_settings().fatigue
        return cls(fs.holdout_experiment, fs.holdout_share, dict(fs.holdout_shares))

    def experiment_id(self, trigger: str) -> str:
        return f"{self.experiment}/{trigger}"

    def share_of(self, trigger: str) -> float:
        return self.shares.get(trigger, self.share)

    def assign(self, user_id: str, trigger: str, experiment: str | None = None) -> tuple[str, bool]:
        """(experiment id, whether the user is held out of it); ``experiment`` overrides
        the trigger's experiment id."""
        eid = experiment or self.experiment_id(trigger)
        return eid, in_holdout(user_id, eid, self.share_of(trigger))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A message the engine would like to send.

    ``action_id`` identifies the trigger hit (:func:`intentstream.stream.decisions.contract.action_id`);
    ``channels`` is the strategy's channel order; ``tz`` the user's IANA zone (``None``:
    the ledger's default); ``opt_outs`` the channels the user unsubscribed from;
    ``experiment`` the holdout experiment (``None``: the ledger's); ``coupon`` whether the
    strategy attaches a coupon; ``pending`` the user's triggers whose journeys are pending
    (armed timers) with their deadlines (ms), for the priority rule.
    """

    action_id: str
    user_id: str
    trigger: str
    decided_at: int
    channels: tuple[str, ...]
    tz: str | None = None
    opt_outs: frozenset[str] = frozenset()
    experiment: str | None = None
    coupon: bool = False
    pending: Mapping[str, int] = field(default_factory=dict)
    #: the user's recent active hours (:attr:`~intentstream.stream.sessions.profiles.UserProfile.hours`),
    #: for send-time optimisation (:mod:`intentstream.stream.decisions.send_time`)
    active_hours: str = ""


# --------------------------------------------------------------------------- the ledger


class FatigueLedger:
    """The fatigue policy over a :class:`LedgerStore`.

    The policy's pure half (opt-outs, quiet hours, holdout assignment) runs here, in
    Python — Lua has no time-zone data — and so does the priority rule's ``reserve_due``; the
    stateful half (idempotency, cooldown, channel and global caps, fallback, coupon) runs
    in the store, atomically per user.

    >>> from intentstream.stream.settings import FatigueSettings
    >>> from intentstream.stream.state.memory.fatigue import MemoryLedgerStore
    >>> ledger = FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=0.0))
    >>> c = Candidate("a1", "u1", "kyc_stalled", 1767650400000, ("push", "email"),  # 22:00 UTC
    ...               tz="Asia/Shanghai", opt_outs=frozenset({"email"}))
    >>> ledger.request(c).options  # 06:00 in Shanghai: push waits until 08:00 local
    (('push', 1767657600000),)
    >>> v = ledger.check(c)
    >>> v.status, v.reason, v.channel, v.send_at
    ('deferred', 'quiet_hours', 'push', 1767657600000)
    """

    def __init__(
        self, store: LedgerStore, config: FatigueSettings | None = None, *, default_tz: str | None = None,
        send_time: SendTimeRule | None = None,
    ) -> None:  # fmt: skip
        """``config``: the ``[fatigue]`` settings; ``default_tz``: ``[events] default_tz``;
        ``send_time``: the ``[send_time]`` rule (all default:
        :func:`~intentstream.stream.settings.default_settings`)."""
        fs = config or default_settings().fatigue
        self.send_time = send_time or SendTimeRule.from_settings()
        self.store = store
        self.limits = Limits.from_settings(fs)
        self.quiet = QuietHours.from_settings(fs)
        self.holdout = HoldoutDesign.from_settings(fs)
        self.priority = TriggerPriority.from_settings(fs)
        self.experiment = fs.holdout_experiment
        self.default_tz = default_settings().events.default_tz if default_tz is None else default_tz

    @classmethod
    def from_settings(cls, settings: Settings, store: LedgerStore) -> FatigueLedger:
        return cls(store, settings.fatigue, default_tz=settings.events.default_tz, send_time=SendTimeRule.from_settings(settings.send_time))

    def request(self, c: Candidate, payload: bytes = b"") -> LedgerRequest:
        """The pure half of the policy: what the store is asked to check."""
        tz = c.tz or self.default_tz
        likely = self.send_time.likely(c.trigger, c.active_hours)
        options, scheduled = [], []
        for ch in c.channels:
            if ch in c.opt_outs:
                continue
            t = self.quiet.send_time(ch, c.decided_at, tz)
            if likely:  # the user's next likely hour outside the quiet hours, if soon enough
                for s in self.send_time.moments(c.decided_at, t, tz, likely):
                    if self.quiet.send_time(ch, s, tz) == s:
                        if s > t:
                            t = s
                            scheduled.append(ch)
                        break
            options.append((ch, t))
        return LedgerRequest(
            action_id=c.action_id,
            user_id=c.user_id,
            trigger=c.trigger,
            now=c.decided_at,
            options=tuple(options),
            first_choice=c.channels[0] if c.channels else None,
            holdout=self.holdout.assign(c.user_id, c.trigger, c.experiment)[1],
            coupon=c.coupon,
            payload=payload,
            reserve_due=self.priority.reserve_due(c.trigger, c.pending),
            scheduled=tuple(scheduled),
        )

    def check(self, c: Candidate, payload: bytes = b"") -> Verdict:
        """Decide and record one candidate."""
        return self.store.apply(self.request(c, payload), self.limits)

    def check_many(self, items: Iterable[Candidate | tuple[Candidate, bytes]]) -> list[Verdict]:
        """Decide and record several candidates in order (pipelined on Redis)."""
        reqs = [self.request(*it) if isinstance(it, tuple) else self.request(it) for it in items]
        return self.store.apply_many(reqs, self.limits)


def verdict_fields(v: Verdict) -> Mapping[str, object]:
    """A verdict as a plain dict without the payload (for comparisons and logs)."""
    return {
        "status": v.status,
        "reason": v.reason,
        "channel": v.channel,
        "send_at": v.send_at,
        "fallback_from": v.fallback_from,
        "coupon": v.coupon,
        "duplicate": v.duplicate,
    }
