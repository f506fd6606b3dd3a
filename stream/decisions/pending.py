"""The decisions the engine still watches for one user, kept in the user's record.

* **Held**: a ``deferred`` decision (quiet hours) is not handed to the messaging system
  when it is decided. The engine holds it until its ``send_at`` (an event-time timer)
  and then releases it as ``sent`` — unless by then the trigger's goal happened, or the
  user opted out of its channel: then it is ``cancelled`` with that reason. A consumer
  that sends whatever it reads on ``actions.<channel>``, when it reads it, can therefore
  never send during quiet hours, after an opt-out or after the goal.
* **Sent**: a sent message is remembered for ``[triggers] correction_window_s`` of event
  time. If its goal is reported late with an event time *before* the decision (its
  premise was false), a :class:`~intentstream.stream.decisions.contract.Correction` is
  published once.

A goal "contradicts" a decision of trigger T when its event time is after the moment
T's premise began: ``decided_at - premise`` (the trigger's timer window: the cart was
abandoned from the last add_to_cart on), or ``decided_at`` itself for triggers without a
window (kyc_rejected, the segment triggers).

>>> from intentstream.stream.decisions.contract import Decision
>>> T0, MIN = 1767607200000, 60_000
>>> d = Decision("a1", "u1", "cart_abandoned", "push", "deferred", "quiet_hours", T0, send_at=T0 + 60 * MIN)
>>> p = PendingActions()
>>> p.hold(d); p.next_due() == T0 + 60 * MIN
True
>>> cancelled, corrections = p.on_goal("u1", {"cart_abandoned"}, "e7", T0 + 5 * MIN, {"cart_abandoned": 30 * MIN}, T0, 10**9)
>>> [(c.status, c.reason) for c in cancelled], p.next_due()
([('cancelled', 'goal_reached')], None)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from intentstream.stream.decisions.contract import Correction, Decision


@dataclass(slots=True)
class PendingActions:
    """``held``: action_id -> the deferred decision; ``sent``: action_id -> (trigger,
    decided_at, channel, sent_at)."""

    held: dict[str, Decision] = field(default_factory=dict)
    sent: dict[str, tuple[str, int, str | None, int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.held or self.sent)

    def next_due(self) -> int | None:
        """The earliest send time of a held decision (None: nothing held)."""
        return min((d.delivery_at for d in self.held.values()), default=None)

    def hold(self, d: Decision) -> None:
        assert d.send_at is not None
        self.held[d.action_id] = d

    def take_due(self, horizon: int) -> list[Decision]:
        """The held decisions whose send time the horizon reached, by (send_at, action_id)."""
        due = sorted((d.delivery_at, aid) for aid, d in self.held.items() if d.delivery_at <= horizon)
        return [self.held.pop(aid) for _, aid in due]

    def remember_sent(self, d: Decision, horizon: int, window_ms: int) -> None:
        """A message left: watch for its goal turning up late (``window_ms`` of event time)."""
        self.forget_old(horizon, window_ms)
        self.sent[d.action_id] = (d.trigger, d.decided_at, d.channel, d.delivery_at)

    def forget_old(self, horizon: int, window_ms: int) -> None:
        for aid in [a for a, (_, at, _, _) in self.sent.items() if at + window_ms < horizon]:
            del self.sent[aid]

    def on_goal(
        self, user_id: str, triggers: Collection[str], event_id: str, ts: int, premise_ms: Mapping[str, int],
        horizon: int, window_ms: int,
    ) -> tuple[list[Decision], list[Correction]]:  # fmt: skip
        """A goal event of ``triggers`` at event time ``ts``: the held decisions it cancels
        (it came before their send time) and the corrections of sent ones (it came before
        their decision, or — for a held one already released — before it was sent), in
        action_id order."""
        cancelled, corrections = [], []
        for aid in sorted(self.held):
            d = self.held[aid]
            if d.trigger in triggers and d.decided_at - premise_ms.get(d.trigger, 0) < ts < d.delivery_at:
                del self.held[aid]
                cancelled.append(d.cancelled("goal_reached"))
        self.forget_old(horizon, window_ms)
        for aid in sorted(self.sent):
            trigger, decided_at, channel, sent_at = self.sent[aid]
            if trigger not in triggers:
                continue
            premise = premise_ms.get(trigger, 0)
            if premise and decided_at - premise < ts < decided_at:
                reason = "goal_before_decision"
            elif decided_at <= ts < sent_at:
                reason = "goal_before_send"
            else:
                continue
            del self.sent[aid]
            corrections.append(Correction(aid, user_id, trigger, channel, decided_at, reason, event_id, ts))
        return cancelled, corrections

    def on_opt_out(self, channel: str | None, ts: int) -> list[Decision]:
        """An unsubscribe at ``ts`` (``channel`` None: every channel): the held decisions
        on that channel whose send time is after it, cancelled."""
        cancelled = []
        for aid in sorted(self.held):
            d = self.held[aid]
            if ts < d.delivery_at and (channel is None or d.channel == channel):
                del self.held[aid]
                cancelled.append(d.cancelled("opt_out"))
        return cancelled

    def to_list(self) -> list[Any]:
        return [{k: d.to_dict() for k, d in self.held.items()}, {k: list(v) for k, v in self.sent.items()}]

    @classmethod
    def from_list(cls, a: list[Any] | None) -> PendingActions:
        if not a:
            return cls()
        held, sent = a
        return cls({k: Decision.from_dict(v) for k, v in held.items()}, {k: (v[0], v[1], v[2], v[-1]) for k, v in sent.items()})
