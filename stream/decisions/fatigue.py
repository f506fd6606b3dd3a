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
5. **Holdout** — users whose stable hash of (the trigger's experiment, user_id) falls in
   its holdout share (:class:`HoldoutDesign`) get ``holdout``/``holdout`` with the channel they would have had. Holdout
   decisions are recorded (idempotency) and start the trigger's cooldown, so a holdout
   user's records are as frequent as a treated user's messages, but they never count
   against channel or coupon caps.
6. **Coupon** — a strategy's coupon is attached to its message, not a separate decision:
   the ``coupon`` pseudo-channel has its own cap (``coupon_cap`` per window, counted at the
   message's send time). Capped: the message still goes, without the coupon
   (``coupon="fatigue_cap"``); a message that does not go carries none (``"not_sent"``).

Steps 1–2 and 4–6 read and write the per-user state through a
:class:`~intentstream.stream.state.fatigue.LedgerStore` (the protocol, with the values it
speaks: :class:`~intentstream.stream.state.fatigue.LedgerRequest`,
:class:`~intentstream.stream.state.fatigue.Verdict`, :class:`~intentstream.stream.state.fatigue.Limits`
and the cap rule :func:`~intentstream.stream.state.fatigue.window_fits`), which does them
atomically per user: ``intentstream.stream.state.memory.fatigue.MemoryLedgerStore`` offline and
``intentstream.stream.state.redis.fatigue.RedisLedgerStore`` (one Lua script) for the live engine.
Both give identical verdicts (``tests/stream/state/test_fatigue_contract.py``).

>>> from intentstream.stream.settings import FatigueSettings
>>> from intentstream.stream.state.memory.fatigue import MemoryLedgerStore
>>> ledger = FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=0.0))
>>> noon = 1767614400000  # 2026-01-05T12:00Z
>>> def cand(aid, ts):
...     return Candidate(aid, "u1", "cart_abandoned", ts, ("push", "email"), tz="UTC")
>>> [ledger.check(cand(f"a{i}", noon + i * DAY_MS)).channel for i in range(5)]
['push', 'push', 'push', 'email', 'email']
>>> v = ledger.check(cand("late", noon + 4 * DAY_MS + HOUR_MS))  # an hour after a4
>>> v.status, v.reason, v.channel
('suppressed', 'cooldown', None)
>>> ledger.check(cand("a0", noon)).duplicate                 # redelivery: no-op
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from intentstream.stream.contract.events import zone
from intentstream.stream.settings import FatigueSettings, Settings, default_settings
from intentstream.stream.state.fatigue import DAY_MS, HOUR_MS, SECOND_MS, LedgerRequest, LedgerStore, Limits, Verdict


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
    strategy attaches a coupon.
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


# --------------------------------------------------------------------------- the ledger


class FatigueLedger:
    """The fatigue policy over a :class:`LedgerStore`.

    The policy's pure half (opt-outs, quiet hours, holdout assignment) runs here, in
    Python — Lua has no time-zone data; the stateful half (idempotency, cooldown, caps,
    fallback, coupon) runs in the store, atomically per user.

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

    def __init__(self, store: LedgerStore, config: FatigueSettings | None = None, *, default_tz: str | None = None) -> None:
        """``config``: the ``[fatigue]`` settings; ``default_tz``: ``[events] default_tz``
        (both default: :func:`~intentstream.stream.settings.default_settings`)."""
        fs = config or default_settings().fatigue
        self.store = store
        self.limits = Limits.from_settings(fs)
        self.quiet = QuietHours.from_settings(fs)
        self.holdout = HoldoutDesign.from_settings(fs)
        self.experiment = fs.holdout_experiment
        self.default_tz = default_settings().events.default_tz if default_tz is None else default_tz

    @classmethod
    def from_settings(cls, settings: Settings, store: LedgerStore) -> FatigueLedger:
        return cls(store, settings.fatigue, default_tz=settings.events.default_tz)

    def request(self, c: Candidate, payload: bytes = b"") -> LedgerRequest:
        """The pure half of the policy: what the store is asked to check."""
        tz = c.tz or self.default_tz
        options = tuple(
            (ch, self.quiet.send_time(ch, c.decided_at, tz)) for ch in c.channels if ch not in c.opt_outs
        )
        return LedgerRequest(
            action_id=c.action_id,
            user_id=c.user_id,
            trigger=c.trigger,
            now=c.decided_at,
            options=options,
            first_choice=c.channels[0] if c.channels else None,
            holdout=self.holdout.assign(c.user_id, c.trigger, c.experiment)[1],
            coupon=c.coupon,
            payload=payload,
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
