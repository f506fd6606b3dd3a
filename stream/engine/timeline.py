"""One user's event time, stage by stage: sessions → triggers → decisions.

The engine's straight path. Each stage is a pure function of values:

* the sessionizer (:mod:`intentstream.stream.sessions.sessionizer`) takes a row and
  returns the segments it closed;
* the trigger rules (:class:`~intentstream.stream.triggers.rules.TriggerRules`) take a row,
  a closed segment or a due moment and return the triggers that fired;
* the decider (:class:`~intentstream.stream.decisions.decider.Decider`) takes a trigger
  hit and returns a decision.

:class:`UserTimeline` composes them in event-time order for the users of one engine step
and collects what they return. *Order* is the whole point: before a row is released,
everything due before its time happens — trigger timers (at deadline + 1), the late
run's flush and the session's close, earliest first (ties in that order) — and each
trigger is decided the moment it fires, so a sent message's feedback timer is armed
before the user's next event. Hence every output, and what each trigger sees of the user
(e.g. the behaviour persona of the latest closed segment), is the same whichever way
time reached it: an event, a watermark, a batch cut.

>>> from intentstream.stream.engine.user_state import UserState
>>> from intentstream.stream.sessions.sessionizer import SessionConfig
>>> from intentstream.stream.triggers.rules import TriggerRules
>>> T0, MIN = 1767607200000, 60_000
>>> tl, st = UserTimeline(SessionConfig.from_settings(), TriggerRules()), UserState("u1")
>>> for i, typ in enumerate(["page_view", "add_to_cart", "page_view"]):
...     tl.accept(st, T0 + i * MIN, f"e{i}", typ, None, None, None, None, None, None, 0)
0
0
0
>>> tl.next_due(st) == T0 + 1       # the first buffered row
True
>>> tl.advance(st, T0 + 40 * MIN)   # released; the cart timer fired at +31 min; the session closed
>>> [s.closed_by for s in tl.segments], [f.trigger for f in tl.fired]
(['inactivity'], ['cart_abandoned'])
"""

from __future__ import annotations

from typing import Any

from intentstream.stream.decisions.contract import BehaviourPersona, Decision
from intentstream.stream.decisions.decider import Decider, TriggerHit
from intentstream.stream.engine.user_state import UserState
from intentstream.stream.sessions.segments import TYPE_INFO, IntentSegment
from intentstream.stream.sessions.sessionizer import (
    ACCEPTED,
    DUPLICATE,
    LATE,
    SessionConfig,
    arrive,
    buffer,
    buffered_row,
    close_open,
    expire,
    next_due,
    next_expiry,
    place_late,
    release,
    take_buffer,
    take_releasable,
)
from intentstream.stream.triggers.rules import Fired, TriggerRules


