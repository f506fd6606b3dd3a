"""Event-time sessionizer: per-user state, reorder buffer, dedup, sessions, late events.

Everything here is pure (no I/O, no clock) and knows nothing of triggers: functions
take a :class:`SessionState`, a buffered row (see :func:`buffered_row`), the horizon and a
:class:`SessionConfig`, update the state and return the closed
:class:`~intentstream.stream.sessions.segments.IntentSegment` objects. The caller — the
engine's :class:`~intentstream.stream.engine.timeline.UserTimeline` — decides *when*:
it releases rows in (ts, event_id) order and expires what the horizon closes
(:func:`next_expiry`, :func:`expire`) before each row and at the end.

Time
----
*Horizon* of a user: ``H = max(user's newest event time - allowed_lateness, partition
watermark)``. Nothing older than ``H`` can still be placed in order.

* An event with ``ts >= H`` goes into the user's **reorder buffer** (sorted by
  ``(ts, event_id)``); buffered events are **released** in that order once ``H > ts``.
  Release folds the event into the profile and the open session. Hence any arrival
  order within the lateness gives exactly the segments of the sorted input, and the
  result does not depend on how the input was cut into batches.
* An event with ``ts < H`` is **late** (counted). It is never dropped: it updates the
  profile (statuses are event-time guarded, so it cannot roll one back) and, if the
  user's open session started at or before it, is added to the open segment's counts
  (``interactions``, ``type_counts``, devices, channels, amount; its ``late`` field)
  without a vote or a time-range change. Otherwise it joins the user's *late run*, a
  segment of late events only, emitted with ``closed_by = "late_flush"`` once the horizon
  passes ``horizon at its first event + allowed_lateness`` (its session id is derived
  from its own first event, its ``seq`` is 0).
* **Sessions**: an event continues the open session iff ``ts - last <= gap`` and
  ``ts - start < max_length``; otherwise the session closes and the event opens a new
  one. A session also closes without a new event as soon as ``H > last + gap`` or
  ``H >= start + max_length`` (no future in-order event could continue it). Its
  ``closed_by`` is the threshold reached first: max_length if ``start + max_length <=
  last + gap + 1``, else inactivity — the same whichever way the close happens.
* **Dedup**: a per-user log of 48-bit event-id hashes with their event minute, at most
  ``dedup_max_ids`` entries (oldest arrival evicted first) and pruned from the oldest
  arrival while older than ``dedup_ttl_s`` of event time when stored. A duplicate is
  counted and ignored (buffered, released or late alike).
* **Time zone**: the profile's tz follows the newest event (by event time) that carried
  one, applied on arrival, so buffered events do not need to keep it.

Ids: ``session_id`` = 16 hex digits of blake2b(user_id, first event's ts, its event_id);
``segment_id`` = ``<session_id>:<seq>``. Same input, same ids.

>>> cfg, st, out = SessionConfig.from_settings(), SessionState("u1"), []
>>> for ts, eid in [(0, "a"), (60_000, "c"), (30_000, "b"), (3_600_000, "d")]:  # b is out of order
...     _ = arrive(st, T0 + ts, eid, None, 0, cfg)  # not a duplicate, not late
...     buffer(st, buffered_row(T0 + ts, eid, "page_view", None, None, None, None, None))
>>> hz = horizon(st, 0, cfg)        # d's time - allowed lateness: a, b, c are released
>>> for row in take_releasable(st, hz):
...     if (x := next_expiry(st, cfg)) is not None and x <= row[0]:
...         out.append(expire(st, cfg))
...     out += release(st, row, cfg)
>>> if (x := next_expiry(st, cfg)) is not None and x <= hz:  # 30 min after c: closed
...     out.append(expire(st, cfg))
>>> [(s.first_event_id, s.last_event_id, s.interactions, s.closed_by) for s in out]
[('a', 'c', 3, 'inactivity')]
>>> for row in take_buffer(st):    # end of input: d opens a session, closed at once
...     out += release(st, row, cfg)
>>> [(s.first_event_id, s.closed_by) for s in close_open(st, cfg)]
[('d', 'end_of_input')]

The partition engine (:mod:`intentstream.stream.engine.timeline`) runs these functions
for each user in event-time order, together with the trigger rules and the decisions.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from bisect import insort
from dataclasses import dataclass
from typing import Any, Final

from intentstream.stream.settings import Settings, default_settings
from intentstream.stream.sessions.profiles import LifecycleRules, UserProfile, apply_fields, set_tz
from intentstream.stream.sessions.segments import (
    LIFECYCLE_STAGES,
    TYPE_CODE,
    TYPE_INFO,
    IntentSegment,
    Labeller,
    SegmentAccumulator,
    type_info,
)

T0: Final = 1767607200000  # 2026-01-05T10:00:00Z, for examples
#: What happened to an arriving event (see the engine's ``UserTimeline.accept``).
ACCEPTED, DUPLICATE, LATE = 0, 1, 2
_LC_CODE: Final = {s: i for i, s in enumerate(LIFECYCLE_STAGES)}
_REC: Final = struct.Struct("<6sH").pack  # dedup log record: hash, event minute mod 2**16
_blake2b = hashlib.blake2b


@dataclass(frozen=True)
class SessionConfig:
    """The sessionizer's knobs in milliseconds, built from ``[sessions]`` and ``[events]``
    by :meth:`from_settings` (the defaults live in ``config/default.toml`` only)."""

    gap_ms: int
    max_ms: int
    lateness_ms: int
    dedup_ttl_ms: int
    dedup_max: int
    switch_votes: int
    default_tz: str
    labeller: Labeller
    lifecycle: LifecycleRules

    @property
    def dedup_max_bytes(self) -> int:
        return 8 * self.dedup_max

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> SessionConfig:
        """From ``settings`` (default: :func:`~intentstream.stream.settings.default_settings`)."""
        settings = settings or default_settings()
        s = settings.sessions
        if s.dedup_ttl_s < s.allowed_lateness_s:
            raise ValueError("[sessions] dedup_ttl_s must be at least allowed_lateness_s")
        if s.intent_switch_votes < 1 or s.dedup_max_ids < 1:
            raise ValueError("[sessions] intent_switch_votes and dedup_max_ids must be >= 1")
        return cls(
            gap_ms=s.inactivity_gap_s * 1000,
            max_ms=s.max_session_s * 1000,
            lateness_ms=s.allowed_lateness_s * 1000,
            dedup_ttl_ms=s.dedup_ttl_s * 1000,
            dedup_max=s.dedup_max_ids,
            switch_votes=s.intent_switch_votes,
            default_tz=settings.events.default_tz,
            labeller=Labeller.from_settings(s),
            lifecycle=LifecycleRules.from_settings(s),
        )


def session_id(user_id: str, ts_ms: int, event_id: str) -> str:
    """Deterministic session id from the session's first event."""
    return hashlib.blake2b(f"{user_id}\x1f{ts_ms}\x1f{event_id}".encode(), digest_size=8).hexdigest()


