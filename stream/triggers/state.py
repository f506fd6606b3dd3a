"""What the trigger rules remember of one user (:class:`TriggerState`), its timers and
what a rule returns when it fires (:class:`Fired`). Stored inside the user's record, so
kept small: :meth:`TriggerState.to_dict` writes only what is set.

>>> st = TriggerState(timers={"cart": Timer(1000, ("a1",), {})}, goals={"payment": 500}, churn_step=2)
>>> TriggerState.from_dict(st.to_dict()) == st
True
>>> st.next_due()
1000
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class Fired:
    """A trigger occurrence: ``evidence`` identifies it (and so its action_id).

    ``stale``: the moment it is about was already long past when the engine learned of
    it (a late event armed it; see the late-input policy in :mod:`.rules`): it is
    recorded, never sent."""

    trigger: str
    ts_ms: int
    evidence: tuple[str, ...]
    facts: Mapping[str, Any] = field(default_factory=dict)
    ignored_streak: int = 0
    #: (behaviour stage, main activity) of the user's latest closed segment when it fired
    persona: tuple[str, str] | None = None
    stale: bool = False


@dataclass(slots=True)
class Timer:
    """``due_ms`` is the deadline (the fired trigger's time). A timer a late event armed
    with its deadline already behind the user's horizon waits until ``not_before`` (that
    horizon + allowed lateness), so the rest of a flushed burst — the checkout after the
    add_to_cart — can still cancel it; ``stale`` when the deadline was long past."""

    due_ms: int
    evidence: tuple[str, ...]
    facts: dict[str, Any]
    stale: bool = False
    not_before: int = 0

    @property
    def fire_at(self) -> int:
        """The smallest watermark-deadline at which it fires."""
        return self.due_ms if self.due_ms >= self.not_before else self.not_before


@dataclass(slots=True)
class TriggerState:
    """One user's trigger memory; small, and serializable with :meth:`to_dict`."""

    timers: dict[str, Timer] = field(default_factory=dict)
    cart_items: int = 0
    days: list[int] = field(default_factory=list)  # distinct UTC day numbers of visits, last N days
    last_event_ms: int = 0
    #: the event id of the user's latest visit (the churn timer's evidence)
    last_event_id: str = ""
    ignored_streak: int = 0
    dismiss_streak: dict[str, int] = field(default_factory=dict)
    blocked_until: dict[str, int] = field(default_factory=dict)
    # action_id -> (feedback deadline, trigger) for messages awaiting an open
    awaiting: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: event time of the user's first payment_success (None: never transacted)
    transacted_ms: int | None = None
    # behaviour stage and main activity of the user's latest closed segment
    persona: tuple[str, str] | None = None
    #: timer kind -> event time of the latest goal of that journey (cart: checkout or
    #: payment; payment: payment_success; kyc: approval or rejection): a step older than
    #: it, arriving late, does not re-open the journey
    goals: dict[str, int] = field(default_factory=dict)
    #: timer kind -> the deadline it last fired at: a step (churn: an activity) arriving
    #: late whose deadline would not be later belongs to the journey already decided, and
    #: does not arm it again
    fired: dict[str, int] = field(default_factory=dict)
    #: churn reminders already fired in the user's current silence (0 .. number of steps):
    #: the cadence goes on from the next one, and stops after the last until a return
    churn_step: int = 0
    #: goal event type -> event time of the user's latest such event (named goals only:
    #: ``TriggerRules.note_goal``), so a decision held for later honours a goal that
    #: arrived before the decision was made
    last_goal: dict[str, int] = field(default_factory=dict)
    #: the user's churn cadence (silences in ms), derived from ``days`` by the rules and
    #: dropped whenever ``days`` changes; a cache, never stored (None: not computed yet)
    cadence: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

    def next_due(self) -> int | None:
        """The earliest deadline of any timer, or None (hot: called per released event)."""
        best = None
        for t in self.timers.values():
            d = t.due_ms if t.due_ms >= t.not_before else t.not_before
            if best is None or d < best:
                best = d
        if self.awaiting:
            for due, _ in self.awaiting.values():
                if best is None or due < best:
                    best = due
        return best

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.timers:
            out["t"] = {
                k: [t.due_ms, list(t.evidence), t.facts, *([int(t.stale), t.not_before] if t.stale or t.not_before else [])]
                for k, t in self.timers.items()
            }
        if self.cart_items:
            out["c"] = self.cart_items
        if self.days:
            out["d"] = self.days
        if self.last_event_ms:
            out["l"] = self.last_event_ms
        if self.last_event_id:
            out["le"] = self.last_event_id
        if self.ignored_streak:
            out["i"] = self.ignored_streak
        if self.dismiss_streak:
            out["ds"] = self.dismiss_streak
        if self.blocked_until:
            out["b"] = self.blocked_until
        if self.awaiting:
            out["a"] = {k: [due, trig] for k, (due, trig) in self.awaiting.items()}
        if self.transacted_ms is not None:
            out["x"] = self.transacted_ms
        if self.persona:
            out["p"] = list(self.persona)
        if self.goals:
            out["g"] = self.goals
        if self.fired:
            out["f"] = self.fired
        if self.churn_step:
            out["cs"] = self.churn_step
        if self.last_goal:
            out["lg"] = self.last_goal
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TriggerState:
        if not d:
            return cls()
        return cls(
            timers={k: Timer(v[0], tuple(v[1]), dict(v[2]), *([bool(v[3]), v[4]] if len(v) > 4 else [])) for k, v in d.get("t", {}).items()},
            cart_items=d.get("c", 0),
            days=list(d.get("d", [])),
            last_event_ms=d.get("l", 0),
            last_event_id=d.get("le", ""),
            ignored_streak=d.get("i", 0),
            dismiss_streak=dict(d.get("ds", {})),
            blocked_until=dict(d.get("b", {})),
            awaiting={k: (v[0], v[1]) for k, v in d.get("a", {}).items()},
            transacted_ms=d.get("x"),
            persona=tuple(d["p"]) if d.get("p") else None,
            goals=dict(d.get("g", {})),
            fired=dict(d.get("f", {})),
            churn_step=d.get("cs", 0),
            last_goal=dict(d.get("lg", {})),
        )
