"""The long-lived user profile: statuses, lifecycle, activity and RFM inputs across sessions.

:func:`apply` folds one event into a :class:`UserProfile` (deterministic, no I/O, no
clock; it mutates in place because it runs for every event — :func:`updated` is the
copying variant). Order-robust by design: statuses change only for events at least as
new (event time) as the event that set them, so a late or reordered event never rolls a
status back; counts and sums are order-independent.

Rules
-----
============== =========================================================================
field          rule
============== =========================================================================
kyc_status     not_started; kyc_start/kyc_submit -> in_progress (except from completed:
               an approved user stays approved); kyc_approved -> completed;
               kyc_rejected -> rejected (kyc_start after it: in_progress again).
tx_status      status of the latest payment attempt: not_started; checkout_start/
               payment_submit -> in_progress; payment_success -> completed;
               payment_fail -> failed.
tx_count etc.  payment_success events: count, summed amount, last purchase time (RFM).
opt_outs       message channels from ``unsubscribe`` (props.channel); without a channel
               it covers every channel in :data:`intentstream.stream.contract.events.MESSAGE_CHANNELS`.
tz             the ``tz`` of the user's newest event that had one; else the default.
active days    local calendar days (user's tz) with events: the newest day, a bitmap of
               the 32 days up to it (bit i = newest day - i) and a running count of
               distinct days (days older than the bitmap that arrive late are not
               counted: the count can only be low, by late events more than 31 days old).
active hours   the local hour (user's tz) of each of the user's latest
               :data:`ACTIVE_HOURS_KEPT` active clock hours, oldest first (an hour is
               recorded by the first event in it; an event older than the newest
               recorded hour adds nothing): what send-time optimisation reads
               (:func:`likely_hours`). Bounded: one letter per hour.
lifecycle      :meth:`UserProfile.lifecycle_stage` at a time ``at``: decline if silent
               for ``lifecycle_decline_after_days`` before ``at``; else by age since
               first seen: introduction < ``lifecycle_growth_after_days`` <= growth <
               ``lifecycle_maturity_after_days`` <= maturity (maturity also after 3 years).
============== =========================================================================

>>> p = UserProfile()
>>> for ts, typ in [(0, "kyc_start"), (5, "kyc_approved"), (3, "kyc_submit")]:  # the submit arrives late
...     apply(p, (ts + 1767607200000, "e", typ, None, None, None, "Asia/Shanghai", None))
>>> p.kyc, p.tz, p.active_days(7, p.day_last)
('completed', 'Asia/Shanghai', 1)
>>> p.lifecycle_stage(1767607200000 + 100 * 86_400_000, LifecycleRules.from_settings())
'decline'
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from intentstream.stream.contract.events import MESSAGE_CHANNELS, zone
from intentstream.stream.settings import SessionSettings, default_settings
from intentstream.stream.sessions.segments import AMOUNT, KYC_STATUSES, MSG_CHANNEL, TRANSACTION_STATUSES, TS, TYPE, TZ, type_info

DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
BITMAP_DAYS: Final = 32
#: Active hours remembered per user (the last N clock hours with events): enough for a
#: rhythm over a couple of weeks of typical use, 16 bytes in the stored profile.
ACTIVE_HOURS_KEPT: Final = 16
_CHANNEL_BITS: Final = {c: 1 << i for i, c in enumerate(sorted(MESSAGE_CHANNELS))}
_ALL_CHANNELS: Final = (1 << len(_CHANNEL_BITS)) - 1
_KYC_CODE: Final = {s: i for i, s in enumerate(KYC_STATUSES)}
_TX_CODE: Final = {s: i for i, s in enumerate(TRANSACTION_STATUSES)}

# type -> new kyc status / new transaction status
_KYC_EVENTS: Final = {"kyc_start": "in_progress", "kyc_submit": "in_progress", "kyc_approved": "completed", "kyc_rejected": "rejected"}
_TX_EVENTS: Final = {"checkout_start": "in_progress", "payment_submit": "in_progress", "payment_success": "completed", "payment_fail": "failed"}


@dataclass(frozen=True)
class LifecycleRules:
    """Lifecycle thresholds in days (``[sessions] lifecycle_*``; defaults in config/default.toml)."""

    growth_after_days: int
    maturity_after_days: int
    decline_after_days: int

    @classmethod
    def from_settings(cls, s: SessionSettings | None = None) -> LifecycleRules:
        """From ``[sessions]`` (default: the defaults file's)."""
        s = s or default_settings().sessions
        return cls(s.lifecycle_growth_after_days, s.lifecycle_maturity_after_days, s.lifecycle_decline_after_days)


_offsets: dict[tuple[str, int], int] = {}


def local_day(tz: str | None, ts_ms: int) -> int:
    """Day number (days since 1970-01-01) of ``ts_ms`` in time zone ``tz`` (None = UTC).

    Offsets are cached per zone and quarter hour, so this costs a dict lookup per event.

    >>> local_day("Asia/Shanghai", 1767628800000) - local_day(None, 1767628800000)  # 16:00Z is next day in +08
    1
    """
    if tz is None or tz == "UTC":
        return ts_ms // DAY_MS
    key = (tz, ts_ms // 900_000)
    off = _offsets.get(key)
    if off is None:
        if len(_offsets) > 100_000:
            _offsets.clear()
        delta = datetime.fromtimestamp(ts_ms // 1000, tz=timezone.utc).astimezone(zone(tz)).utcoffset()
        off = _offsets[key] = int(delta.total_seconds()) * 1000 if delta else 0
    return (ts_ms + off) // DAY_MS


class UserProfile:
    """What the product knows about a user across sessions (times in epoch ms, -1 = never)."""

    __slots__ = (
        "first_seen_ms", "last_event_ms", "day_last", "day_bits", "days_total",
        "kyc", "kyc_ts", "tx", "tx_ts", "tx_count", "tx_amount", "last_purchase_ms",
        "opt_out_bits", "tz", "tz_ts", "hour_next", "hours", "_dlo", "_dhi",
    )  # fmt: skip

    def __init__(self) -> None:
        self.first_seen_ms = self.last_event_ms = self.last_purchase_ms = -1
        self.day_last = -1
        self.day_bits = self.days_total = self.tx_count = self.opt_out_bits = 0
        self.kyc = self.tx = "not_started"
        self.kyc_ts = self.tx_ts = self.tz_ts = -1
        self.tx_amount = 0.0
        self.tz: str | None = None
        self.hour_next = 0  # start of the clock hour after the newest recorded active hour
        self.hours = ""  # local hours of the latest active hours, one letter each ("a" = 00h)
        self._dlo = self._dhi = 0  # bounds of day_last in tz (not stored; 0, 0 = unknown)

    @property
    def opt_outs(self) -> frozenset[str]:
        """Message channels the user unsubscribed from."""
        return frozenset(c for c, b in _CHANNEL_BITS.items() if self.opt_out_bits & b)

    def tz_or(self, default: str) -> str:
        return self.tz or default

    def active_days(self, last_n: int, today: int) -> int:
        """Distinct active days among the ``last_n`` (<= 32) days up to day number ``today``."""
        if self.day_last < 0:
            return 0
        shift = today - self.day_last
        if shift < 0:
            raise ValueError("today is before the newest active day")
        n = 0
        for i in range(max(0, shift), min(last_n, BITMAP_DAYS + shift)):
            if self.day_bits >> (i - shift) & 1:
                n += 1
        return n

    def lifecycle_stage(self, at_ms: int, rules: LifecycleRules) -> str:
        """Lifecycle stage at ``at_ms`` (see the module table); a new user is introduction."""
        if self.last_event_ms >= 0 and at_ms - self.last_event_ms > rules.decline_after_days * DAY_MS:
            return "decline"
        age = at_ms - self.first_seen_ms if self.first_seen_ms >= 0 else 0
        if age < rules.growth_after_days * DAY_MS:
            return "introduction"
        return "growth" if age < rules.maturity_after_days * DAY_MS else "maturity"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserProfile) and self.dump() == other.dump()

    def __repr__(self) -> str:
        return f"UserProfile(kyc={self.kyc!r}, tx={self.tx!r}, tx_count={self.tx_count}, last_event_ms={self.last_event_ms})"

    def dump(self) -> list[Any]:
        return [
            self.first_seen_ms, self.last_event_ms, self.day_last, self.day_bits, self.days_total,
            _KYC_CODE[self.kyc], self.kyc_ts, _TX_CODE[self.tx], self.tx_ts,
            self.tx_count, self.tx_amount, self.last_purchase_ms, self.opt_out_bits, self.tz, self.tz_ts,
            *((self.hour_next // HOUR_MS, self.hours) if self.hours else ()),
        ]  # fmt: skip

    @classmethod
    def load(cls, a: list[Any]) -> UserProfile:
        p = cls.__new__(cls)
        (p.first_seen_ms, p.last_event_ms, p.day_last, p.day_bits, p.days_total, k, p.kyc_ts, t, p.tx_ts,
         p.tx_count, p.tx_amount, p.last_purchase_ms, p.opt_out_bits, p.tz, p.tz_ts) = a[:15]  # fmt: skip
        p.hour_next, p.hours = (a[15] * HOUR_MS, a[16]) if len(a) > 15 else (0, "")
        p.kyc, p.tx = KYC_STATUSES[k], TRANSACTION_STATUSES[t]
        p._dlo = p._dhi = 0
        return p


def apply(p: UserProfile, ev: tuple) -> None:
    """Fold one event tuple (see :mod:`intentstream.stream.sessions.segments`) into ``p``, in place."""
    ts = ev[TS]
    tz = ev[TZ] if len(ev) > TZ else None
    if tz is not None and ts >= p.tz_ts:
        set_tz(p, tz, ts)
    info = type_info(ev[TYPE])
    apply_fields(p, ts, info[0], info[4], ev[AMOUNT] if len(ev) > AMOUNT else None, ev[MSG_CHANNEL] if len(ev) > MSG_CHANNEL else None)


def note_opt_out(p: UserProfile, channel: str | None) -> None:
    """An unsubscribe (from ``channel``, or every channel), applied on arrival rather than
    in event-time order: an opt-out only ever grows, so the order does not matter, and a
    decision made before the event is released must already honour it."""
    p.opt_out_bits |= _CHANNEL_BITS.get(channel, 0) if channel else _ALL_CHANNELS


def set_tz(p: UserProfile, tz: str, ts: int) -> None:
    """The tz of the user's newest event with one (caller checked ``ts >= p.tz_ts``)."""
    if tz != p.tz:
        p.tz = tz
        p._dlo = p._dhi = 0
    p.tz_ts = ts


def apply_fields(p: UserProfile, ts: int, typ: str, kind: int, amt: float | None, mch: str | None) -> None:
    """:func:`apply` on unpacked fields (the sessionizer's hot path); ``kind`` is the
    profile kind of the type (:func:`intentstream.stream.sessions.segments.type_info`, index 4)."""
    if ts > p.last_event_ms:
        p.last_event_ms = ts
        if p.first_seen_ms < 0:
            p.first_seen_ms = ts
    elif ts < p.first_seen_ms:
        p.first_seen_ms = ts
    if not p._dlo <= ts < p._dhi:
        _mark_day(p, ts)
    if ts >= p.hour_next:
        _mark_hour(p, ts)
    if not kind:
        return
    if kind == 1:
        new = _KYC_EVENTS[typ]
        if ts >= p.kyc_ts and not (new == "in_progress" and p.kyc == "completed"):
            p.kyc, p.kyc_ts = new, ts
    elif kind == 2:
        if ts >= p.tx_ts:
            p.tx, p.tx_ts = _TX_EVENTS[typ], ts
        if typ == "payment_success":
            p.tx_count += 1
            p.tx_amount = round(p.tx_amount + (amt or 0.0), 2)
            if ts > p.last_purchase_ms:
                p.last_purchase_ms = ts
    else:  # unsubscribe
        p.opt_out_bits |= _CHANNEL_BITS.get(mch, 0) if mch else _ALL_CHANNELS


def updated(p: UserProfile, ev: tuple) -> UserProfile:
    """Pure variant of :func:`apply`: a new profile, ``p`` untouched."""
    q = copy.copy(p)
    apply(q, ev)
    return q


def likely_hours(hours: str, min_seen: int = 2) -> frozenset[int]:
    """Local hours (0-23) seen at least ``min_seen`` times among ``hours``
    (:attr:`UserProfile.hours`, one letter per active clock hour): when the user is
    likely to be around.

    >>> sorted(likely_hours("jjkuuuc")), sorted(likely_hours("jjkuuuc", 3))
    ([9, 20], [20])
    """
    return frozenset(ord(c) - 97 for c in set(hours) if hours.count(c) >= min_seen)


def _mark_hour(p: UserProfile, ts: int) -> None:
    """The first event of a new clock hour: record its local hour (oldest dropped)."""
    p.hour_next = (ts // HOUR_MS + 1) * HOUR_MS
    hour = (ts - local_day(p.tz, ts) * DAY_MS + _offset(p.tz, ts)) // HOUR_MS
    p.hours = (p.hours + chr(97 + hour))[-ACTIVE_HOURS_KEPT:]


def _offset(tz: str | None, ts_ms: int) -> int:
    """UTC offset of ``tz`` at ``ts_ms`` in ms (cached like :func:`local_day`)."""
    if tz is None or tz == "UTC":
        return 0
    local_day(tz, ts_ms)  # fills the cache
    return _offsets[(tz, ts_ms // 900_000)]


def _mark_day(p: UserProfile, ts: int) -> None:
    tz = p.tz
    day = local_day(tz, ts)
    if day == p.day_last or p.day_last < 0 or day > p.day_last:  # cache the newest day's bounds
        lo, hi = day_bounds(tz, day)
        if lo <= ts < hi and local_day(tz, lo) == day == local_day(tz, hi - 1):
            p._dlo, p._dhi = lo, hi
        else:  # a zone whose midnight is skipped by DST: no cache for this day
            p._dlo = p._dhi = 0
    last = p.day_last
    if day == last:
        return
    if day > last:
        shift = day - last
        p.day_bits = ((p.day_bits << shift) | 1) & ((1 << BITMAP_DAYS) - 1) if last >= 0 and shift < BITMAP_DAYS else 1
        p.day_last = day
        p.days_total += 1
    else:
        back = last - day
        if back < BITMAP_DAYS and not p.day_bits >> back & 1:
            p.day_bits |= 1 << back
            p.days_total += 1


def day_bounds(tz: str | None, day: int) -> tuple[int, int]:
    """[start, end) in epoch ms of local day number ``day`` in ``tz`` (exact across DST).

    >>> day_bounds("Asia/Shanghai", 20458)
    (1767542400000, 1767628800000)
    """
    if tz is None or tz == "UTC":
        return day * DAY_MS, (day + 1) * DAY_MS
    z = zone(tz)
    bounds = []
    for d in (day, day + 1):
        midnight = datetime.fromtimestamp(d * 86400, tz=timezone.utc).replace(tzinfo=z)
        bounds.append(int(midnight.timestamp()) * 1000)
    return bounds[0], bounds[1]