def eid_hash(event_id: str) -> bytes:
    """48-bit hash of an event id (the dedup memory keeps these, not the ids)."""
    return _blake2b(event_id.encode(), digest_size=6).digest()


class Session:
    """An open session: current segment ``seg`` and, during a challenger run, ``cand``."""

    __slots__ = ("sid", "start", "last", "seq", "lc", "seg", "cand", "ci")

    def __init__(self, sid: str, start: int, lc: str) -> None:
        self.sid, self.start, self.last, self.seq, self.lc = sid, start, start, 0, lc
        self.seg = SegmentAccumulator()
        self.cand: SegmentAccumulator | None = None
        self.ci = -1  # intent index of the challenger run

    def dump(self) -> list[Any]:
        c = self.cand.dump() if self.cand is not None else None
        return [self.sid, self.start, self.last, self.seq, _LC_CODE[self.lc], self.seg.dump(), c, self.ci]

    @classmethod
    def load(cls, a: list[Any]) -> Session:
        s = cls.__new__(cls)
        s.sid, s.start, s.last, s.seq, lc, seg, c, s.ci = a
        s.lc = LIFECYCLE_STAGES[lc]
        s.seg = SegmentAccumulator.load(seg)
        s.cand = SegmentAccumulator.load(c) if c is not None else None
        return s


