"""Event-time sessionizer: per-user state, reorder buffer, dedup, sessions, late events.

Everything here is pure (no I/O, no clock): functions take a :class:`UserState`, an
event as a compact tuple (see :mod:`intentstream.stream.sessions.segments`), the partition watermark and a
:class:`SessionConfig`, mutate the state and append closed
:class:`~intentstream.stream.sessions.segments.IntentSegment` objects to ``out``. :mod:`intentstream.stream.engine.partition` drives
them for one Kafka partition; tests drive them by hand.

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

>>> cfg, out = SessionConfig(), []
>>> st = UserState("u1")
>>> for ts, eid in [(0, "a"), (60_000, "c"), (30_000, "b"), (3_600_000, "d")]:  # b is out of order
...     accept(st, (T0 + ts, eid, "page_view", None, None, None, None, None), 0, cfg, out)
0
0
0
0
>>> advance(st, horizon(st, 0, cfg), cfg, out)
>>> [(s.first_event_id, s.last_event_id, s.interactions, s.closed_by) for s in out]
[('a', 'c', 3, 'inactivity')]
>>> flush(st, cfg, out); out[-1].first_event_id, out[-1].closed_by
('d', 'end_of_input')
"""

from __future__ import annotations

import base64
import hashlib
import struct
from bisect import insort
from dataclasses import dataclass, field
from typing import Any, Final

from intentstream.stream import codec
from intentstream.stream.sessions.profiles import LifecycleRules, UserProfile, apply_fields, set_tz
from intentstream.stream.triggers.rules import TriggerConfig, TriggerRules, TriggerState, trigger_extra
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
#: :func:`accept` outcomes.
ACCEPTED, DUPLICATE, LATE = 0, 1, 2
STATE_VERSION: Final = 1
_LC_CODE: Final = {s: i for i, s in enumerate(LIFECYCLE_STAGES)}
_REC: Final = struct.Struct("<6sH").pack  # dedup log record: hash, event minute mod 2**16
_blake2b = hashlib.blake2b


@dataclass(frozen=True)
class SessionConfig:
    """The sessionizer's knobs in milliseconds (from ``[sessions]`` and ``[events]``)."""

    gap_ms: int = 1_800_000
    max_ms: int = 14_400_000
    lateness_ms: int = 300_000
    dedup_ttl_ms: int = 86_400_000
    dedup_max: int = 32
    switch_votes: int = 3
    default_tz: str = "UTC"
    labeller: Labeller = field(default_factory=Labeller)
    lifecycle: LifecycleRules = field(default_factory=LifecycleRules)
    #: Trigger rules fed with each released event and closed segment (None: no triggers).
    triggers: TriggerRules | None = None

    @property
    def dedup_max_bytes(self) -> int:
        return 8 * self.dedup_max

    @classmethod
    def from_settings(cls, settings: Any) -> SessionConfig:
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
            triggers=TriggerRules(TriggerConfig.from_settings(settings.triggers)) if settings.triggers.enabled else None,
        )


def event_tuple(ev: Any) -> tuple:
    """The compact tuple of a :class:`intentstream.stream.contract.events.Event`."""
    mch = ev.props.get("channel") if ev.type == "unsubscribe" and ev.props else None
    return (ev.ts_ms, ev.event_id, ev.type, ev.device, ev.channel, ev.amount, ev.tz, mch, trigger_extra(ev))


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


