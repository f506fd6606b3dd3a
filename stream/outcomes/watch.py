"""The decisions of one user whose attribution window is still open, kept in the user's
record (:class:`~intentstream.stream.engine.user_state.UserState`), and the outcome
record each one becomes when the user's horizon passes its window's end + the close
grace (an event-time timer, so replay equals live).

Every decision is watched, whatever its status. While its window is open, the user's
events (late ones too, in arrival order) fill in what it achieved: the first goal event
in ``(decided_at, window_end)``, the feedback naming its action_id, and — for a goal of
the trigger's *premise* (``[triggers.goals]``) reported late with an event time before
the decision — the ``corrected`` flag. A held decision's release or cancellation updates
its status. Bounded: a user has at most one entry per decision of the last window
(cooldowns keep that to a few), about 150 bytes each in the stored record.

>>> from intentstream.stream.decisions.contract import Decision
>>> from intentstream.stream.outcomes.attribution import AttributionRules
>>> T0, H = 1767607200000, 3_600_000
>>> rules = AttributionRules.from_settings()
>>> w = OutcomeWatch()
>>> d = Decision("a1", "u1", "cart_abandoned", "push", "sent", None, T0,
...              strategy={"key": "cart_reminder_coupon", "group": "primary"},
...              experiment={"id": "holdout-v2/cart_abandoned", "arm": "treatment"})
>>> w.open(d, rules)
>>> w.on_event("message_open", T0 + H, "a1", rules.converts("message_open"))
>>> w.on_event("payment_success", T0 + 5 * H, None, rules.converts("payment_success"))
>>> w.next_due() == T0 + 73 * H
True
>>> [o.to_dict()["converted_at"] for o in w.take_due("u1", T0 + 73 * H, rules, None)], bool(w)
(['2026-01-05T15:00:00.000Z'], False)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from intentstream.stream.decisions.contract import BehaviourPersona, Decision
from intentstream.stream.outcomes.attribution import AttributionRules
from intentstream.stream.outcomes.record import ActionOutcome

# Stored entry: a list, by position (compact in the user's record).
TRIGGER, KEY, GROUP, CHANNEL, STATUS, REASON, EXPERIMENT, ARM, PERSONA, DECIDED, SENT, END, CLOSE, FLAGS, CONVERTED, MODE = range(16)
OPENED, CLICKED, DISMISSED, CORRECTED = 1, 2, 4, 8
_FEEDBACK = {"message_open": OPENED, "message_click": CLICKED, "message_dismiss": DISMISSED}
_NEVER = 1 << 62


class OutcomeWatch:
    """action_id -> stored entry (see the positions above); ``due``: the earliest close."""

    __slots__ = ("entries", "due")

    def __init__(self, entries: dict[str, list[Any]] | None = None) -> None:
        self.entries = entries or {}
        # most users watch nothing: skip the generator (hot for new users)
        self.due = min([e[CLOSE] for e in self.entries.values()]) if self.entries else _NEVER

    def __bool__(self) -> bool:
        return bool(self.entries)

    def next_due(self) -> int | None:
        return self.due if self.entries else None

    def open(self, d: Decision, rules: AttributionRules) -> None:
        """Watch a new decision (a redelivered one is already watched: no-op)."""
        if d.action_id in self.entries:
            return
        st = d.strategy
        exp = d.experiment or {}
        end = d.decided_at + rules.window_ms(d.trigger)
        close = end + rules.grace
        entry = [
            d.trigger, st.get("key"), st.get("group"), d.channel, d.status, d.reason, exp.get("id"), exp.get("arm"),
            (d.persona or {}).get("cluster_id"), d.decided_at, d.delivery_at if d.status == "sent" else None,
            end, close, 0, None,
        ]  # fmt: skip
        policy = st.get("policy")
        if policy:  # how the strategy policy chose the arm: uplift by mode (one more item)
            entry.append(policy.get("mode"))
        self.entries[d.action_id] = entry
        if close < self.due:
            self.due = close

    def update(self, d: Decision) -> None:
        """A held decision released (``sent`` at its send time) or cancelled."""
        e = self.entries.get(d.action_id)
        if e is None:
            return
        e[STATUS], e[REASON], e[CHANNEL] = d.status, d.reason, d.channel
        if d.status == "sent":
            e[SENT] = d.delivery_at

    def on_event(self, typ: str, ts: int, action_id: str | None, converts: Collection[str]) -> None:
        """One of the user's events: a conversion of the watched decisions of the triggers
        it ``converts`` (inside their windows), or feedback on ``action_id``."""
        if converts:
            for e in self.entries.values():
                if e[TRIGGER] in converts and e[DECIDED] < ts < e[END] and (e[CONVERTED] is None or ts < e[CONVERTED]):
                    e[CONVERTED] = ts
        flag = _FEEDBACK.get(typ)
        if flag and action_id:
            entry = self.entries.get(action_id)
            if entry is not None and ts < entry[END]:
                entry[FLAGS] |= flag

    def on_premise_goal(self, triggers: Collection[str], ts: int, premise_ms: Mapping[str, int]) -> None:
        """A goal of ``triggers``' premise at ``ts``: the watched decisions it shows were not
        needed (ts inside the premise, before the decision) are marked corrected."""
        for e in self.entries.values():
            premise = premise_ms.get(e[TRIGGER], 0)
            if premise and e[TRIGGER] in triggers and e[DECIDED] - premise < ts < e[DECIDED]:
                e[FLAGS] |= CORRECTED

    def take_due(self, user_id: str, horizon: int, rules: AttributionRules, first_goal_at: int | None) -> list[ActionOutcome]:
        """The outcome records of the decisions whose close the horizon reached, by
        (close, action_id). ``first_goal_at``: the event time of the user's first goal
        event of a first-goal-only trigger (the first payment_success), if any."""
        due = sorted((e[CLOSE], aid) for aid, e in self.entries.items() if e[CLOSE] <= horizon)
        out = [self._record(user_id, aid, self.entries.pop(aid), rules, first_goal_at) for _, aid in due]
        self.due = min((e[CLOSE] for e in self.entries.values()), default=_NEVER)
        return out

    @staticmethod
    def _record(user_id: str, aid: str, e: list[Any], rules: AttributionRules, first_goal_at: int | None) -> ActionOutcome:
        trigger, flags = e[TRIGGER], e[FLAGS]
        converted = e[CONVERTED]
        if trigger in rules.first_only:
            converted = first_goal_at if first_goal_at is not None and e[DECIDED] < first_goal_at < e[END] else None
        cid = e[PERSONA]
        persona = None
        if cid is not None:
            stage, _, activity = str(cid).partition("/")
            persona = BehaviourPersona.of(stage, activity).to_dict()
        return ActionOutcome(
            action_id=aid, user_id=user_id, trigger=trigger,
            strategy={"key": e[KEY], "group": e[GROUP], "policy": {"mode": e[MODE]}} if len(e) > MODE else {"key": e[KEY], "group": e[GROUP]},
            channel=e[CHANNEL], status=e[STATUS], reason=e[REASON], experiment={"id": e[EXPERIMENT], "arm": e[ARM]},
            persona=persona, decided_at=e[DECIDED], sent_at=e[SENT], window_end=e[END],
            goals=tuple(rules.goals_of(trigger)), opened=bool(flags & OPENED), clicked=bool(flags & CLICKED),
            dismissed=bool(flags & DISMISSED), converted_at=converted, corrected=bool(flags & CORRECTED),
        )  # fmt: skip

    def to_list(self) -> dict[str, list[Any]]:
        return self.entries

    @classmethod
    def from_list(cls, data: Mapping[str, list[Any]] | None) -> OutcomeWatch:
        return cls({k: list(v) for k, v in data.items()}) if data else cls()
