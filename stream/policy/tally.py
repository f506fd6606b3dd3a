"""What each strategy arm achieved so far, as the policy may see it: :class:`ArmTally`.

The policy learns from the engine's own outcome records (``actions.outcomes``): one per
decision, written when its attribution window closes. A record counts for its arm — the
(trigger, strategy) it used, and the same per behaviour persona — when it is in the
treatment arm of the holdout experiment, its message was sent (a released deferral
included) and it is measured (see :func:`~intentstream.stream.outcomes.record.is_measured`):
one *send*, a *conversion* when the goal came within the window, a *click* when the user
clicked the message.

**Replay equals live.** The tally lives in the partition's meta and is written in the
same atomic commit as the step whose outcome records it folds, so a replayed step (kill
-9) folds nothing twice. Decisions do not see it as it changes: they read the
*snapshot* of their step's **policy epoch** (``[policy] epoch_s`` of event time, by the
partition watermark at the step's start). The engine ends a step at the event that
carries the watermark into a new epoch (:meth:`PartitionEngine._run
<intentstream.stream.engine.partition.PartitionEngine>`), and the snapshot of epoch E is
everything folded by the steps before the first step of E. Since the engine's outputs
after a prefix of the input do not depend on how the prefix was cut into batches, the
snapshot of every epoch — and so every decision — is the same in every run, live or
offline, whatever the batch sizes.

Learning is per partition (the partition is its own experiment): pooling partitions
would need a cross-partition barrier in event time (every partition past the epoch
before anyone uses it), left for later — see README, "Explore and exploit".

>>> t = ArmTally()
>>> t.add("cart_abandoned", "cart_bigger_coupon", "considering/coupon_oriented", converted=True, clicked=False)
>>> t.view()                                    # folded, but not yet in the snapshot
{}
>>> t.roll(5)                                   # a new epoch: the pending folds land
True
>>> t.view()["cart_abandoned|cart_bigger_coupon"], t.roll(5)
([1, 1, 0], False)
>>> ArmTally.load(t.dump()) == t
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

#: Separates trigger, arm and persona in a tally key.
SEP: Final = "|"
SENDS, CONVERSIONS, CLICKS = 0, 1, 2


def arm_key(trigger: str, arm: str, persona: str | None = None) -> str:
    """The tally key of an arm, trigger-wide or for one behaviour persona."""
    return f"{trigger}{SEP}{arm}" if persona is None else f"{trigger}{SEP}{arm}{SEP}{persona}"


@dataclass
class ArmTally:
    """Sends, conversions and clicks per arm key: the ``snapshot`` decisions of the
    current ``epoch`` read, and what was folded since (``pending``)."""

    epoch: int = -1
    snapshot: dict[str, list[int]] = field(default_factory=dict)
    pending: dict[str, list[int]] = field(default_factory=dict)

    def add(self, trigger: str, arm: str, persona: str | None, *, converted: bool, clicked: bool) -> None:
        """Fold one measured, treated send of ``arm``."""
        for key in (arm_key(trigger, arm), arm_key(trigger, arm, persona or "-")):
            c = self.pending.get(key)
            if c is None:
                c = self.pending[key] = [0, 0, 0]
            c[SENDS] += 1
            c[CONVERSIONS] += converted
            c[CLICKS] += clicked

    def fold(self, outcome: Any) -> bool:
        """Fold an :class:`~intentstream.stream.outcomes.record.ActionOutcome` if it
        counts (treated, sent, measured); True if it did."""
        arm = outcome.strategy.get("key")
        if (
            arm is None
            or outcome.status != "sent"
            or not outcome.measured
            or (outcome.experiment or {}).get("arm") != "treatment"
        ):
            return False
        persona = (outcome.persona or {}).get("cluster_id")
        self.add(outcome.trigger, arm, None if persona is None else str(persona), converted=outcome.converted, clicked=outcome.clicked)
        return True

    def roll(self, epoch: int) -> bool:
        """Enter ``epoch``: if it is a new one, the pending folds join the snapshot."""
        if epoch <= self.epoch:
            return False
        self.epoch = epoch
        for key, c in self.pending.items():
            s = self.snapshot.get(key)
            if s is None:
                self.snapshot[key] = c
            else:
                s[SENDS] += c[SENDS]
                s[CONVERSIONS] += c[CONVERSIONS]
                s[CLICKS] += c[CLICKS]
        self.pending = {}
        return True

    def view(self) -> dict[str, list[int]]:
        """The snapshot (read only, by convention)."""
        return self.snapshot

    def dump(self) -> list[Any]:
        return [self.epoch, self.snapshot, self.pending]

    @classmethod
    def load(cls, data: list[Any] | None) -> ArmTally:
        if not data:
            return cls()
        return cls(data[0], {k: list(v) for k, v in data[1].items()}, {k: list(v) for k, v in data[2].items()})
