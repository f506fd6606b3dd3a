"""The fatigue ledger's state interface: :class:`LedgerStore` and the values it speaks.

A store keeps each user's delivery history (per channel, and across all message channels
for the global caps), cooldowns and recorded decisions, and does one check-and-record per
:class:`LedgerRequest` atomically per user (rules 1, 2 and 4–7 of
:mod:`intentstream.stream.decisions.fatigue`, which builds the requests). Backends:
:class:`intentstream.stream.state.memory.fatigue.MemoryLedgerStore` and
:class:`intentstream.stream.state.redis.fatigue.RedisLedgerStore` (one Lua script); both
pass one contract suite (``tests/stream/state/test_fatigue_contract.py``).

>>> Limits.from_settings().ttl_ms == 8 * DAY_MS
True
>>> Limits.from_settings().global_caps == ((DAY_MS, 2), (7 * DAY_MS, 5))
True
>>> Verdict("deferred", "quiet_hours", "push", send_at=HOUR_MS).is_delivery
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from intentstream.stream.settings import FatigueSettings, default_settings

SECOND_MS: Final = 1000
HOUR_MS: Final = 3600 * SECOND_MS
DAY_MS: Final = 24 * HOUR_MS

#: Values of :attr:`Verdict.coupon`.
#: The coupon cap counts under this pseudo-channel, beside the real ones.
COUPON_CHANNEL: Final = "coupon"
COUPON_GRANTED: Final = "granted"
COUPON_CAPPED: Final = "fatigue_cap"
COUPON_NOT_SENT: Final = "not_sent"

#: Reasons of the global caps (:func:`global_block`).
GLOBAL_CAP: Final = "global_cap"
PRIORITY: Final = "priority"
#: Reasons of a deferral: the quiet hours, or send-time optimisation moved the send time.
QUIET_HOURS: Final = "quiet_hours"
SEND_TIME: Final = "send_time"


@dataclass(frozen=True, slots=True)
class Limits:
    """The numbers the store enforces, in ms: ``[fatigue]`` of the settings
    (:meth:`from_settings`)."""

    window_ms: int
    channel_cap: int
    coupon_cap: int
    cooldown_ms: int
    retention_ms: int
    #: (window_ms, max) pairs across all message channels; empty: no global cap
    global_caps: tuple[tuple[int, int], ...]

    @property
    def global_window_ms(self) -> int:
        """The longest global window (0 without global caps)."""
        return max([w for w, _ in self.global_caps]) if self.global_caps else 0

    @property
    def ttl_ms(self) -> int:
        """How long delivery history and action records are kept (longest window + slack)."""
        return max(self.window_ms, self.cooldown_ms, self.global_window_ms) + self.retention_ms

    @classmethod
    def from_settings(cls, fs: FatigueSettings | None = None) -> Limits:
        """From ``[fatigue]`` settings (default: :func:`~intentstream.stream.settings.default_settings`)."""
        fs = fs or default_settings().fatigue
        pairs = []
        for pair in fs.global_caps:
            if len(pair) != 2 or pair[0] <= 0 or pair[1] < 0:
                raise ValueError(
                    f"[fatigue] global_caps must be [window_s, max] pairs with window_s > 0 and max >= 0, "
                    f"not {list(fs.global_caps)} (the environment cannot express pairs: use an override file)"
                )
            pairs.append((pair[0] * SECOND_MS, pair[1]))
        return cls(
            window_ms=fs.window_s * SECOND_MS,
            channel_cap=fs.channel_cap,
            coupon_cap=fs.coupon_cap,
            cooldown_ms=fs.cooldown_s * SECOND_MS,
            retention_ms=fs.retention_slack_s * SECOND_MS,
            global_caps=tuple(pairs),
        )


@dataclass(frozen=True, slots=True)
class LedgerRequest:
    """What a store needs for one atomic check-and-record (built by
    :class:`~intentstream.stream.decisions.fatigue.FatigueLedger`).

    ``options`` are the usable channels in preference order with their send times
    (opt-outs removed, quiet hours applied); ``payload`` is stored with the record and
    returned unchanged on duplicates; ``reserve_due``, when set, is the earliest deadline
    of a pending journey of a higher-priority trigger: the message must leave one slot
    free in every global window that could hold both (see :func:`global_block`).
    """

    action_id: str
    user_id: str
    trigger: str
    now: int
    options: tuple[tuple[str, int], ...]
    first_choice: str | None
    holdout: bool = False
    coupon: bool = False
    payload: bytes = b""
    reserve_due: int | None = None
    #: the channels whose send time send-time optimisation moved: a deferral on one of
    #: them has reason :data:`SEND_TIME`, on the others :data:`QUIET_HOURS`
    scheduled: tuple[str, ...] = ()

    def defer_reason(self, channel: str) -> str:
        return SEND_TIME if channel in self.scheduled else QUIET_HOURS


@dataclass(frozen=True, slots=True)
class Verdict:
    """The ledger's answer. ``duplicate`` is True when the action_id was already recorded
    (then every other field is the original record's)."""

    status: str
    reason: str | None
    channel: str | None = None
    send_at: int | None = None
    fallback_from: str | None = None
    coupon: str | None = None
    payload: bytes = b""
    duplicate: bool = False

    @property
    def is_delivery(self) -> bool:
        return self.status in ("sent", "deferred")


@runtime_checkable
class LedgerStore(Protocol):
    """Per-user ledger state with an atomic check-and-record (rules 1, 2, 4–7)."""

    def apply(self, req: LedgerRequest, limits: Limits) -> Verdict:
        """Check ``req`` against the user's state and record the outcome, atomically."""
        ...

    def apply_many(self, reqs: Sequence[LedgerRequest], limits: Limits) -> list[Verdict]:
        """:meth:`apply` for several requests, in order (one round trip where possible)."""
        ...


def window_fits(times: Iterable[int], t: int, window_ms: int, cap: int) -> bool:
    """Whether one more delivery at ``t`` keeps every rolling window within ``cap`` (the
    cap rule every store implements; the Redis script has the same loop in Lua).

    A window is ``(e - window_ms, e]``; every window that contains ``t`` is checked, so a
    late candidate cannot squeeze in before deliveries already scheduled after it.

    >>> window_fits([0, 1, 2], 7 * DAY_MS - 1, 7 * DAY_MS, 3)
    False
    >>> window_fits([0, 1, 2], 7 * DAY_MS, 7 * DAY_MS, 3)   # exactly one window after 0
    True
    >>> window_fits([5, 6, 7], 0, 7 * DAY_MS, 3)             # late: 5..7 are already booked
    False
    """
    return cap > 0 and window_load(times, t, window_ms) < cap


def window_load(times: Iterable[int], t: int, window_ms: int) -> int:
    """The most deliveries already in one rolling window ``(e - window_ms, e]`` that
    contains ``t``: what :func:`window_fits` compares with the cap (and what
    ``intentstream explain`` shows as ``used/cap``).

    >>> window_load([0, 1, 2], 7 * DAY_MS - 1, 7 * DAY_MS), window_load([5, 6, 7], 0, 7 * DAY_MS)
    (3, 3)
    """
    near = [x for x in times if t - window_ms < x < t + window_ms]
    return max([sum(1 for x in near if end - window_ms < x <= end) for end in [t, *(x for x in near if x > t)]])


def global_block(times: Iterable[int], t: int, caps: Iterable[tuple[int, int]], reserve_due: int | None = None) -> str | None:
    """Why one more message at ``t`` may not go, given the user's message send times
    across all channels: :data:`GLOBAL_CAP` if it breaks a global cap; :data:`PRIORITY`
    if it fits but would take the last free slot of a window of length ``w`` while a
    higher-priority journey due at ``reserve_due`` is pending and ``reserve_due < t + w``
    (its message, at its deadline or later, could fall in one window with this one);
    ``None`` when it may go. Same rule in the Redis script.

    >>> caps = ((DAY_MS, 2), (7 * DAY_MS, 5))
    >>> global_block([0], HOUR_MS, caps), global_block([0], HOUR_MS, caps, reserve_due=2 * HOUR_MS)
    (None, 'priority')
    >>> global_block([0], HOUR_MS, caps, reserve_due=DAY_MS + HOUR_MS)  # due after this 24 h
    >>> global_block([0, 1], HOUR_MS, caps), global_block([0, 1], DAY_MS + 1, caps)
    ('global_cap', None)
    >>> global_block([i * DAY_MS for i in range(5)], 6 * DAY_MS, caps)   # 5 in 7 days
    'global_cap'
    """
    times = list(times)
    caps = tuple(caps)
    if not all(window_fits(times, t, w, cap) for w, cap in caps):
        return GLOBAL_CAP
    if reserve_due is not None and not all(
        window_fits(times, t, w, cap - 1) for w, cap in caps if reserve_due < t + w
    ):
        return PRIORITY
    return None
