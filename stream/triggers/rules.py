"""Trigger rules: the moments that matter, detected on event time.

Rules see one user's events **on arrival**, in the partition's offset order (so a
trigger the event fires itself is decided at once), and that user's closed segments.
Deadlines are *event-time timers* kept in the user's :class:`TriggerState`; the
partition engine indexes each user's earliest deadline and calls
:meth:`TriggerRules.fire_due` once the user's horizon passes it. A timer-fired trigger
happens *at its deadline* (``ts_ms`` = deadline), never at the moment it was noticed,
and nothing here reads a clock, so replay and live agree.

Late-input policy (README, "Late and unordered input"), what makes arrival order safe:

* a journey's deadline runs from its *latest* step (churn: from the user's latest
  visit): a late step never moves it earlier; a step not later than a deadline that
  already fired does not fire it again (churn: a late visit older than a reminder
  already fired does not start the cadence over, it goes on from the next step);
* churn's deadline is a pure function of the user's visits and of the reminders already
  fired, whatever their arrival order: a late old visit never moves the silence's start
  back, but as a new active day it can shorten the user's rhythm and so bring the
  pending step forward — never below the configured step after the latest visit;
* a step older than the journey's latest goal does not re-open it; a goal cancels the
  timer unless a step came after it;
* a timer a late event arms with its deadline already behind the user's horizon waits
  one allowed lateness of the horizon (the rest of a flushed burst may cancel it), and
  fires *stale* (recorded, never sent) if the deadline was more than
  ``late_timer_grace_s`` behind; the same for a ``kyc_rejected`` that late and for the
  segment triggers of a late run;
* a ``kyc_rejected`` not later than a KYC outcome already seen (a retry with a new id, a
  rejection flushed after the approval) does not fire.

Default rules (every number is a ``[triggers]`` setting):

=========================  ==============================================================
``cart_abandoned``         ``add_to_cart``, then neither ``checkout_start`` nor
                           ``payment_success`` within 30 min of the *last* add_to_cart
                           (a ``remove_from_cart`` that empties the cart also cancels).
``payment_stalled``        ``checkout_start``, ``payment_submit`` or ``payment_fail``, then
                           no ``payment_success`` within 15 min of the last of them.
``kyc_stalled``            ``kyc_start`` or ``kyc_submit``, then no ``kyc_approved`` within
                           24 h of the last of them (``kyc_rejected`` cancels it).
``kyc_rejected``           fires at once on ``kyc_rejected``.
``churn_risk``             visits on >= 2 distinct UTC days in the trailing 30 days, then
                           silent: one reminder at each step of the cadence, 7, 14 and 30
                           days after the latest visit (``step`` 1, 2, 3 in the facts; the
                           evidence is that event, plus ``churn_step:<n>`` from step 2), then
                           nothing until the user visits again, which starts it over. A
                           visit is any event but the reactions to a message
                           (``message_open/click/dismiss``, ``unsubscribe``: the outcomes'
                           ``NOT_A_VISIT``), so opening reminders never restarts them.
                           *Personal rhythm*: with >= 3 such days in those 30, the first
                           silence is max(7 days, 2 x the median gap between consecutive
                           active days) and the later steps keep their ratio to it (a user
                           who comes every 10 days: 20, 40, 86 days). See
                           :meth:`TriggerRules.cadence`.
``first_transaction_nudge`` a closed segment with intent strength >= 0.6 whose behaviour
                           stage is exploring or considering, from a user with no
                           completed transaction; fires at the segment's end.
``coupon_interest``        a closed coupon-oriented segment with intent strength >= 0.5 from
                           a user with no completed transaction in it; at the segment's end.
=========================  ==============================================================

Feedback: a sent or deferred decision arms a feedback timer at its delivery time +
24 h. ``message_open``/``message_click`` naming its ``props.action_id`` disarm it and
reset the *ignored* streak; the timer firing counts the message as ignored. After 5
consecutive ignored messages the decider switches the user to the strategy's alternate
group (the regret rule; :attr:`TriggerState.ignored_streak` carries the count).
``message_dismiss`` counts consecutive dismissals per trigger; after 3 the trigger is
blocked for that user for 30 days. Feedback events without a known ``action_id`` still
reset (open/click) or count (dismiss, against the trigger named in ``props.trigger``).

>>> from intentstream.stream.contract.events import parse_event
>>> rules, st = TriggerRules(), TriggerState()
>>> e = parse_event(b'{"event_id":"a1","user_id":"u1","ts":"2026-01-05T10:00:00Z","type":"add_to_cart","item_id":"sku9"}')
>>> rules.on_event(st, e)
[]
>>> st.next_due() == e.ts_ms + 30 * 60_000
True
>>> [(f.trigger, f.ts_ms - e.ts_ms, f.evidence) for f in rules.fire_due(st, e.ts_ms + 31 * 60_000)]
[('cart_abandoned', 1800000, ('a1',))]
"""

