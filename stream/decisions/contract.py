"""The output contract: one :class:`Decision` per trigger hit, as a JSON object.

Every decision is written, whatever its status, to the audit topic; ``sent`` and
``deferred`` ones also go to ``actions.<channel>``. ``to_dict`` always returns the same
key set (absent values are ``null``), and :func:`intentstream.stream.codec.dumps` sorts keys, so
replaying the same input gives byte-identical output.

>>> d = Decision(
...     action_id=action_id("u1", "cart_abandoned", ["e2", "e1"]), user_id="u1",
...     trigger="cart_abandoned", channel="push", status="sent", reason=None,
...     decided_at=1767607200000, evidence=("e1", "e2"),
...     strategy={"key": "cart_reminder_coupon"},
... )
>>> d.action_id == action_id("u1", "cart_abandoned", ["e1", "e2", "e1"])
True
>>> Decision.from_dict(d.to_dict()) == d
True
>>> d.to_dict()["decided_at"], d.to_dict()["send_at"], d.is_delivery
('2026-01-05T10:00:00.000Z', None, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from intentstream.stream.contract.events import format_ts, record_ts

#: Every status a decision can have.
STATUSES: Final = {
    "sent": "deliver now on ``channel`` (also when a deferred message is released at its ``send_at``)",
    "deferred": "held by the engine until ``send_at`` (quiet hours, send time), then released as ``sent`` or ``cancelled``",
    "cancelled": "a deferred message withdrawn before its send time; ``reason`` says why",
    "suppressed": "not delivered; ``reason`` says why",
    "holdout": "the user is in the holdout group: recorded, never delivered",
}

#: Every reason code, with what it means. ``reason`` is null for ``sent``.
REASONS: Final = {
    "quiet_hours": "deferred: the send time fell in the user's local quiet hours",
    "send_time": "deferred: held until the user's next likely active hour (``[send_time]``); quiet hours still apply",
    "cooldown": "suppressed: the same trigger reached this user within the cooldown",
    "opt_out": "suppressed: the user opted out of every channel of the strategy",
    "fatigue_cap": "suppressed: every remaining channel is at its cap for the rolling window",
    "global_cap": "suppressed: the user already has the most messages, all channels together, "
    "that a rolling window allows (``[fatigue] global_caps``); another channel would not help",
    "priority": "suppressed: the message would take the last free slot of a global window while "
    "the user has a pending journey of a higher-priority trigger (``[fatigue] trigger_priority``)",
    "holdout": "holdout: the user is in the experiment's holdout group",
    "roi_guard": "suppressed: every strategy of the trigger is paused by the ROI guard (``[policy]``): its messages do not convert",
    "stale": "suppressed: a late event revealed a moment already long past (``[triggers] late_timer_grace_s``)",
    "goal_reached": "cancelled: the trigger's goal happened before the send time (``[triggers.goals]``)",
}

#: Statuses that mean a message leaves (now or later).
DELIVERY_STATUSES: Final = frozenset({"sent", "deferred"})

#: What a correction record says (``actions.audit`` only).
CORRECTION_REASONS: Final = {
    "goal_before_decision": "the trigger's goal was reported late with an event time before the "
    "decision: the sent message was not needed; exclude it from measurement",
    "goal_before_send": "the goal was reported late with an event time between the decision and "
    "the send time of a held message that was already released: it should have been cancelled",
}

#: Length of an action_id in hex digits (80 bits of SHA-1).
ACTION_ID_HEX: Final = 20


def action_id(user_id: str, trigger: str, evidence: Iterable[str]) -> str:
    """Deterministic id of one action: SHA-1 of ``user|trigger|sorted unique evidence``.

    The same trigger hit (same user, trigger and evidence, in any order, duplicates
    ignored) always gets the same id, which is what makes redelivered events idempotent.

    >>> action_id("u1", "kyc_stalled", ["e9"])
    '5f03b9ff1542ad2868c8'
    """
    ids = ",".join(sorted(set(evidence)))
    return hashlib.sha1(f"{user_id}|{trigger}|{ids}".encode()).hexdigest()[:ACTION_ID_HEX]


@dataclass(frozen=True, slots=True)
class BehaviourPersona:
    """The persona a decision saw: the user's *behaviour persona* when the trigger fired —
    behaviour stage and main activity of the latest closed segment (the codes of
    stream/sessions/segments.py, such as ``transacted`` and ``coupon_oriented``), a pure
    function of the user's own events. Not the River *cluster persona* of
    stream/personas/ (a separate, single-writer model): decisions never wait for it.

    ``cluster_id`` and ``label`` go into the decision's ``persona`` field (the engine
    fills them with ``stage/activity`` and ``stage · activity``, see :meth:`of`);
    ``behaviour_stage`` and ``main_activity`` select persona-specific strategies in the
    catalogue.

    >>> BehaviourPersona.of("transacted", "coupon_oriented").to_dict()
    {'cluster_id': 'transacted/coupon_oriented', 'label': 'transacted · coupon_oriented'}
    """

    cluster_id: int | str
    label: str
    behaviour_stage: str | None = None
    main_activity: str | None = None

    def attributes(self) -> dict[str, str]:
        """The attributes catalogue overrides may match on (only those that are known)."""
        out = {"label": self.label, "cluster_id": str(self.cluster_id)}
        if self.behaviour_stage:
            out["behaviour_stage"] = self.behaviour_stage
        if self.main_activity:
            out["main_activity"] = self.main_activity
        return out

    @classmethod
    def of(cls, stage: str, activity: str) -> BehaviourPersona:
        """The behaviour persona of a segment's stage and main activity."""
        return cls(f"{stage}/{activity}", f"{stage} · {activity}", stage, activity)

    def to_dict(self) -> dict[str, Any]:
        return {"cluster_id": self.cluster_id, "label": self.label}


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision about one trigger hit. Times are epoch ms; ``to_dict`` formats them.

    ``channel`` is the channel used (or, for ``holdout``, the one that would have been);
    null when suppressed. ``send_at`` is set only when delivery is later than
    ``decided_at``. ``fallback_from`` is the strategy's first-choice channel when the
    decision was re-routed (cap or opt-out). ``strategy`` holds the strategy key, group,
    rendered content and coupon; ``evidence`` the event ids or segment id that triggered it;
    ``experiment`` the trigger's holdout experiment and the user's arm (``treatment`` or
    ``holdout``), set for every decision whatever its status.
    """

    action_id: str
    user_id: str
    trigger: str
    channel: str | None
    status: str
    reason: str | None
    decided_at: int
    send_at: int | None = None
    fallback_from: str | None = None
    persona: Mapping[str, Any] | None = None
    strategy: Mapping[str, Any] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()
    #: the trigger's holdout experiment and the user's arm in it: ``{"id", "arm"}``
    experiment: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.reason is not None and self.reason not in REASONS:
            raise ValueError(f"unknown reason {self.reason!r}")
        if (self.status == "sent") != (self.reason is None):
            raise ValueError("reason must be null exactly when status is sent")

    @property
    def is_delivery(self) -> bool:
        """True when a message leaves (sent now or deferred)."""
        return self.status in DELIVERY_STATUSES

    def released(self) -> Decision:
        """This deferred decision released at its send time: ``sent``."""
        return dataclasses.replace(self, status="sent", reason=None)

    def cancelled(self, reason: str) -> Decision:
        """This deferred decision withdrawn before its send time."""
        return dataclasses.replace(self, status="cancelled", reason=reason)

    @property
    def delivery_at(self) -> int:
        """When the message leaves (or would have): ``send_at`` or ``decided_at``."""
        return self.send_at if self.send_at is not None else self.decided_at

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; the key set never changes."""
        return {
            "action_id": self.action_id,
            "user_id": self.user_id,
            "trigger": self.trigger,
            "channel": self.channel,
            "status": self.status,
            "reason": self.reason,
            "decided_at": format_ts(self.decided_at),
            "send_at": None if self.send_at is None else format_ts(self.send_at),
            "fallback_from": self.fallback_from,
            "persona": None if self.persona is None else dict(self.persona),
            "strategy": dict(self.strategy),
            "evidence": list(self.evidence),
            "experiment": None if self.experiment is None else dict(self.experiment),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Decision:
        """Inverse of :meth:`to_dict` (for replays and tests)."""

        ms = record_ts

        return cls(
            action_id=obj["action_id"],
            user_id=obj["user_id"],
            trigger=obj["trigger"],
            channel=obj["channel"],
            status=obj["status"],
            reason=obj["reason"],
            decided_at=ms(obj["decided_at"]),
            send_at=None if obj["send_at"] is None else ms(obj["send_at"]),
            fallback_from=obj["fallback_from"],
            persona=obj["persona"],
            strategy=obj["strategy"],
            evidence=tuple(obj["evidence"]),
            experiment=obj.get("experiment"),
        )


@dataclass(frozen=True, slots=True)
class Correction:
    """On ``actions.audit``, after a sent message: its premise turned out false.

    The trigger's goal (``[triggers.goals]``) was reported late with an event time
    before the decision — e.g. the payment of an "abandoned" cart, flushed from a phone
    an hour later — so the message was not needed. Measurement excludes the action.
    ``goal_at`` is the goal event's time, ``goal_event_id`` its id.

    >>> c = Correction("a1", "u1", "cart_abandoned", "push", 1767607200000, "goal_before_decision", "e9", 1767606000000)
    >>> sorted(c.to_dict()), c.to_dict()["correction"]["goal_at"]
    (['action_id', 'channel', 'correction', 'decided_at', 'trigger', 'user_id'], '2026-01-05T09:40:00.000Z')
    """

    action_id: str
    user_id: str
    trigger: str
    channel: str | None
    decided_at: int
    reason: str
    goal_event_id: str
    goal_at: int

    def __post_init__(self) -> None:
        if self.reason not in CORRECTION_REASONS:
            raise ValueError(f"unknown correction reason {self.reason!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "user_id": self.user_id,
            "trigger": self.trigger,
            "channel": self.channel,
            "decided_at": format_ts(self.decided_at),
            "correction": {"reason": self.reason, "goal_event_id": self.goal_event_id, "goal_at": format_ts(self.goal_at)},
        }


def split_audit(records: Iterable[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """An ``actions.audit`` stream (as dicts) split into the decisions (the first record of
    each action), the follow-ups of deferred ones (their release as ``sent`` or their
    cancellation) and the corrections, each in stream order.

    >>> recs = [{"action_id": "a", "status": "deferred"}, {"action_id": "b", "status": "sent"},
    ...         {"action_id": "a", "status": "sent"}, {"action_id": "b", "correction": {}}]
    >>> [[r["action_id"] for r in part] for part in split_audit(recs)]
    [['a', 'b'], ['a'], ['b']]
    """
    decided, later, corrections, seen = [], [], [], set()
    for r in records:
        if "correction" in r:
            corrections.append(r)
        elif r["action_id"] in seen:
            later.append(r)
        else:
            seen.add(r["action_id"])
            decided.append(r)
    return decided, later, corrections