class UserTimeline:
    """Runs the stages for users in event-time order; collects, in the order they happen,
    the closed ``segments``, the ``fired`` triggers and their ``decisions``.

    ``rules`` None: sessions only. ``decider`` None: triggers fire but nothing is decided.
    """

    __slots__ = ("cfg", "rules", "decider", "experiment", "segments", "fired", "decisions")

    def __init__(
        self, cfg: SessionConfig, rules: TriggerRules | None = None, decider: Decider | None = None,
        experiment: str | None = None,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        self.rules = rules
        self.decider = decider
        self.experiment = experiment
        self.segments: list[IntentSegment] = []
        self.fired: list[Fired] = []
        self.decisions: list[Decision] = []

    # -- what the engine calls --

    def accept(
        self, st: UserState, ts: int, eid: str, typ: str, dev: str | None, ch: str | None, amt: float | None,
        tz: str | None, mch: str | None, extra: dict[str, Any] | None, watermark: int,
    ) -> int:  # fmt: skip
        """One arriving event: :data:`DUPLICATE` (ignored), :data:`LATE` (handled now) or
        :data:`ACCEPTED` (buffered until the horizon passes it, see :meth:`advance`)."""
        cfg = self.cfg
        hz = arrive(st, ts, eid, tz, watermark, cfg)
        if hz is None:
            return DUPLICATE
        row = buffered_row(ts, eid, typ, dev, ch, amt, mch, extra if self.rules is not None else None)
        if ts < hz:
            self.advance(st, hz)  # place it against the state as of its arrival
            place_late(st, row, hz, cfg)
            if self.rules is not None:  # out of order, but never ignored: a late payment still cancels
                self._trigger_row(st, row)
            return LATE
        buffer(st, row)
        return ACCEPTED

    def advance(self, st: UserState, hz: int) -> None:
        """Release the buffered rows older than horizon ``hz`` and do what ``hz`` makes due."""
        for row in take_releasable(st, hz):
            self._release(st, row)
        self._settle(st, hz)

    def flush(self, st: UserState) -> None:
        """End of input: release the whole buffer, close the session and the late run."""
        for row in take_buffer(st):
            self._release(st, row)
        for seg in close_open(st, self.cfg):
            self._segment(st, seg)

    def next_due(self, st: UserState) -> int | None:
        """Smallest horizon at which :meth:`advance` would change ``st`` (None: never)."""
        due = next_due(st, self.cfg)
        if self.rules is not None:
            d = st.trig.next_due()
            if d is not None and (due is None or d + 1 < due):
                due = d + 1  # a timer fires once the horizon is past its deadline
        return due

    # -- the order of things --

    def _settle(self, st: UserState, t: int) -> None:
        """Do, earliest first, what the horizon reaching ``t`` makes due: trigger timers
        (at deadline + 1), then the late run's flush or the session's close."""
        rules, cfg = self.rules, self.cfg
        x = next_expiry(st, cfg)
        if x is None or x > t:  # hot path (every released row): at most a timer is due
            if rules is None:
                return
            d = st.trig.next_due()
            if d is None or d + 1 > t:
                return
        while True:
            if rules is not None:
                d = st.trig.next_due()
                if d is not None and d + 1 <= t:
                    x = next_expiry(st, cfg)
                    if x is None or d + 1 <= x:
                        self._decide(st, rules.fire_due(st.trig, d))
                        continue
            x = next_expiry(st, cfg)
            if x is None or x > t:
                return
            self._segment(st, expire(st, cfg))

    def _release(self, st: UserState, row: tuple) -> None:
        self._settle(st, row[0])
        for seg in release(st, row, self.cfg):
            self._segment(st, seg)
        if self.rules is not None:
            self._trigger_row(st, row)

    def _segment(self, st: UserState, seg: IntentSegment) -> None:
        self.segments.append(seg)
        if self.rules is not None:
            self._decide(st, self.rules.on_segment(st.trig, seg))

    def _trigger_row(self, st: UserState, row: tuple) -> None:
        n = len(row)
        info = TYPE_INFO.get(row[2])
        typ = info[0] if info is not None else str(row[2])
        fired = self.rules.on_fields(st.trig, row[0], row[1], typ, row[5] if n > 5 else None, row[7] if n > 7 else None)  # type: ignore[union-attr]
        if fired:
            self._decide(st, fired)

    def _decide(self, st: UserState, fired: list[Fired]) -> None:
        """Each fired trigger -> its decision (catalogue + fatigue ledger), at once.

        The persona a decision sees is the *behaviour persona* of the user's latest closed
        segment when the trigger fired (stage and main activity): a pure function of the
        user's own events, so replay and live choose the same strategy. A sent or
        deferred message arms the user's feedback timer (ignored after ``[triggers]
        feedback_ignore_s``)."""
        for f in fired:
            self.fired.append(f)
            if self.decider is None:
                continue
            persona = BehaviourPersona.of(*f.persona) if f.persona else None
            hit = TriggerHit.from_fired(
                st.user_id, f, tz=st.prof.tz or self.cfg.default_tz, opt_outs=st.prof.opt_outs,
                persona=persona, experiment=self.experiment,
            )  # fmt: skip
            d = self.decider.decide(hit).decision
            self.decisions.append(d)
            if d.is_delivery:
                self.rules.on_delivery(st.trig, d.action_id, d.trigger, d.delivery_at)  # type: ignore[union-attr]


__all__ = ["ACCEPTED", "DUPLICATE", "LATE", "UserTimeline"]
