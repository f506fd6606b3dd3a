"""One user's explanation, in event-time order: :func:`explain` turns a
:class:`~intentstream.stream.explain.trace.UserTrace` into an :class:`Explanation` —
the user's events (runs of page views collapsed), their segments and behaviour
persona, the trigger timers, and every decision with its checks and outcome.

:meth:`Explanation.to_dict` is the machine form (``--json``); :mod:`.text` and
:mod:`.html` render the same object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from intentstream.stream.contract.events import Event, format_ts, record_ts
from intentstream.stream.explain.checks import DecisionChecks, check_decisions
from intentstream.stream.explain.timers import TimerNote, timer_history
from intentstream.stream.explain.trace import UserTrace
from intentstream.stream.settings import Settings, default_settings

if TYPE_CHECKING:
    from intentstream.stream.explain.live import LiveState

#: A run of at least this many consecutive events of one of these types is one line.
COLLAPSE_TYPES = frozenset({"page_view", "click", "search", "app_open"})
COLLAPSE_MIN = 3


@dataclass(frozen=True, slots=True)
class EventLine:
    """One event, or a run of ``count`` consecutive events of one type (``first`` to
    ``last``), with its key properties."""

    first: int
    last: int
    type: str
    count: int
    event_id: str
    props: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": format_ts(self.first), "until": format_ts(self.last) if self.count > 1 else None,
            "type": self.type, "count": self.count, "event_id": self.event_id, "props": dict(self.props),
        }  # fmt: skip


def key_props(ev: Event) -> tuple[tuple[str, str], ...]:
    """What a support agent wants to see of an event: item, category, page, amount,
    the message channel and action of feedback, the time zone."""
    out = []
    for name in ("item_id", "category", "page"):
        value = getattr(ev, name)
        if value is not None:
            out.append((name, str(value)))
    if ev.amount is not None:
        out.append(("amount", f"{ev.amount:g} {ev.currency or ''}".strip()))
    if ev.message_channel:
        out.append(("channel", ev.message_channel))
    action = ev.props.get("action_id")
    if isinstance(action, str):
        out.append(("action_id", action))
    return tuple(out)


def event_lines(events: Sequence[Event]) -> list[EventLine]:
    """The events in event-time order (redeliveries once), runs of
    :data:`COLLAPSE_TYPES` of at least :data:`COLLAPSE_MIN` collapsed.

    >>> from intentstream.stream.contract.events import parse_event
    >>> evs = [parse_event(b'{"event_id":"e%d","user_id":"u","ts":%d,"type":"%s"}' % (i, 1767607200000 + i * 60000, t))
    ...        for i, t in enumerate([b"page_view"] * 4 + [b"add_to_cart"])]
    >>> [(line.type, line.count) for line in event_lines(evs)]
    [('page_view', 4), ('add_to_cart', 1)]
    """
    seen: set[str] = set()
    ordered = []
    for ev in sorted(events, key=lambda e: e.ts_ms):
        if ev.event_id not in seen:
            seen.add(ev.event_id)
            ordered.append(ev)
    lines: list[EventLine] = []
    i = 0
    while i < len(ordered):
        ev = ordered[i]
        j = i + 1
        if ev.type in COLLAPSE_TYPES:
            while j < len(ordered) and ordered[j].type == ev.type:
                j += 1
        if j - i >= COLLAPSE_MIN:
            lines.append(EventLine(ev.ts_ms, ordered[j - 1].ts_ms, ev.type, j - i, ev.event_id, ()))
        else:
            j = i + 1
            lines.append(EventLine(ev.ts_ms, ev.ts_ms, ev.type, 1, ev.event_id, key_props(ev)))
        i = j
    return lines


@dataclass(frozen=True)
class Explanation:
    """Everything known of one user, ready to render (see the module docstring).
    ``tz``: the user's latest time zone (times are shown on their clock); ``live``: the
    user's state in Redis now (live mode only)."""

    user_id: str
    source: str
    tz: str
    events: list[EventLine]
    n_events: int
    segments: list[dict[str, Any]]
    persona: str | None
    timers: list[TimerNote]
    decisions: list[DecisionChecks]
    settings: dict[str, Any]
    live: LiveState | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "user_id": self.user_id,
            "source": self.source,
            "tz": self.tz,
            "events": self.n_events,
            "event_lines": [e.to_dict() for e in self.events],
            "segments": self.segments,
            "persona": self.persona,
            "timers": [{**n.to_dict(), **_times(n)} for n in self.timers],
            "decisions": [d.to_dict() for d in self.decisions],
            "settings": self.settings,
        }
        if self.live is not None:
            out["now"] = self.live.to_dict()
        return out


def _times(n: TimerNote) -> dict[str, Any]:
    return {"armed_at": format_ts(n.armed_at), "due_ms": format_ts(n.due_ms), "ended_at": None if n.ended_at is None else format_ts(n.ended_at)}


def explain(trace: UserTrace, settings: Settings | None = None) -> Explanation:
    """The explanation of one user's trace."""
    settings = settings or default_settings()
    decided = [r for r in trace.audit if "status" in r]
    timers = timer_history(trace.events, decided, settings)
    checks = check_decisions(trace.user_id, trace.events, trace.audit, trace.outcomes, timers, settings)
    segments = sorted(trace.segments, key=lambda s: (record_ts(s["start"]), s.get("seq", 0)))
    latest = segments[-1] if segments else None
    persona = f"{latest['behaviour_stage']} · {latest['main_activity']}" if latest else None
    tz = next((e.tz for e in sorted(trace.events, key=lambda e: -e.ts_ms) if e.tz), None)
    fs = settings.fatigue
    return Explanation(
        user_id=trace.user_id,
        source=trace.source,
        tz=tz or settings.events.default_tz,
        events=event_lines(trace.events),
        n_events=len({e.event_id for e in trace.events}),
        segments=segments,
        persona=persona,
        timers=timers,
        decisions=checks,
        settings={
            "channel_cap": fs.channel_cap, "window_s": fs.window_s, "global_caps": [list(p) for p in fs.global_caps],
            "cooldown_s": fs.cooldown_s, "quiet_hours": f"{fs.quiet_start}-{fs.quiet_end}", "quiet_channels": list(fs.quiet_channels),
            "holdout_share": fs.holdout_share, "policy": settings.policy.enabled, "partitions": settings.topics.partitions,
        },  # fmt: skip
        live=trace.live,
    )