class LateRun:
    """Late events that belong to no open session, emitted as one late_flush segment."""

    __slots__ = ("sid", "lc", "due", "acc")

    def __init__(self, sid: str, lc: str, due: int) -> None:
        self.sid, self.lc, self.due = sid, lc, due
        self.acc = SegmentAccumulator()

    def dump(self) -> list[Any]:
        return [self.sid, _LC_CODE[self.lc], self.due, self.acc.dump()]

    @classmethod
    def load(cls, a: list[Any]) -> LateRun:
        r = cls.__new__(cls)
        r.sid, lc, r.due, acc = a
        r.lc = LIFECYCLE_STAGES[lc]
        r.acc = SegmentAccumulator.load(acc)
        return r


class SessionState:
    """One user's sessionizer state: profile, open session, late run, reorder buffer, dedup.

    ``mx`` is the newest event time seen; ``buf`` the reorder buffer of rows (see
    :func:`buffered_row`) sorted by (ts, event_id); ``log`` the dedup memory: 8-byte
    records (6-byte event-id hash, event minute mod 2**16) in arrival order, searched
    directly (no set: it would cost more memory than the whole rest of the state). The
    engine stores it inside its per-user record (``engine.user_state.UserState``).
    """

    __slots__ = ("user_id", "mx", "prof", "buf", "log", "sess", "late")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.mx = -1
        self.prof = UserProfile()
        self.buf: list[tuple] = []
        self.log = bytearray()
        self.sess: Session | None = None
        self.late: LateRun | None = None

    def dump_fields(self, cfg: SessionConfig) -> list[Any]:
        """The stored form, as list items ``[mx, profile, log, buf, session, late run]``.
        Prunes the dedup log by event time first (in place: what is stored is what the
        next step starts from)."""
        self.prune_log(cfg)
        return self.stored_fields()

    def prune_log(self, cfg: SessionConfig) -> None:
        """Drop the dedup log's entries older than ``dedup_ttl`` before the user's newest
        event (in place; done at every commit, whether the state is serialised or not)."""
        log = self.log
        if log:
            now = self.mx // 60000
            ttl = cfg.dedup_ttl_ms // 60000
            i = 0
            while i < len(log) and (now - (log[i + 6] | log[i + 7] << 8)) & 0xFFFF > ttl:
                i += 8
            if i:
                del log[:i]

    def stored_fields(self) -> list[Any]:
        """:meth:`dump_fields` of an already pruned state."""
        log = self.log
        s, r = self.sess, self.late
        return [
            self.mx, self.prof.dump(),
            base64.b64encode(log).decode("ascii") if log else 0,
            self.buf or 0,
            s.dump() if s is not None else 0,
            r.dump() if r is not None else 0,
        ]  # fmt: skip

    def load_fields(self, a: list[Any]) -> None:
        """Fill this state from :meth:`dump_fields`' items."""
        self.mx, prof, log, buf, s, r = a
        self.prof = UserProfile.load(prof)
        self.log = bytearray(base64.b64decode(log)) if log else bytearray()
        self.buf = [tuple(e) for e in buf] if buf else []
        self.sess = Session.load(s) if s else None
        self.late = LateRun.load(r) if r else None


def horizon(st: SessionState, watermark: int, cfg: SessionConfig) -> int:
    """The user's horizon: events older than this are late; buffered ones are released."""
    h = st.mx - cfg.lateness_ms
    return h if h > watermark else watermark