from __future__ import annotations

import heapq
from typing import Any, Iterable, Mapping

from intentstream.stream.contract.events import Event
from intentstream.stream.outcomes.record import NOT_A_VISIT
from intentstream.stream.settings import TriggerSettings, default_settings
from intentstream.stream.triggers.state import Fired, Timer, TriggerState

DAY_MS = 86_400_000

#: Timer kinds armed by events, and the trigger each fires.
CART, PAYMENT, KYC, CHURN = "cart", "payment", "kyc", "churn"
TIMER_TRIGGER = {CART: "cart_abandoned", PAYMENT: "payment_stalled", KYC: "kyc_stalled", CHURN: "churn_risk"}
CHURN_TRIGGER = TIMER_TRIGGER[CHURN]

ALL_TRIGGERS = (
    "cart_abandoned", "payment_stalled", "kyc_stalled", "kyc_rejected",
    "churn_risk", "first_transaction_nudge", "coupon_interest",
)  # fmt: skip


#: Event types whose extra fields (item, currency, feedback references) the rules read.
EXTRA_TYPES = frozenset(
    {"add_to_cart", "checkout_start", "payment_submit", "payment_fail", "payment_success",
     "kyc_rejected", "message_open", "message_click", "message_dismiss"}
)  # fmt: skip


def trigger_extra(ev: Event) -> dict[str, Any] | None:
    """The few fields beyond (ts, id, type, amount) the rules need, for the types that
    need them: kept in the sessionizer's reorder buffer, so only what is used."""
    if ev.type not in EXTRA_TYPES:
        return None
    extra: dict[str, Any] = {}
    for name in ("item_id", "category", "currency"):
        value = getattr(ev, name)
        if value is not None:
            extra[name] = value
    for name in ("action_id", "trigger"):
        value = ev.props.get(name)
        if isinstance(value, str):
            extra[name] = value
    return extra or None


def _facts(extra: Mapping[str, Any], amount: float | None) -> dict[str, Any]:
    facts = {k: extra[k] for k in ("item_id", "category", "currency") if k in extra}
    if amount is not None:
        facts["amount"] = amount
    return facts


