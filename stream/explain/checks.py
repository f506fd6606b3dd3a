"""Every decision of one user with the checks that shaped it, recomputed from the user's
own records with the fatigue ledger's own rules — nothing re-implemented:

* the user's state at the decision (time zone, opt-outs, likely hours): the profile
  stage (:mod:`intentstream.stream.sessions.profiles`) folded over the user's events up
  to the decision time;
* the channels, their send times (quiet hours, send time) and the holdout arm: the
  ledger's pure half, :meth:`FatigueLedger.request <intentstream.stream.decisions.fatigue.FatigueLedger.request>`;
* the counters: the user's deliveries before the decision, read from the audit records
  in order (``sent`` and ``deferred`` at their send time; holdouts do not count;
  cancelled ones keep their place), judged by
  :func:`~intentstream.stream.state.fatigue.window_fits` (the count shown is its
  :func:`~intentstream.stream.state.fatigue.window_load`) and
  :func:`~intentstream.stream.state.fatigue.global_block`;
* a second opinion: the same requests replayed into a fresh in-memory ledger store; a
  decision whose recomputed verdict differs from the engine's is flagged
  (:attr:`DecisionChecks.agrees`) — e.g. when other users' events fired a timer earlier
  than the user's own events would have.

>>> window_load([0, 1, 2], 7 * DAY_MS - 1, 7 * DAY_MS), window_fits([0, 1, 2], 7 * DAY_MS - 1, 7 * DAY_MS, 3)
(3, False)
>>> window_load([5, 6, 7], 0, 7 * DAY_MS)   # late: 5..7 are already booked in a window holding 0
3
>>> span(7 * DAY_MS), span(DAY_MS), span(30 * 60_000)
('7 days', '24 h', '30 min')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from intentstream.stream.contract.events import Event, format_ts, record_ts, zone
from intentstream.stream.decisions.contract import split_audit
from intentstream.stream.decisions.fatigue import Candidate, FatigueLedger
from intentstream.stream.explain.timers import TimerNote
from intentstream.stream.sessions.profiles import UserProfile, apply
from intentstream.stream.settings import Settings, default_settings
from intentstream.stream.state.fatigue import COUPON_CHANNEL, DAY_MS, HOUR_MS, Verdict, global_block, window_fits, window_load
from intentstream.stream.state.memory.fatigue import MemoryLedgerStore

#: Reasons the decider gives before the ledger sees a hit (no cap, no cooldown touched).
BEFORE_LEDGER = frozenset({"stale", "roi_guard"})


def span(ms: int) -> str:
    """A window length as people say it: ``7 days``, ``24 h``, ``30 min``."""
    if ms % DAY_MS == 0 and ms > DAY_MS:
        return f"{ms // DAY_MS} days"
    if ms % HOUR_MS == 0:
        return f"{ms // HOUR_MS} h"
    return f"{ms // 60_000} min"


@dataclass(frozen=True, slots=True)
class WindowCount:
    """``used`` of ``cap`` deliveries of ``scope`` (a channel, ``all channels`` or
    ``coupon``) in the fullest rolling ``window_ms`` holding the send time; ``fits``:
    window_fits' verdict on one more."""

    scope: str
    used: int
    cap: int
    window_ms: int
    fits: bool

    def text(self) -> str:
        return f"{self.scope} {self.used}/{self.cap} in {span(self.window_ms)}"

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "used": self.used, "cap": self.cap, "window": span(self.window_ms), "fits": self.fits}


@dataclass(frozen=True, slots=True)
class ChannelOption:
    """A channel the strategy offered and the user had not opted out of: when it could
    leave (``held_by``: ``quiet_hours`` or ``send_time`` moved it past the decision) and
    its cap at that time."""

    channel: str
    send_at: int
    held_by: str | None
    count: WindowCount

    def to_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "send_at": format_ts(self.send_at), "held_by": self.held_by, "cap": self.count.to_dict()}