def arrive(st: SessionState, ts: int, eid: str, tz: str | None, watermark: int, cfg: SessionConfig) -> int | None:
    """Note one arriving event: None if it is a duplicate (ignored), else the user's
    horizon *as of its arrival* — the event is late iff ``ts`` is below it. Whether an
    event is late depends only on the user's newest event time and the watermark at its
    arrival, so releases may be deferred (e.g. to the end of a batch) without changing
    anything. The profile's time zone follows the newest event that carried one."""
    h = _blake2b(eid.encode(), digest_size=6).digest()
    log = st.log
    i = log.find(h)
    while i >= 0:
        if not i & 7:
            return None
        i = log.find(h, i + 1)  # a match across two records: keep looking
    log += _REC(h, ts // 60000 & 0xFFFF)
    if len(log) > cfg.dedup_max_bytes:
        del log[:8]
    hz = st.mx - cfg.lateness_ms
    if hz < watermark:
        hz = watermark
    if ts > st.mx:
        st.mx = ts
    if tz is not None and ts >= st.prof.tz_ts:
        set_tz(st.prof, tz, ts)
    return hz


def buffered_row(
    ts: int, eid: str, typ: str, dev: str | None, ch: str | None, amt: float | None, mch: str | None,
    extra: dict[str, Any] | None,
) -> tuple:  # fmt: skip
    """The reorder buffer's row of an event, as short as its fields allow (rows are stored):
    ``(ts, event_id, type code, device, channel[, amount[, message channel[, extra]]])``;
    ``extra`` carries what the trigger rules read beyond these fields."""
    code = TYPE_CODE.get(typ, typ)
    if extra is not None:
        return (ts, eid, code, dev, ch, amt, mch, extra)
    if mch is not None:
        return (ts, eid, code, dev, ch, amt, mch)
    if amt is not None:
        return (ts, eid, code, dev, ch, amt)
    return (ts, eid, code, dev, ch)


def buffer(st: SessionState, row: tuple) -> None:
    """Put a row that is not late into the user's reorder buffer, in (ts, event_id) order."""
    buf = st.buf
    if buf and row < buf[-1]:
        insort(buf, row)
    else:
        buf.append(row)


def take_releasable(st: SessionState, hz: int) -> list[tuple]:
    """Remove and return the buffered rows older than horizon ``hz``, in order."""
    buf = st.buf
    if not buf or buf[0][0] >= hz:
        return []
    i, n = 0, len(buf)
    while i < n and buf[i][0] < hz:
        i += 1
    rows = buf[:i]
    del buf[:i]
    return rows


def take_buffer(st: SessionState) -> list[tuple]:
    """End of input: remove and return the whole buffer."""
    rows, st.buf = st.buf, []
    return rows


def _close_moment(s: Session, cfg: SessionConfig) -> int:
    """The smallest horizon at which session ``s`` is closed (see :func:`next_due`)."""
    d = s.last + cfg.gap_ms + 1
    m = s.start + cfg.max_ms
    return m if m < d else d


def next_expiry(st: SessionState, cfg: SessionConfig) -> int | None:
    """The smallest horizon at which the late run is flushed or the open session closed
    without a new event (None: nothing open). Hot: asked before every released row."""
    r, s = st.late, st.sess
    if s is None:
        return r.due if r is not None else None
    d = s.last + cfg.gap_ms + 1
    m = s.start + cfg.max_ms
    if m < d:
        d = m
    return r.due if r is not None and r.due <= d else d


def expire(st: SessionState, cfg: SessionConfig) -> IntentSegment:
    """Close what is due at :func:`next_expiry`: the late run first on a tie, else the
    session (``closed_by`` max_length or inactivity, the threshold reached first)."""
    r, s = st.late, st.sess
    if r is not None and (s is None or r.due <= _close_moment(s, cfg)):
        return _flush_late(st, cfg)
    assert s is not None
    return _close(st, _reason(s, cfg), cfg)


def next_due(st: SessionState, cfg: SessionConfig) -> int | None:
    """Smallest horizon at which the sessionizer would change ``st`` (None: never)."""
    due = st.buf[0][0] + 1 if st.buf else None
    x = next_expiry(st, cfg)
    if x is not None and (due is None or x < due):
        due = x
    return due


def close_open(st: SessionState, cfg: SessionConfig) -> list[IntentSegment]:
    """End of input, once the buffer is released: close the session (``end_of_input``)
    and emit the late run."""
    out = []
    if st.sess is not None:
        out.append(_close(st, "end_of_input", cfg))
    if st.late is not None:
        out.append(_flush_late(st, cfg))
    return out


def _reason(s: Session, cfg: SessionConfig) -> str:
    return "max_length" if s.start + cfg.max_ms <= s.last + cfg.gap_ms + 1 else "inactivity"


_NONE: Final[tuple[IntentSegment, ...]] = ()


def release(st: SessionState, row: tuple, cfg: SessionConfig) -> tuple[IntentSegment, ...]:
    """Fold one buffered row, in (ts, event_id) order, into the profile and the session;
    the caller has expired what the row's time closes (:func:`next_expiry`). Returns the
    segments it closed: a session the row cannot continue, an intent change."""
    ts = row[0]
    eid = row[1]
    dev = row[3]
    ch = row[4]
    n = len(row)
    amt = row[5] if n > 5 else None
    info = TYPE_INFO.get(row[2])
    if info is None:
        info = type_info(row[2])
    p = st.prof
    s = st.sess
    closed = _NONE
    if s is not None and (ts - s.last > cfg.gap_ms or ts - s.start >= cfg.max_ms):
        closed = (_close(st, _reason(s, cfg), cfg),)
        s = None
    if s is None:
        s = st.sess = Session(session_id(st.user_id, ts, eid), ts, p.lifecycle_stage(ts, cfg.lifecycle))
        apply_fields(p, ts, info[0], info[4], amt, row[6] if n > 6 else None)
        s.seg.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
        return closed
    if ts > p.last_event_ms and p._dlo <= ts < p._dhi and ts < p.hour_next and not info[4]:
        p.last_event_ms = ts  # apply_fields' fast path: same day and clock hour, no status change
    else:
        apply_fields(p, ts, info[0], info[4], amt, row[6] if n > 6 else None)
    s.last = ts
    vote = info[1]
    c = s.cand
    if c is None:
        seg = s.seg
        if vote < 0 or vote == seg.d or seg.nv == 0:
            seg.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
            return closed
        c = s.cand = SegmentAccumulator()
        s.ci = vote
        c.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
    elif vote < 0 or vote == s.ci:
        c.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
        if vote < 0:
            return closed
    else:  # the challenger run is broken: its events stay in the current segment
        seg = s.seg
        seg.merge(c)
        s.cand = None
        if vote == seg.d:
            seg.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
            return closed
        c = s.cand = SegmentAccumulator()
        s.ci = vote
        c.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
    if c.nv >= cfg.switch_votes:
        seg = s.seg
        s.cand = None
        if seg.nv < cfg.switch_votes:
            seg.merge(c)
        else:
            changed = seg.finish(st.user_id, s.sid, s.seq, s.lc, p.tz or cfg.default_tz, "intent_change", cfg.labeller)
            s.seq += 1
            s.seg = c
            return closed + (changed,)
    return closed


def _close(st: SessionState, reason: str, cfg: SessionConfig) -> IntentSegment:
    s = st.sess
    assert s is not None
    if s.cand is not None:
        s.seg.merge(s.cand)
    tz = st.prof.tz or cfg.default_tz
    st.sess = None
    return s.seg.finish(st.user_id, s.sid, s.seq, s.lc, tz, reason, cfg.labeller)


def place_late(st: SessionState, row: tuple, hz: int, cfg: SessionConfig) -> None:
    """A late row (older than the horizon ``hz`` at its arrival; the caller has advanced
    the user to ``hz`` first): into the open segment's counts if the session started at
    or before it, else into the user's late run."""
    ts, eid, code, dev, ch = row[:5]
    n = len(row)
    amt = row[5] if n > 5 else None
    info = TYPE_INFO.get(code)
    if info is None:
        info = type_info(code)
    p = st.prof
    s = st.sess
    if s is not None and ts >= s.start:
        apply_fields(p, ts, info[0], info[4], amt, row[6] if n > 6 else None)
        (s.cand or s.seg).add_late_fields(info, dev, ch, amt, p.kyc, p.tx)
        return
    r = st.late
    if r is None:
        r = st.late = LateRun(session_id(st.user_id, ts, eid), p.lifecycle_stage(ts, cfg.lifecycle), hz + cfg.lateness_ms)
    apply_fields(p, ts, info[0], info[4], amt, row[6] if n > 6 else None)
    r.acc.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)


def _flush_late(st: SessionState, cfg: SessionConfig) -> IntentSegment:
    r = st.late
    assert r is not None
    tz = st.prof.tz or cfg.default_tz
    st.late = None
    return r.acc.finish(st.user_id, r.sid, 0, r.lc, tz, "late_flush", cfg.labeller)
