"""The outcome contract: one :class:`ActionOutcome` per decision, on ``actions.outcomes``.

Every decision — sent, deferred then released or cancelled, suppressed and holdout
alike — gets exactly one outcome record, when its attribution window closes (an
event-time timer: the user's horizon passing ``window_end`` + ``[outcomes]
close_grace_s``), so replay and live publish the same bytes.

Attribution (the whole rule; an independent computation from the raw events gives the
same flags):

* ``converted``: the user has an event whose type is one of the trigger's goals
  (``[outcomes.goals]``; ``*`` is any event but message feedback and unsubscribe) with
  ``decided_at < event time < window_end``, ``window_end = decided_at + window`` (strictly
  after the decision: the events that made a segment trigger fire, dated up to its
  decision time, are not its conversions). For a
  ``first_goal_only`` trigger (first_transaction_nudge) only the user's first goal event
  ever counts. ``converted_at`` is the earliest such event time; ``time_to_convert_s``
  runs from ``decided_at``. Measured from the *decision*, not the send, in both arms
  (intention to treat: a deferred message's user who converts before the send time
  counts as converted, exactly as a holdout user would).
* ``opened`` / ``clicked`` / ``dismissed``: a ``message_open`` / ``message_click`` /
  ``message_dismiss`` naming the ``action_id`` (``props.action_id``) within the window.
* ``corrected``: a goal of the trigger (``[triggers.goals]``) was reported late with an
  event time before the decision, within the trigger's premise: the message was not
  needed. Measurement leaves it out, in both arms alike.

The measured population (:func:`is_measured`) and the arms (:func:`arm_of`,
:func:`is_treated`) are defined here once, for the uplift tables, the report, the
metrics and the backtest.

>>> rec = ActionOutcome(
...     action_id="a1", user_id="u1", trigger="cart_abandoned",
...     strategy={"key": "cart_reminder_coupon", "group": "primary"}, channel="push",
...     status="sent", reason=None, experiment={"id": "holdout-v2/cart_abandoned", "arm": "treatment"},
...     persona=None, decided_at=1767607200000, sent_at=1767607200000, window_end=1767866400000,
...     goals=("payment_success",), opened=True, clicked=False, dismissed=False,
...     converted_at=1767610800000, corrected=False)
>>> d = rec.to_dict()
>>> d["converted"], d["time_to_convert_s"], d["window_end"]
(True, 3600.0, '2026-01-08T10:00:00.000Z')
>>> ActionOutcome.from_dict(d) == rec
True
>>> is_measured(d), arm_of(d), is_treated(d)
(True, 'treatment', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from intentstream.stream.contract.events import format_ts, record_ts

#: The two arms of every trigger's experiment.
TREATMENT, HOLDOUT = "treatment", "holdout"

#: Suppression reasons that leave a decision out of measurement: not a new opportunity
#: (cooldown: the same trigger's earlier decision is measured) or not a real moment
#: (stale). Both apply to either arm alike, so leaving them out biases neither.
UNMEASURED_REASONS: Final = frozenset({"cooldown", "stale"})

#: Event types that never count as a visit for a ``*`` goal (they react to a message).
NOT_A_VISIT: Final = frozenset({"message_open", "message_click", "message_dismiss", "unsubscribe"})


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What one decision achieved. Times are epoch ms; ``to_dict`` formats them.

    ``status`` / ``reason`` are the decision's *final* ones (a deferred message released
    is ``sent``; one still held when the window closed stays ``deferred``); ``sent_at``
    is when the message left (null when it never did); ``persona`` the decision's
    behaviour persona (River cluster ids are joined at analysis time, never stored here:
    the live persona model runs apart, so replay could not reproduce them).
    """

    action_id: str
    user_id: str
    trigger: str
    strategy: Mapping[str, Any]
    channel: str | None
    status: str
    reason: str | None
    experiment: Mapping[str, Any]
    persona: Mapping[str, Any] | None
    decided_at: int
    sent_at: int | None
    window_end: int
    goals: tuple[str, ...]
    opened: bool
    clicked: bool
    dismissed: bool
    converted_at: int | None
    corrected: bool

    @property
    def converted(self) -> bool:
        return self.converted_at is not None

    @property
    def measured(self) -> bool:
        """:func:`is_measured` of this record."""
        return not self.corrected and self.reason not in UNMEASURED_REASONS

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; the key set never changes."""
        conv = self.converted_at
        return {
            "action_id": self.action_id,
            "user_id": self.user_id,
            "trigger": self.trigger,
            "strategy": dict(self.strategy),
            "channel": self.channel,
            "status": self.status,
            "reason": self.reason,
            "experiment": dict(self.experiment),
            "persona": None if self.persona is None else dict(self.persona),
            "decided_at": format_ts(self.decided_at),
            "sent_at": None if self.sent_at is None else format_ts(self.sent_at),
            "window_end": format_ts(self.window_end),
            "goals": list(self.goals),
            "opened": self.opened,
            "clicked": self.clicked,
            "dismissed": self.dismissed,
            "converted": conv is not None,
            "converted_at": None if conv is None else format_ts(conv),
            "time_to_convert_s": None if conv is None else (conv - self.decided_at) / 1000,
            "corrected": self.corrected,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ActionOutcome:
        """Inverse of :meth:`to_dict`."""

        ms = record_ts

        return cls(
            action_id=obj["action_id"],
            user_id=obj["user_id"],
            trigger=obj["trigger"],
            strategy=obj["strategy"],
            channel=obj["channel"],
            status=obj["status"],
            reason=obj["reason"],
            experiment=obj["experiment"],
            persona=obj["persona"],
            decided_at=ms(obj["decided_at"]),
            sent_at=None if obj["sent_at"] is None else ms(obj["sent_at"]),
            window_end=ms(obj["window_end"]),
            goals=tuple(obj["goals"]),
            opened=bool(obj["opened"]),
            clicked=bool(obj["clicked"]),
            dismissed=bool(obj["dismissed"]),
            converted_at=None if obj["converted_at"] is None else ms(obj["converted_at"]),
            corrected=bool(obj["corrected"]),
        )


def is_measured(rec: Mapping[str, Any]) -> bool:
    """Whether an outcome record (as a dict) belongs to the measured population: every
    decision except cooldown and stale suppressions and corrected ones. Decisions
    suppressed for caps or opt-outs stay in, in their arm (intention to treat)."""
    return not rec["corrected"] and rec["reason"] not in UNMEASURED_REASONS


def arm_of(rec: Mapping[str, Any]) -> str:
    """``treatment`` or ``holdout``: the user's arm in the trigger's experiment."""
    return rec["experiment"]["arm"]


def is_treated(rec: Mapping[str, Any]) -> bool:
    """Whether the message actually left (``sent``, also a deferred one released)."""
    return rec["status"] == "sent"