class UserState:
    """Everything kept per user: profile, open session, reorder buffer, dedup, offsets.

    ``hi`` is the highest input offset applied (redelivered offsets are skipped);
    ``mx`` the newest event time seen; ``buf`` the reorder buffer of compact rows
    ``(ts, event_id, type code, device, channel[, amount[, message channel]])`` sorted
    by (ts, event_id); ``log`` the dedup memory: 8-byte records (6-byte event-id hash,
    event minute mod 2**16) in arrival order, searched directly (no set: it would cost
    more memory than the whole rest of the state).
    """

    __slots__ = ("user_id", "hi", "mx", "prof", "buf", "log", "sess", "late", "trig")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.hi = self.mx = -1
        self.prof = UserProfile()
        self.buf: list[tuple] = []
        self.log = bytearray()
        self.sess: Session | None = None
        self.late: LateRun | None = None
        self.trig = TriggerState()

    def dump(self, cfg: SessionConfig) -> bytes:
        """Compact JSON (one list). Prunes the dedup log by event time first (in place:
        what is stored is what the next step starts from)."""
        log = self.log
        if log:
            now = self.mx // 60000
            ttl = cfg.dedup_ttl_ms // 60000
            i = 0
            while i < len(log) and (now - (log[i + 6] | log[i + 7] << 8)) & 0xFFFF > ttl:
                i += 8
            if i:
                del log[:i]
        s, r = self.sess, self.late
        return codec.dumps([
            STATE_VERSION, self.hi, self.mx, self.prof.dump(),
            base64.b64encode(log).decode("ascii") if log else 0,
            self.buf or 0,
            s.dump() if s is not None else 0,
            r.dump() if r is not None else 0,
            self.trig.to_dict() or 0,
        ])  # fmt: skip

    @classmethod
    def load(cls, user_id: str, data: bytes) -> UserState:
        a = codec.loads(data)
        if a[0] != STATE_VERSION:
            raise ValueError(f"user state of {user_id!r} has version {a[0]!r}, expected {STATE_VERSION}")
        st = cls.__new__(cls)
        _, st.hi, st.mx, prof, log, buf, s, r = a[:8]
        st.trig = TriggerState.from_dict(a[8] if len(a) > 8 else None)
        st.user_id = user_id
        st.prof = UserProfile.load(prof)
        st.log = bytearray(base64.b64decode(log)) if log else bytearray()
        st.buf = [tuple(e) for e in buf] if buf else []
        st.sess = Session.load(s) if s else None
        st.late = LateRun.load(r) if r else None
        return st


def horizon(st: UserState, watermark: int, cfg: SessionConfig) -> int:
    """The user's horizon: events older than this are late; buffered ones are released."""
    h = st.mx - cfg.lateness_ms
    return h if h > watermark else watermark


def accept(st: UserState, ev: tuple, watermark: int, cfg: SessionConfig, out: list[IntentSegment]) -> int:
    """Take one event (compact tuple): :data:`DUPLICATE`, :data:`LATE` (handled now) or
    :data:`ACCEPTED` (buffered).

    Buffered events may be released any time later by :func:`advance` to the then
    horizon: whether an event is late depends only on the user's newest event time and
    the watermark at its arrival, and a late event first advances the user to that
    horizon, so deferring releases (e.g. to the end of a batch) changes nothing."""
    extra = ev[8] if len(ev) > 8 else None
    return accept_fields(st, ev[0], ev[1], ev[2], ev[3], ev[4], ev[5], ev[6], ev[7], watermark, cfg, out, extra)


def accept_fields(
    st: UserState, ts: int, eid: str, typ: str, dev: str | None, ch: str | None, amt: float | None,
    tz: str | None, mch: str | None, watermark: int, cfg: SessionConfig, out: list[Any],
    extra: dict[str, Any] | None = None,
) -> int:  # fmt: skip
    """:func:`accept` on unpacked fields (the engine's hot path)."""
    h = _blake2b(eid.encode(), digest_size=6).digest()
    log = st.log
    i = log.find(h)
    while i >= 0:
        if not i & 7:
            return DUPLICATE
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
    code = TYPE_CODE.get(typ, typ)
    if extra is not None and cfg.triggers is not None:
        row: tuple = (ts, eid, code, dev, ch, amt, mch, extra)
    elif mch is not None:
        row = (ts, eid, code, dev, ch, amt, mch)
    elif amt is not None:
        row = (ts, eid, code, dev, ch, amt)
    else:
        row = (ts, eid, code, dev, ch)
    if ts < hz:
        advance(st, hz, cfg, out)  # place it against the state as of its arrival
        _late(st, row, hz, cfg, out)
        return LATE
    buf = st.buf
    if buf and row < buf[-1]:
        insort(buf, row)
    else:
        buf.append(row)
    return ACCEPTED


