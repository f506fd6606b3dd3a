"""One user's event time, stage by stage: sessions → triggers → decisions.

The engine's straight path. Each stage is a pure function of values:

* the sessionizer (:mod:`intentstream.stream.sessions.sessionizer`) takes a row and
  returns the segments it closed;
* the trigger rules (:class:`~intentstream.stream.triggers.rules.TriggerRules`) take an
  event, a closed segment or a due moment and return the triggers that fired;
* the decider (:class:`~intentstream.stream.decisions.decider.Decider`) takes a trigger
  hit and returns a decision; the user's
  :class:`~intentstream.stream.decisions.pending.PendingActions` hold deferred ones.

:class:`UserTimeline` composes them for the users of one engine step and collects what
they return, in the order it happens.

Every decision is also *watched* (:mod:`intentstream.stream.outcomes.watch`) until its
attribution window closes; then its outcome record is published — one more kind of
time-driven work.

Two clocks, on purpose. The **trigger rules see every event on arrival**, in the
partition's offset order — so a trigger the event itself fires (``kyc_rejected``) is
decided at once, not after the reorder buffer's ``allowed_lateness``; the rules' own
late-input policy (:mod:`intentstream.stream.triggers.rules`) makes their deadlines
independent of arrival order. The **sessionizer sees events in event-time order**
through its reorder buffer. **Time-driven work** — trigger timers (at deadline + 1),
held decisions (at their send time), the late run's flush and the session's close, and
outcome records (at window end + close grace) — runs
when the user's horizon passes it, earliest first (ties in that order), before the next
row is released and before an arriving event is applied. Each trigger is decided the
moment it fires, so a sent message's feedback timer is armed before the user's next
event. Everything depends only on the partition's offset order and the event times in
it — the same live (Kafka's order) and offline (the file's order) — never on batch cuts.

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
>>> tl.accept(st, T0 + 45 * MIN, "k1", "kyc_rejected", None, None, None, None, None, None, 0)
0
>>> [f.trigger for f in tl.fired]    # fired on arrival, while the event is still buffered
['cart_abandoned', 'kyc_rejected']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from intentstream.stream.decisions.contract import BehaviourPersona, Correction, Decision
from intentstream.stream.decisions.decider import Decider, TriggerHit
from intentstream.stream.engine.user_state import UserState
from intentstream.stream.outcomes.attribution import AttributionRules
from intentstream.stream.outcomes.record import ActionOutcome
from intentstream.stream.sessions.profiles import note_opt_out
from intentstream.stream.sessions.segments import IntentSegment
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
from intentstream.stream.settings import TriggerSettings
from intentstream.stream.triggers.rules import TriggerRules
from intentstream.stream.triggers.state import Fired

#: What a published record is: a new decision, a held one released or cancelled, a
#: correction, or the outcome of a decision whose window closed.
DECIDED, RELEASED, CANCELLED, CORRECTED, OUTCOME = "decided", "released", "cancelled", "corrected", "outcome"


class UserTimeline:
    """Runs the stages for users in event-time order; collects, in the order they happen,
    the closed ``segments``, the ``fired`` triggers and the ``records`` to publish:
    ``(kind, Decision | Correction | ActionOutcome)`` with kind :data:`DECIDED`,
    :data:`RELEASED`, :data:`CANCELLED`, :data:`CORRECTED` or :data:`OUTCOME`.

    ``rules`` None: sessions only. ``decider`` None: triggers fire but nothing is decided.
    ``attribution`` None: decisions are not watched (no outcome records).
    """

    __slots__ = ("cfg", "rules", "decider", "attribution", "tally", "segments", "fired", "records", "_premise", "_window_ms")

    def __init__(
        self, cfg: SessionConfig, rules: TriggerRules | None = None, decider: Decider | None = None,
        attribution: AttributionRules | None = None, tally: Mapping[str, Sequence[int]] | None = None,
    ) -> None:  # fmt: skip
        """``tally``: what the strategy policy may know of each arm in this step (the
        partition's :class:`~intentstream.stream.policy.tally.ArmTally` snapshot)."""
        self.cfg = cfg
        self.tally = tally
        self.rules = rules
        self.decider = decider
        self.attribution = attribution if decider is not None else None
        self.segments: list[IntentSegment] = []
        self.fired: list[Fired] = []
        self.records: list[tuple[str, Decision | Correction | ActionOutcome]] = []
        tcfg: TriggerSettings | None = rules.cfg if rules is not None else None
        self._premise = rules.premise_ms if rules is not None else {}
        self._window_ms = tcfg.correction_window_s * 1000 if tcfg is not None else 0

    @property
    def decisions(self) -> list[Decision]:
        """The decision records (new, released and cancelled ones), in order."""
        return [r for _, r in self.records if type(r) is Decision]

    # -- what the engine calls --

    def accept(
        self, st: UserState, ts: int, eid: str, typ: str, dev: str | None, ch: str | None, amt: float | None,
        tz: str | None, mch: str | None, extra: dict[str, Any] | None, watermark: int,
    ) -> int:  # fmt: skip
        """One arriving event: :data:`DUPLICATE` (ignored), :data:`LATE` (placed now) or
        :data:`ACCEPTED` (buffered for the sessionizer until the horizon passes it). First
        everything the arrival horizon makes due happens; then the trigger rules see the
        event (late or not)."""
        cfg = self.cfg
        hz = arrive(st, ts, eid, tz, watermark, cfg)
        if hz is None:
            return DUPLICATE
        self.advance(st, hz)
        row = buffered_row(ts, eid, typ, dev, ch, amt, mch, None)
        if ts < hz:
            place_late(st, row, hz, cfg)
            code = LATE
        else:
            buffer(st, row)
            code = ACCEPTED
        rules = self.rules
        if rules is not None:
            if typ == "unsubscribe":
                note_opt_out(st.prof, mch)  # before any decision that could still reach that channel
                self._cancelled(st, st.acts.on_opt_out(mch, ts))
            if st.outs:  # what the event achieved for decisions already made
                st.outs.on_event(typ, ts, extra.get("action_id") if extra else None, self.attribution.converts(typ))  # type: ignore[union-attr]
            self._decide(st, rules.on_fields(st.trig, ts, eid, typ, amt, extra, hz))
            goal_of = rules.goal_of(typ)
            if goal_of:
                rules.note_goal(st.trig, typ, ts)
            if goal_of and st.outs:
                st.outs.on_premise_goal(goal_of, ts, self._premise)
            if goal_of and st.acts:
                cancelled, corrections = st.acts.on_goal(st.user_id, goal_of, eid, ts, self._premise, hz, self._window_ms)
                self._cancelled(st, cancelled)
                self.records += [(CORRECTED, c) for c in corrections]
        return code

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
            if st.acts.held:
                h = st.acts.next_due()
                if h is not None and (due is None or h < due):
                    due = h
            if st.outs and (due is None or st.outs.due < due):
                due = st.outs.due
        return due

    # -- the order of things --

    def _settle(self, st: UserState, t: int) -> None:
        """Do, earliest first, what the horizon reaching ``t`` makes due: trigger timers
        (at deadline + 1), held decisions (at their send time), the late run's flush or
        the session's close, then outcome records (at window end + close grace)."""
        rules, cfg = self.rules, self.cfg
        x = next_expiry(st, cfg)
        if x is None or x > t:  # hot path (every released row): at most a timer is due
            if rules is None:
                return
            d = st.trig.next_due()
            if (d is None or d + 1 > t) and not st.acts.held and (not st.outs or st.outs.due > t):
                return
        while True:
            # the earliest of: a timer (deadline + 1), a held decision, an expiry; ties in that order
            moment, kind = t + 1, 0
            if rules is not None:
                d = st.trig.next_due()
                if d is not None and d + 1 < moment:
                    moment, kind = d + 1, 1
                h = st.acts.next_due() if st.acts.held else None
                if h is not None and h < moment:
                    moment, kind = h, 2
            x = next_expiry(st, cfg)
            if x is not None and x < moment:
                moment, kind = x, 3
            if st.outs and st.outs.due < moment:
                moment, kind = st.outs.due, 4
            if kind == 0:
                return
            if kind == 1:
                self._decide(st, rules.fire_due(st.trig, moment - 1))  # type: ignore[union-attr]
            elif kind == 2:
                self._release_held(st, moment)
            elif kind == 3:
                self._segment(st, expire(st, cfg), moment)
            else:
                first = st.trig.transacted_ms
                self.records += [(OUTCOME, o) for o in st.outs.take_due(st.user_id, moment, self.attribution, first)]  # type: ignore[arg-type]

    def _release(self, st: UserState, row: tuple) -> None:
        self._settle(st, row[0])
        for seg in release(st, row, self.cfg):
            self._segment(st, seg)

    def _segment(self, st: UserState, seg: IntentSegment, horizon: int | None = None) -> None:
        """A closed segment; ``horizon``: the user's horizon when time closed it (a late
        run's segment that far behind its events fires its triggers as stale)."""
        self.segments.append(seg)
        if self.rules is not None:
            self._decide(st, self.rules.on_segment(st.trig, seg, horizon))

    def _decide(self, st: UserState, fired: list[Fired]) -> None:
        """Each fired trigger -> its decision (catalogue + fatigue ledger), at once.

        The persona a decision sees is the *behaviour persona* of the user's latest closed
        segment when the trigger fired (stage and main activity): a pure function of the
        user's own events, so replay and live choose the same strategy. A sent or
        deferred message arms the user's feedback timer (ignored after ``[triggers]
        feedback_ignore_s``); a deferred one is held until its send time."""
        for f in fired:
            self.fired.append(f)
            if self.decider is None:
                continue
            persona = BehaviourPersona.of(*f.persona) if f.persona else None
            hit = TriggerHit.from_fired(
                st.user_id, f, tz=st.prof.tz or self.cfg.default_tz, opt_outs=st.prof.opt_outs,
                persona=persona, timers=st.trig.timers, active_hours=st.prof.hours,
            )  # fmt: skip
            d = self.decider.decide(hit, self.tally).decision
            self.records.append((DECIDED, d))
            if self.attribution is not None:
                st.outs.open(d, self.attribution)
            if d.is_delivery:
                self.rules.on_delivery(st.trig, d.action_id, d.trigger, d.delivery_at)  # type: ignore[union-attr]
                if d.status == "deferred" and self.rules.goal_seen(  # type: ignore[union-attr]
                    st.trig, d.trigger, d.decided_at - self._premise.get(d.trigger, 0), d.delivery_at
                ):  # its goal arrived before the decision was made (e.g. a purchase right after the segment)
                    self._cancelled(st, [d.cancelled("goal_reached")])
                elif d.status == "deferred":
                    st.acts.hold(d)
                else:
                    st.acts.remember_sent(d, d.decided_at, self._window_ms)

    def _release_held(self, st: UserState, at: int) -> None:
        """The held decisions due at ``at``: sent, unless the user opted out of the channel."""
        for d in st.acts.take_due(at):
            if d.channel in st.prof.opt_outs:
                self._cancelled(st, [d.cancelled("opt_out")])
                continue
            sent = d.released()
            self.records.append((RELEASED, sent))
            st.outs.update(sent)
            st.acts.remember_sent(sent, at, self._window_ms)

    def _cancelled(self, st: UserState, cancelled: list[Decision]) -> None:
        for d in cancelled:
            st.trig.awaiting.pop(d.action_id, None)  # nothing left to open or ignore
            self.records.append((CANCELLED, d))
            st.outs.update(d)


__all__ = ["ACCEPTED", "CANCELLED", "CORRECTED", "DECIDED", "DUPLICATE", "LATE", "OUTCOME", "RELEASED", "UserTimeline"]