@dataclass(frozen=True, slots=True)
class LocalClock:
    """The decision time on the user's clock and the quiet-hours verdict on it."""

    tz: str
    local: datetime
    quiet: bool
    quiet_start: str
    quiet_end: str
    quiet_channels: tuple[str, ...]

    def text(self) -> str:
        where = f"{self.local:%H:%M} local ({self.tz})"
        rule = f"quiet hours {self.quiet_start}–{self.quiet_end} for {', '.join(self.quiet_channels)}"
        return f"{where}, {'inside' if self.quiet else 'outside'} {rule}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "tz": self.tz, "local": self.local.isoformat(timespec="minutes"), "quiet": self.quiet,
            "quiet_hours": f"{self.quiet_start}-{self.quiet_end}", "quiet_channels": list(self.quiet_channels),
        }  # fmt: skip


@dataclass(frozen=True)
class DecisionChecks:
    """One decision (``record``: its first audit record) and its checks, as they stood
    when it was made; then what happened to it (``follow_ups``: release or cancellation,
    ``corrections``, ``outcome``)."""

    record: Mapping[str, Any]
    clock: LocalClock
    opt_outs: tuple[str, ...]
    opted_out: tuple[str, ...]
    cooldown_since: int | None
    cooldown_ms: int
    likely_hours: tuple[int, ...]
    options: tuple[ChannelOption, ...]
    global_counts: tuple[WindowCount, ...]
    global_verdict: str | None
    reserved_for: tuple[tuple[str, int], ...]
    coupon: WindowCount | None
    holdout_share: float
    recomputed: Verdict
    follow_ups: list[Mapping[str, Any]] = field(default_factory=list)
    corrections: list[Mapping[str, Any]] = field(default_factory=list)
    outcome: Mapping[str, Any] | None = None

    @property
    def decided_at(self) -> int:
        return record_ts(self.record["decided_at"])

    @property
    def chosen(self) -> ChannelOption | None:
        """The first channel whose cap held (the ledger's choice before the global caps)."""
        return next((o for o in self.options if o.count.fits), None)

    @property
    def agrees(self) -> bool:
        """Whether the recomputed verdict is the engine's (status, reason, channel, send time)."""
        r, v = self.record, self.recomputed
        send_at = record_ts(r["send_at"]) if r["send_at"] else None
        return (r["status"], r["reason"], r["channel"], send_at) == (v.status, v.reason, v.channel, v.send_at)

    def to_dict(self) -> dict[str, Any]:
        v = self.recomputed
        return {
            "decision": dict(self.record),
            "clock": self.clock.to_dict(),
            "opt_outs": list(self.opt_outs),
            "opted_out_channels": list(self.opted_out),
            "cooldown": {"window": span(self.cooldown_ms), "previous": None if self.cooldown_since is None else format_ts(self.cooldown_since)},
            "likely_hours": list(self.likely_hours),
            "channels": [o.to_dict() for o in self.options],
            "global_caps": [c.to_dict() for c in self.global_counts],
            "global_verdict": self.global_verdict,
            "reserved_for": [{"trigger": t, "deadline": format_ts(d)} for t, d in self.reserved_for],
            "coupon_cap": None if self.coupon is None else self.coupon.to_dict(),
            "holdout_share": self.holdout_share,
            "recomputed": {"status": v.status, "reason": v.reason, "channel": v.channel, "send_at": None if v.send_at is None else format_ts(v.send_at)},
            "agrees": self.agrees,
            "follow_ups": [dict(r) for r in self.follow_ups],
            "corrections": [dict(r) for r in self.corrections],
            "outcome": None if self.outcome is None else dict(self.outcome),
        }


def profile_at(events: Iterable[Event], t: int) -> UserProfile:
    """The user's profile folded over their events up to event time ``t`` (time zone,
    opt-outs, active hours), in event-time order, each event once."""
    p = UserProfile()
    seen: set[str] = set()
    for ev in sorted((e for e in events if e.ts_ms <= t), key=lambda e: e.ts_ms):
        if ev.event_id not in seen:
            seen.add(ev.event_id)
            apply(p, (ev.ts_ms, ev.event_id, ev.type, ev.device, ev.channel, ev.amount, ev.tz, ev.message_channel))
    return p