def advance(st: UserState, hz: int, cfg: SessionConfig, out: list[Any]) -> None:
    """Release buffered events older than horizon ``hz`` and close what ``hz`` expires."""
    buf = st.buf
    if buf and buf[0][0] < hz:
        i, n = 0, len(buf)
        while i < n and buf[i][0] < hz:
            _release(st, buf[i], cfg, out)
            i += 1
        del buf[:i]
    _settle(st, hz, cfg, out)


def _close_moment(s: Session, cfg: SessionConfig) -> int:
    """The smallest horizon at which session ``s`` is closed (see :func:`next_due`)."""
    d = s.last + cfg.gap_ms + 1
    m = s.start + cfg.max_ms
    return m if m < d else d


def _settle(st: UserState, t: int, cfg: SessionConfig, out: list[Any]) -> None:
    """Do, in time order, what the horizon reaching ``t`` makes happen: trigger timers
    (at deadline + 1), the late run's flush (at its due) and the session's close (at
    :func:`_close_moment`). Called before each released event and at the end of
    :func:`advance`, so the order of outputs — and what each trigger sees of the user,
    e.g. the persona of the latest closed segment — is the same whichever way (event,
    watermark, batch cut) time reached it."""
    rules = cfg.triggers
    s = st.sess
    if st.late is None and (s is None or (t <= s.last + cfg.gap_ms and t < s.start + cfg.max_ms)):
        # hot path (every released event): nothing but maybe a timer can be due
        if rules is None:
            return
        d = st.trig.next_due()
        if d is None or d + 1 > t:
            return
    while True:
        moment, kind = t + 1, -1
        if rules is not None:
            d = st.trig.next_due()
            if d is not None and d + 1 <= t:
                moment, kind = d + 1, 0
        r = st.late
        if r is not None and r.due <= t and r.due < moment:
            moment, kind = r.due, 1
        s = st.sess
        if s is not None:
            c = _close_moment(s, cfg)
            if c <= t and c < moment:
                moment, kind = c, 2
        if kind < 0:
            return
        if kind == 0:
            _fired(st, rules.fire_due(st.trig, moment - 1), out)  # type: ignore[union-attr]
        elif kind == 1:
            _flush_late(st, cfg, out)
        else:
            _close(st, _reason(s, cfg), cfg, out)  # type: ignore[arg-type]


def next_due(st: UserState, cfg: SessionConfig) -> int | None:
    """Smallest horizon at which :func:`advance` would change ``st`` (None: never)."""
    due = st.buf[0][0] + 1 if st.buf else None
    s = st.sess
    if s is not None:
        d = s.last + cfg.gap_ms + 1
        m = s.start + cfg.max_ms
        if m < d:
            d = m
        if due is None or d < due:
            due = d
    if st.late is not None:
        d = st.late.due
        if due is None or d < due:
            due = d
    if cfg.triggers is not None:
        d = st.trig.next_due()
        if d is not None and (due is None or d + 1 < due):
            due = d + 1  # a timer fires once the horizon is past its deadline
    return due


def flush(st: UserState, cfg: SessionConfig, out: list[IntentSegment]) -> None:
    """End of input: release the whole buffer, close the session (``end_of_input``)
    and emit the late run."""
    for row in st.buf:
        _release(st, row, cfg, out)
    st.buf = []
    if st.sess is not None:
        _close(st, "end_of_input", cfg, out)
    if st.late is not None:
        _flush_late(st, cfg, out)


def _reason(s: Session, cfg: SessionConfig) -> str:
    return "max_length" if s.start + cfg.max_ms <= s.last + cfg.gap_ms + 1 else "inactivity"


def _release(st: UserState, row: tuple, cfg: SessionConfig, out: list[Any]) -> None:
    """Fold one buffered row, in (ts, event_id) order, into the profile, the session and
    the trigger rules, after what happens before its time (:func:`_settle`)."""
    _settle(st, row[0], cfg, out)
    _release_session(st, row, cfg, out)
    rules = cfg.triggers
    if rules is not None:
        _trigger_event(rules, st, row, out)


def _trigger_event(rules: TriggerRules, st: UserState, row: tuple, out: list[Any]) -> None:
    n = len(row)
    info = TYPE_INFO.get(row[2])
    typ = info[0] if info is not None else str(row[2])
    fired = rules.on_fields(st.trig, row[0], row[1], typ, row[5] if n > 5 else None, row[7] if n > 7 else None)
    if fired:
        _fired(st, fired, out)