class TriggerRules:
    """Pure rule logic over a :class:`TriggerState`; see the module docstring."""

    def __init__(self, config: TriggerSettings | None = None, lateness_ms: int | None = None) -> None:
        """``config``: the ``[triggers]`` settings (default: the defaults file's);
        ``lateness_ms``: the sessions' allowed lateness (how long a timer that a late event
        armed waits for the rest of its burst; default: the defaults file's)."""
        self.cfg = cfg = config or default_settings().triggers
        if lateness_ms is None:
            lateness_ms = default_settings().sessions.allowed_lateness_s * 1000
        self.lateness_ms = lateness_ms
        self.enabled = frozenset(cfg.enabled)
        self.grace_ms = cfg.late_timer_grace_s * 1000
        #: timer kind -> its window (the deadline is the journey's latest step + window)
        self.window_ms = {
            CART: cfg.cart_abandon_s * 1000, PAYMENT: cfg.payment_stall_s * 1000,
            KYC: cfg.kyc_stall_s * 1000, CHURN: cfg.churn_steps_s[0] * 1000,
        }  # fmt: skip
        #: the churn cadence without a personal rhythm: silences after the latest activity
        self.churn_steps_ms = tuple(s * 1000 for s in cfg.churn_steps_s)
        if not self.churn_steps_ms or self.churn_steps_ms[0] <= 0 or list(self.churn_steps_ms) != sorted(set(self.churn_steps_ms)):
            raise ValueError(f"[triggers] churn_steps_s must be positive and increasing, got {list(cfg.churn_steps_s)}")
        if cfg.churn_rhythm_factor < 0:
            raise ValueError(f"[triggers] churn_rhythm_factor must be >= 0, got {cfg.churn_rhythm_factor}")
        #: trigger -> how far before its decision a goal still contradicts it (0: never);
        #: churn: the first step (later steps and longer rhythms had a longer silence, so
        #: this never contradicts a reminder wrongly, but can miss an earlier visit)
        self.premise_ms = {TIMER_TRIGGER[k]: w for k, w in self.window_ms.items()}
        goals: dict[str, set[str]] = {}
        for trigger, types in cfg.goals.items():
            for typ in types:
                goals.setdefault(typ, set()).add(trigger)
        self._any_goal = frozenset(goals.pop("*", ()))
        # a reaction to a message is no visit: it is a goal only where named explicitly
        self._goal_triggers = {typ: frozenset(ts) | (frozenset() if typ in NOT_A_VISIT else self._any_goal) for typ, ts in goals.items()}
        self._goal_triggers.update({typ: frozenset() for typ in NOT_A_VISIT if typ not in goals})
        #: trigger -> its named goal event types (not "*"): the user's latest event of
        #: each such type is kept (``TriggerState.last_goal``, one entry per type)
        self._goal_types = {t: tuple(sorted(typ for typ, ts in goals.items() if t in ts)) for t in {t for ts in goals.values() for t in ts}}
        self._named_goal_types = frozenset(goals)

    def goal_of(self, event_type: str) -> frozenset[str]:
        """The triggers for which an event of this type is a goal (``[triggers.goals]``)."""
        return self._goal_triggers.get(event_type, self._any_goal)

    def note_goal(self, st: TriggerState, event_type: str, ms: int) -> None:
        """Remember the user's latest event of a named goal type (for a "*" goal the latest
        visit is already kept): what :meth:`goal_seen` reads."""
        if event_type in self._named_goal_types and ms > st.last_goal.get(event_type, -1):
            st.last_goal[event_type] = ms

    def goal_seen(self, st: TriggerState, trigger: str, after: int, before: int) -> bool:
        """Whether an event the user sent *before* a decision was made is a goal of its
        trigger dated in (``after``, ``before``): a goal that arrived first, which the
        decision must still honour (its held message is cancelled). Reads the latest event
        of each goal type (a "*" goal: the latest visit)."""
        types = self._goal_types.get(trigger)
        if types is not None:
            return any(after < st.last_goal.get(typ, -1) < before for typ in types)
        return trigger in self._any_goal and after < st.last_event_ms < before

    # ------------------------------------------------------------------ events
    def on_event(self, st: TriggerState, ev: Event) -> list[Fired]:
        """Update timers for one :class:`~intentstream.stream.contract.events.Event` (in event-time order);
        deadlines before it fire first: the user's own later event proves they passed."""
        due = st.next_due()
        fired = self.fire_due(st, ev.ts_ms - 1) if due is not None and due < ev.ts_ms else []
        return fired + self.on_fields(st, ev.ts_ms, ev.event_id, ev.type, ev.amount, trigger_extra(ev))

    def on_fields(
        self, st: TriggerState, ms: int, event_id: str, t: str, amount: float | None,
        extra: Mapping[str, Any] | None, horizon: int | None = None,
    ) -> list[Fired]:  # fmt: skip
        """:meth:`on_event` on an event's fields (``extra``: see :func:`trigger_extra`),
        once the deadlines the user's horizon has passed have fired (the engine settles
        them first). ``horizon``: the user's horizon when the event arrived; an event
        older than it is *late* (see the late-input policy). Returns the triggers fired
        at once (kyc_rejected)."""
        extra = extra or {}
        fired: list[Fired] = []
        visit = t not in NOT_A_VISIT  # churn's activity: a reaction to a message is no return
        moved = self._note_activity(st, ms, event_id) if visit else False

        if t == "add_to_cart":
            st.cart_items += 1
            self._step(st, CART, ms, event_id, _facts(extra, amount), horizon)
        elif t == "remove_from_cart":
            st.cart_items = max(0, st.cart_items - 1)
            if st.cart_items == 0:
                st.timers.pop(CART, None)
        if t in ("checkout_start", "payment_success"):
            self._goal(st, CART, ms)
            st.cart_items = 0
        if t in ("checkout_start", "payment_submit", "payment_fail"):
            self._step(st, PAYMENT, ms, event_id, _facts(extra, amount), horizon, merge_facts=True)
        elif t == "payment_success":
            self._goal(st, PAYMENT, ms)
            if st.transacted_ms is None or ms < st.transacted_ms:
                st.transacted_ms = ms  # event time: a segment that ended before it still counts as never transacted
        if t in ("kyc_start", "kyc_submit"):
            self._step(st, KYC, ms, event_id, {"step": t}, horizon)
        elif t in ("kyc_approved", "kyc_rejected"):
            # the same moment again (an upload retried with a new id), or older than an
            # outcome already seen (a rejection flushed after the approval): not news
            superseded = st.goals.get(KYC, -1) >= ms
            self._goal(st, KYC, ms)
            if t == "kyc_rejected" and not superseded:
                fired += self._fire(st, Fired("kyc_rejected", ms, (event_id,), _facts(extra, amount), stale=self._stale(ms, horizon)))
        elif t in ("message_open", "message_click"):
            aid = extra.get("action_id", "")
            trig = self._feedback_trigger(st, aid, extra)
            st.awaiting.pop(aid, None)
            st.ignored_streak = 0
            if trig:
                st.dismiss_streak.pop(trig, None)
        elif t == "message_dismiss":
            aid = extra.get("action_id", "")
            trig = self._feedback_trigger(st, aid, extra)
            st.awaiting.pop(aid, None)
            if trig:
                n = st.dismiss_streak.get(trig, 0) + 1
                st.dismiss_streak[trig] = n
                if n >= self.cfg.dismiss_streak_block:
                    st.blocked_until[trig] = ms + self.cfg.dismiss_block_s * 1000
                    st.dismiss_streak.pop(trig)

        if visit:
            self._churn(st, moved, horizon)
        return fired

    def _note_activity(self, st: TriggerState, ms: int, event_id: str) -> bool:
        """A visit: keep the user's latest visit and the UTC days of their visits in the
        trailing lookback (churn's active days); True when the latest visit moved."""
        moved = ms > st.last_event_ms or (ms == st.last_event_ms and event_id > st.last_event_id)
        if moved:
            st.last_event_ms, st.last_event_id = ms, event_id
        day = ms // DAY_MS
        if day not in st.days:
            st.days.append(day)
            st.days.sort()
            st.cadence = None
        horizon = st.last_event_ms // DAY_MS - self.cfg.churn_lookback_days + 1
        if st.days and st.days[0] < horizon:
            st.days = [d for d in st.days if d >= horizon]
            st.cadence = None
        return moved

    # ------------------------------------------------------------------- churn
    def cadence(self, days: list[int]) -> tuple[int, ...]:
        """The silences (ms after the latest visit) at which ``churn_risk`` reminds a
        user active on these UTC ``days`` (sorted day numbers): ``[triggers]
        churn_steps_s``, stretched to the user's own rhythm. With at least
        ``churn_rhythm_min_days`` days, the first silence is max(first step,
        ``churn_rhythm_factor`` x the median gap between consecutive active days) and each
        later step keeps its ratio to the first. A pure function of the days, in integers.

        >>> r = TriggerRules()
        >>> [s // DAY_MS for s in r.cadence([100, 101])]        # too few days for a rhythm
        [7, 14, 30]
        >>> [s // DAY_MS for s in r.cadence([100, 101, 103])]   # every day or two: 2 x 1.5 < 7
        [7, 14, 30]
        >>> [round(s / DAY_MS, 1) for s in r.cadence([100, 110, 120])]  # every 10 days
        [20.0, 40.0, 85.7]
        """
        steps = self.churn_steps_ms
        if len(days) < self.cfg.churn_rhythm_min_days or len(days) < 2:
            return steps
        gaps = sorted(b - a for a, b in zip(days, days[1:]))
        twice_median = gaps[len(gaps) // 2] + gaps[(len(gaps) - 1) // 2]
        first = int(self.cfg.churn_rhythm_factor * twice_median * DAY_MS) // 2
        if first <= steps[0]:
            return steps
        return tuple(s * first // steps[0] for s in steps)

    def _churn(self, st: TriggerState, moved: bool, horizon: int | None) -> None:
        """(Re)arm the churn timer at the next step of the cadence after the user's latest
        visit: a pure function of the user's visits and of the reminders already fired.

        A visit later than the last reminder fired starts the cadence over (a new
        silence); one older than it, arriving late, moves the silence's start but keeps
        the count, so one silence never gets more reminders than there are steps. A step
        whose deadline is not later than the last one fired is skipped (decided already).
        A late old visit never moves the start back; it can refine the rhythm, which can
        bring the pending step forward, never below the configured step."""
        if moved and st.last_event_ms > st.fired.get(CHURN, -1):
            st.churn_step = 0
        timer = st.timers.get(CHURN)
        if CHURN_TRIGGER not in self.enabled or len(st.days) < self.cfg.churn_min_active_days:
            if timer is not None:
                del st.timers[CHURN]
            return
        cadence = st.cadence
        if cadence is None:
            cadence = st.cadence = self.cadence(st.days)
        last, done, k = st.last_event_ms, st.fired.get(CHURN, -1), st.churn_step
        while k < len(cadence) and last + cadence[k] <= done:
            k += 1
        if k == len(cadence):  # the cadence is over: quiet until the user is back
            if timer is not None:
                del st.timers[CHURN]
            return
        due = last + cadence[k]
        evidence = (st.last_event_id,) if k == 0 else (st.last_event_id, f"churn_step:{k + 1}")
        if timer is None:
            st.timers[CHURN] = self._timer(due, evidence, {"active_days": len(st.days), "step": k + 1}, horizon)
            return
        # hot path: most events of active users land here; no new timer
        if due != timer.due_ms:
            timer.due_ms = due
            timer.stale = self._stale(due, horizon)
            timer.not_before = self._not_before(due, horizon)
        timer.evidence = evidence
        timer.facts["active_days"] = len(st.days)
        timer.facts["step"] = k + 1

    def _timer(self, due: int, evidence: tuple[str, ...], facts: dict[str, Any], horizon: int | None) -> Timer:
        return Timer(due, evidence, facts, self._stale(due, horizon), self._not_before(due, horizon))

    def _not_before(self, deadline: int, horizon: int | None) -> int:
        """A deadline already behind the horizon (a late event armed it) waits until the
        horizon has moved one allowed lateness further: the rest of its burst first."""
        return horizon + self.lateness_ms if horizon is not None and deadline < horizon else 0

    def _stale(self, deadline: int, horizon: int | None) -> bool:
        """A moment already further behind the user's horizon than the grace when a late
        event revealed it (``[triggers] late_timer_grace_s``)."""
        return horizon is not None and deadline + self.grace_ms < horizon

    def _step(
        self, st: TriggerState, kind: str, ms: int, event_id: str, facts: dict[str, Any], horizon: int | None,
        merge_facts: bool = False,
    ) -> None:  # fmt: skip
        """A step of a journey at ``ms`` (re)arms its timer at the *latest* step + window.
        A late step never pulls the deadline back, a step older than the journey's
        latest goal does not re-open it, and one whose deadline is not after the one that
        already fired (an older step, a retry) does not fire the journey again."""
        window = self.window_ms[kind]
        if TIMER_TRIGGER[kind] not in self.enabled or st.goals.get(kind, -1) > ms or st.fired.get(kind, -1) >= ms + window:
            return
        prev = st.timers.get(kind)
        due = ms + window
        if prev is not None:
            if prev.due_ms > due:
                due = prev.due_ms
            if merge_facts:
                facts = {**prev.facts, **facts} if prev.due_ms <= ms + window else {**facts, **prev.facts}
        evidence = ((prev.evidence if prev else ()) + (event_id,))[-5:]
        st.timers[kind] = self._timer(due, evidence, facts, horizon)

    def _goal(self, st: TriggerState, kind: str, ms: int) -> None:
        """The journey's goal at ``ms``: cancels its timer unless a step came after the goal
        (the user started over); remembered, so older steps arriving late stay closed."""
        timer = st.timers.get(kind)
        if timer is not None and ms >= timer.due_ms - self.window_ms[kind]:
            del st.timers[kind]
        if ms > st.goals.get(kind, -1):
            st.goals[kind] = ms

    @staticmethod
    def _feedback_trigger(st: TriggerState, aid: str, extra: Mapping[str, Any]) -> str | None:
        if aid in st.awaiting:
            return st.awaiting[aid][1]
        return extra.get("trigger")

    def _fire(self, st: TriggerState, f: Fired) -> list[Fired]:
        if f.trigger not in self.enabled:
            return []
        if st.blocked_until.get(f.trigger, -1) > f.ts_ms:
            return []
        return [Fired(f.trigger, f.ts_ms, f.evidence, f.facts, st.ignored_streak, st.persona, f.stale)]

    # ---------------------------------------------------------------- segments
    def on_segment(self, st: TriggerState, seg: Any, horizon: int | None = None) -> list[Fired]:
        """Persona-driven triggers from a closed segment (an IntentSegment). A segment of
        late events only (``late_flush``) whose end is more than the grace behind the
        ``horizon`` that closed it fires its triggers as stale."""
        cfg, fired = self.cfg, []
        stale = seg.closed_by == "late_flush" and self._stale(seg.end_ms, horizon)
        st.persona = (seg.behaviour_stage, seg.main_activity)
        never_transacted = (st.transacted_ms is None or st.transacted_ms > seg.end_ms) and seg.transaction_status != "completed"
        if (
            never_transacted
            and seg.intent_strength >= cfg.nudge_min_strength
            and seg.behaviour_stage in ("exploring", "considering")
        ):
            fired += self._fire(st, Fired("first_transaction_nudge", seg.end_ms, (seg.segment_id,), stale=stale))
        if (
            seg.main_activity == "coupon_oriented"
            and seg.intent_strength >= cfg.coupon_min_strength
            and seg.transaction_status != "completed"
        ):
            fired += self._fire(st, Fired("coupon_interest", seg.end_ms, (seg.segment_id,), stale=stale))
        return fired

    # ------------------------------------------------------------------ timers
    def fire_due(self, st: TriggerState, watermark_ms: int) -> list[Fired]:
        """Fire every timer whose deadline the watermark has passed, in deadline order.

        Feedback deadlines interleave with trigger deadlines, so each fired trigger sees
        the ignored streak as of its own deadline.
        """
        due: list[tuple[int, int, str]] = [
            (t.fire_at, 1, kind) for kind, t in st.timers.items() if t.fire_at <= watermark_ms
        ]
        due += [(d, 0, aid) for aid, (d, _trig) in st.awaiting.items() if d <= watermark_ms]
        heapq.heapify(due)
        fired: list[Fired] = []
        while due:
            _, is_timer, name = heapq.heappop(due)
            if not is_timer:
                del st.awaiting[name]
                st.ignored_streak += 1
                continue
            timer = st.timers.pop(name)  # fires dated at its deadline, even if it waited for a late burst
            st.fired[name] = timer.due_ms
            fired += self._fire(st, Fired(TIMER_TRIGGER[name], timer.due_ms, timer.evidence, timer.facts, stale=timer.stale))
            if name == CHURN:  # the next step of the cadence (a timer that waited: the next may be past too)
                st.churn_step = timer.facts.get("step", 1)
                self._churn(st, False, watermark_ms if timer.not_before else None)
                nxt = st.timers.get(CHURN)
                if nxt is not None and nxt.fire_at <= watermark_ms:
                    heapq.heappush(due, (nxt.fire_at, 1, CHURN))
        return fired

    def on_delivery(self, st: TriggerState, action_id: str, trigger: str, delivery_ms: int) -> None:
        """A decision was sent or deferred: await its open until delivery + 24 h."""
        st.awaiting[action_id] = (delivery_ms + self.cfg.feedback_ignore_s * 1000, trigger)

    @staticmethod
    def fired_order(fired: Iterable[Fired]) -> list[Fired]:
        """Deterministic order for fired triggers of one step."""
        return sorted(fired, key=lambda f: (f.ts_ms, f.trigger, f.evidence))