def check_decisions(
    user_id: str, events: Sequence[Event], audit: Sequence[Mapping[str, Any]], outcomes: Sequence[Mapping[str, Any]],
    timers: Sequence[TimerNote], settings: Settings | None = None,
) -> list[DecisionChecks]:  # fmt: skip
    """The checks of each of the user's decisions, in the order the engine made them."""
    settings = settings or default_settings()
    ledger = FatigueLedger.from_settings(settings, MemoryLedgerStore())
    limits, quiet = ledger.limits, ledger.quiet
    decided, later, corrections = split_audit(audit)
    by_action = {o["action_id"]: o for o in outcomes}
    channels: dict[str, list[int]] = {}  # channel (and the coupon pseudo-channel) -> delivery times so far
    messages: list[int] = []  # every message channel together (the global caps)
    cooldowns: dict[str, int] = {}  # trigger -> the latest decision that started its cooldown
    out = []
    for rec in decided:
        t = record_ts(rec["decided_at"])
        trigger, strategy = rec["trigger"], rec["strategy"]
        prof = profile_at(events, t)
        tz = prof.tz or settings.events.default_tz
        offered = tuple(strategy.get("channels") or ())
        has_coupon = strategy.get("coupon") is not None or strategy.get("coupon_withheld") is not None
        pending = {n.trigger: n.due_ms for n in timers if n.open_at(t) and not n.stale and n.trigger != trigger}
        cand = Candidate(rec["action_id"], user_id, trigger, t, offered, tz=tz, opt_outs=prof.opt_outs,
                         coupon=has_coupon, pending=pending, active_hours=prof.hours)  # fmt: skip
        req = ledger.request(cand)
        if rec["reason"] in BEFORE_LEDGER:
            verdict = Verdict("suppressed", rec["reason"])
        else:
            verdict = ledger.store.apply(req, limits)
        options = tuple(
            ChannelOption(ch, at, req.defer_reason(ch) if at > t else None,
                          WindowCount(ch, window_load(channels.get(ch, ()), at, limits.window_ms), limits.channel_cap,
                                      limits.window_ms, window_fits(channels.get(ch, ()), at, limits.window_ms, limits.channel_cap)))
            for ch, at in req.options
        )  # fmt: skip
        first = next((o for o in options if o.count.fits), None)
        send = first.send_at if first is not None else t
        global_counts = tuple(
            WindowCount("all channels", window_load(messages, send, w), cap, w, window_fits(messages, send, w, cap)) for w, cap in limits.global_caps
        )
        reserved = tuple(sorted((p, d) for p, d in pending.items() if req.reserve_due is not None and d == req.reserve_due))
        coupon = None
        if has_coupon and first is not None:
            booked = channels.get(COUPON_CHANNEL, ())
            coupon = WindowCount("coupon", window_load(booked, send, limits.window_ms), limits.coupon_cap, limits.window_ms,
                                 window_fits(booked, send, limits.window_ms, limits.coupon_cap))  # fmt: skip
        local = datetime.fromtimestamp(t / 1000, zone(tz))
        clock = LocalClock(tz, local, quiet.is_quiet(local.time().replace(tzinfo=None)), f"{quiet.start:%H:%M}", f"{quiet.end:%H:%M}", tuple(sorted(quiet.channels)))
        out.append(DecisionChecks(
            record=rec, clock=clock, opt_outs=tuple(sorted(prof.opt_outs)), opted_out=tuple(c for c in offered if c in prof.opt_outs),
            cooldown_since=cooldowns.get(trigger), cooldown_ms=limits.cooldown_ms,
            likely_hours=tuple(sorted(ledger.send_time.likely(trigger, prof.hours))), options=options,
            global_counts=global_counts, global_verdict=global_block(messages, send, limits.global_caps, req.reserve_due) if first else None,
            reserved_for=reserved, coupon=coupon, holdout_share=ledger.holdout.share_of(trigger), recomputed=verdict,
            follow_ups=[r for r in later if r["action_id"] == rec["action_id"]],
            corrections=[r for r in corrections if r["action_id"] == rec["action_id"]],
            outcome=by_action.get(rec["action_id"]),
        ))  # fmt: skip
        # the engine's own verdict, not the recomputed one, is what later decisions saw
        status = rec["status"]
        if status in ("sent", "deferred"):
            at = record_ts(rec["send_at"]) if rec["send_at"] else t
            channels.setdefault(rec["channel"], []).append(at)
            messages.append(at)
            if strategy.get("coupon") is not None:
                channels.setdefault(COUPON_CHANNEL, []).append(at)
        if status in ("sent", "deferred", "holdout"):
            cooldowns[trigger] = t
    return out