class Outputs(list):
    """``out`` with a hook called the moment a trigger fires (the engine decides there and
    then, so a sent message's feedback timer is armed before the user's next event)."""

    def __init__(self, on_fired: Any) -> None:
        super().__init__()
        self.on_fired = on_fired


def _fired(st: UserState, fired: list[Any], out: list[Any]) -> None:
    """Triggers go into ``out`` beside segments, as (user_id, Fired), in the order they happen."""
    hook = getattr(out, "on_fired", None)
    for f in fired:
        out.append((st.user_id, f))
        if hook is not None:
            hook(st, f)


def _emit(st: UserState, seg: IntentSegment, cfg: SessionConfig, out: list[Any]) -> None:
    """A closed segment: out, and to the persona-driven trigger rules."""
    out.append(seg)
    if cfg.triggers is not None:
        _fired(st, cfg.triggers.on_segment(st.trig, seg), out)


def _release_session(st: UserState, row: tuple, cfg: SessionConfig, out: list[Any]) -> None:
    """Fold one buffered row, in (ts, event_id) order, into the profile and the session."""
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
    if s is not None and (ts - s.last > cfg.gap_ms or ts - s.start >= cfg.max_ms):
        _close(st, _reason(s, cfg), cfg, out)
        s = None
    if s is None:
        s = st.sess = Session(session_id(st.user_id, ts, eid), ts, p.lifecycle_stage(ts, cfg.lifecycle))
        apply_fields(p, ts, info[0], info[4], amt, row[6] if n > 6 else None)
        s.seg.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
        return
    if ts > p.last_event_ms and p._dlo <= ts < p._dhi and not info[4]:
        p.last_event_ms = ts  # apply_fields' fast path: same day, no status change
    else:
        apply_fields(p, ts, info[0], info[4], amt, row[6] if n > 6 else None)
    s.last = ts
    vote = info[1]
    c = s.cand
    if c is None:
        seg = s.seg
        if vote < 0 or vote == seg.d or seg.nv == 0:
            seg.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
            return
        c = s.cand = SegmentAccumulator()
        s.ci = vote
        c.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
    elif vote < 0 or vote == s.ci:
        c.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
        if vote < 0:
            return
    else:  # the challenger run is broken: its events stay in the current segment
        seg = s.seg
        seg.merge(c)
        s.cand = None
        if vote == seg.d:
            seg.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
            return
        c = s.cand = SegmentAccumulator()
        s.ci = vote
        c.add_fields(ts, eid, info, dev, ch, amt, p.kyc, p.tx)
    if c.nv >= cfg.switch_votes:
        seg = s.seg
        s.cand = None
        if seg.nv < cfg.switch_votes:
            seg.merge(c)
        else:
            _emit(st, seg.finish(st.user_id, s.sid, s.seq, s.lc, p.tz or cfg.default_tz, "intent_change", cfg.labeller), cfg, out)
            s.seq += 1
            s.seg = c


def _close(st: UserState, reason: str, cfg: SessionConfig, out: list[IntentSegment]) -> None:
    s = st.sess
    assert s is not None
    if s.cand is not None:
        s.seg.merge(s.cand)
    tz = st.prof.tz or cfg.default_tz
    _emit(st, s.seg.finish(st.user_id, s.sid, s.seq, s.lc, tz, reason, cfg.labeller), cfg, out)
    st.sess = None


def _late(st: UserState, row: tuple, hz: int, cfg: SessionConfig, out: list[Any]) -> None:
    _late_session(st, row, hz, cfg, out)
    rules = cfg.triggers
    if rules is not None:  # out of order, but never ignored: a late payment still cancels
        _trigger_event(rules, st, row, out)


def _late_session(st: UserState, row: tuple, hz: int, cfg: SessionConfig, out: list[Any]) -> None:
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


def _flush_late(st: UserState, cfg: SessionConfig, out: list[IntentSegment]) -> None:
    r = st.late
    assert r is not None
    tz = st.prof.tz or cfg.default_tz
    _emit(st, r.acc.finish(st.user_id, r.sid, 0, r.lc, tz, "late_flush", cfg.labeller), cfg, out)
    st.late = None
