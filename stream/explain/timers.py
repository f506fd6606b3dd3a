"""The trigger timers of one user: when each was armed, by which event, its deadline, and
how it ended — recomputed with the pure trigger rules
(:class:`~intentstream.stream.triggers.rules.TriggerRules`) on the user's own events in
arrival order, each seen at the user's own horizon (newest event − allowed lateness), as
the engine's :class:`~intentstream.stream.engine.timeline.UserTimeline` sees them when
the user is alone on the partition.

Deadlines do not depend on other users (the rules' late-input policy), but *when* a
timer fires does: live, other users' events move the partition's watermark. So whether a
timer fired is read from the engine's decisions (a decision of its trigger dated at its
deadline), not from the recomputation.

>>> from intentstream.stream.contract.events import parse_event
>>> evs = [parse_event(b'{"event_id":"a","user_id":"u","ts":%d,"type":"%s"}' % (t, k.encode()))
...        for t, k in [(0 + 1767607200000, "add_to_cart"), (600_000 + 1767607200000, "add_to_cart"),
...                     (7_200_000 + 1767607200000, "page_view")]]
>>> evs[1].event_id = "b"; evs[2].event_id = "c"
>>> [(n.trigger, n.armed_by, n.end, n.ended_by) for n in timer_history(evs, [{"trigger": "cart_abandoned", "decided_at": "2026-01-05T10:40:00.000Z"}])]
[('cart_abandoned', 'a', 'moved', 'b'), ('cart_abandoned', 'b', 'fired', None)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from intentstream.stream.contract.events import Event, record_ts
from intentstream.stream.settings import Settings, default_settings
from intentstream.stream.triggers.rules import TIMER_TRIGGER, TriggerRules, trigger_extra
from intentstream.stream.triggers.state import TriggerState

#: How a timer ended: fired (a decision of its trigger at its deadline), cancelled by a
#: goal (or an emptied cart), moved by a later step, or still pending at the end.
FIRED, CANCELLED, MOVED, PENDING = "fired", "cancelled", "moved", "pending"


@dataclass(frozen=True, slots=True)
class TimerNote:
    """One armed timer: ``trigger``, armed at event time ``armed_at`` by event
    ``armed_by`` (None: the churn cadence's next step), due at ``due_ms``; ``end`` one of
    :data:`FIRED`, :data:`CANCELLED`, :data:`MOVED`, :data:`PENDING`, at ``ended_at`` by
    event ``ended_by``. ``stale``: armed by a late event long after its deadline."""

    trigger: str
    armed_at: int
    armed_by: str | None
    armed_type: str | None
    due_ms: int
    end: str
    ended_at: int | None = None
    ended_by: str | None = None
    ended_type: str | None = None
    stale: bool = False

    def open_at(self, t: int) -> bool:
        """Whether the journey was pending (armed, not yet ended) at event time ``t``."""
        if self.armed_at > t:
            return False
        return self.end == PENDING or self.ended_at is None or self.ended_at > t

    def to_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger, "armed_at": self.armed_at, "armed_by": self.armed_by, "armed_type": self.armed_type,
            "due_ms": self.due_ms, "end": self.end, "ended_at": self.ended_at, "ended_by": self.ended_by,
            "ended_type": self.ended_type, "stale": self.stale,
        }  # fmt: skip


def timer_history(events: Iterable[Event], decisions: Sequence[Mapping[str, Any]], settings: Settings | None = None) -> list[TimerNote]:
    """Every timer the user's events armed, in the order armed (see the module docstring);
    ``decisions``: the user's decision records (``trigger``, ``decided_at``)."""
    settings = settings or default_settings()
    lateness = settings.sessions.allowed_lateness_s * 1000
    rules = TriggerRules(settings.triggers, lateness)
    decided = {(d["trigger"], record_ts(d["decided_at"])) for d in decisions}
    st = TriggerState()
    open_: dict[str, tuple[int, str | None, str | None, int, bool]] = {}  # kind -> (armed_at, by, type, due, stale)
    notes: list[TimerNote] = []
    seen: set[str] = set()
    newest = None

    def close(kind: str, end: str, at: int, ev: Event | None) -> None:
        armed_at, by, typ, due, stale = open_.pop(kind)
        notes.append(TimerNote(TIMER_TRIGGER[kind], armed_at, by, typ, due, end, at, ev.event_id if ev else None, ev.type if ev else None, stale))

    def note(before: Mapping[str, int], fired: set[str], at: int, ev: Event | None) -> None:
        """Close the timers that ``ev`` (None: the horizon) fired, cancelled or moved; open the new ones."""
        for kind, due in before.items():
            t = st.timers.get(kind)
            if t is not None and t.due_ms == due:
                continue
            if kind in fired or (TIMER_TRIGGER[kind], due) in decided:
                close(kind, FIRED, due, None)
            else:
                close(kind, CANCELLED if t is None else MOVED, at, ev)
        for kind, t in st.timers.items():
            if kind not in open_:
                by = ev if kind not in fired else None  # None: the churn cadence's next step
                open_[kind] = (at, by.event_id if by else None, by.type if by else None, t.due_ms, t.stale)

    for ev in events:
        if ev.event_id in seen:  # a redelivery: the engine's dedup drops it
            continue
        seen.add(ev.event_id)
        hz = newest - lateness if newest is not None else None
        if hz is not None:  # first what the user's horizon makes due (the engine settles it first)
            before = {k: t.due_ms for k, t in st.timers.items()}
            fired = {k for k, name in TIMER_TRIGGER.items() if any(f.trigger == name for f in rules.fire_due(st, hz - 1))}
            note(before, fired, hz, None)
        before = {k: t.due_ms for k, t in st.timers.items()}
        rules.on_fields(st, ev.ts_ms, ev.event_id, ev.type, ev.amount, trigger_extra(ev), hz)
        note(before, set(), ev.ts_ms, ev)
        newest = ev.ts_ms if newest is None or ev.ts_ms > newest else newest
    for kind in list(open_):
        due = open_[kind][3]
        close(kind, FIRED if (TIMER_TRIGGER[kind], due) in decided else PENDING, due, None)
    return sorted(notes, key=lambda n: (n.armed_at, n.due_ms))
