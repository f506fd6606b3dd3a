"""Goals and attribution windows per trigger (``[outcomes]``): which events count as a
conversion of a trigger's message, and for how long after the decision.

>>> a = AttributionRules.from_settings()
>>> a.window_ms("cart_abandoned") // 3_600_000, a.window_ms("churn_risk") // 86_400_000
(72, 7)
>>> sorted(a.converts("payment_success")), sorted(a.converts("page_view")), a.converts("message_open")
(['cart_abandoned', 'churn_risk', 'first_transaction_nudge', 'payment_stalled'], ['churn_risk'], frozenset())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from intentstream.stream.contract.events import CANONICAL_TYPES
from intentstream.stream.outcomes.record import NOT_A_VISIT
from intentstream.stream.settings import OutcomeSettings, default_settings

#: The goal that means "any visit".
ANY_VISIT = "*"
#: The goal a ``first_goal_only`` trigger may have: the engine remembers the user's first
#: payment_success (``TriggerState.transacted_ms``), not the first of any event type.
FIRST_GOAL = "payment_success"


@dataclass(frozen=True)
class AttributionRules:
    """``goals``: trigger -> goal event types; ``windows``: trigger -> window ms (else
    ``default_window``); ``grace``: ms the record waits after the window's end;
    ``first_only``: triggers whose goal counts only the first time it ever happens."""

    goals: Mapping[str, tuple[str, ...]]
    default_window: int
    windows: Mapping[str, int]
    grace: int
    first_only: frozenset[str]

    def __post_init__(self) -> None:
        for trigger, goals in self.goals.items():
            unknown = [g for g in goals if g != ANY_VISIT and g not in CANONICAL_TYPES]
            if unknown:
                raise ValueError(f"[outcomes.goals] {trigger}: unknown event type(s) {unknown}")
        for trigger in self.first_only:
            if tuple(self.goals.get(trigger, ())) != (FIRST_GOAL,):
                raise ValueError(f"[outcomes] first_goal_only: {trigger} must have the goal [{FIRST_GOAL!r}]")
        if self.default_window <= 0 or any(w <= 0 for w in self.windows.values()) or self.grace < 0:
            raise ValueError("[outcomes] windows must be > 0 and close_grace_s >= 0")
        # event type -> the triggers it converts (hot: looked up per event of a watched user)
        table: dict[str, frozenset[str]] = {}
        for typ in CANONICAL_TYPES:
            table[typ] = frozenset(t for t, gs in self.goals.items() if typ in gs or (ANY_VISIT in gs and typ not in NOT_A_VISIT))
        object.__setattr__(self, "_by_type", table)
        object.__setattr__(self, "_any", frozenset(t for t, gs in self.goals.items() if ANY_VISIT in gs))

    @classmethod
    def from_settings(cls, cfg: OutcomeSettings | None = None) -> AttributionRules:
        cfg = cfg or default_settings().outcomes
        return cls(
            goals={t: tuple(g) for t, g in cfg.goals.items()},
            default_window=cfg.window_s * 1000,
            windows={t: int(w) * 1000 for t, w in cfg.windows_s.items()},
            grace=cfg.close_grace_s * 1000,
            first_only=frozenset(cfg.first_goal_only),
        )

    def window_ms(self, trigger: str) -> int:
        return self.windows.get(trigger, self.default_window)

    def goals_of(self, trigger: str) -> Sequence[str]:
        return self.goals.get(trigger, ())

    def converts(self, event_type: str) -> frozenset[str]:
        """The triggers an event of this type converts (custom types: the any-visit ones)."""
        found = self._by_type.get(event_type)  # type: ignore[attr-defined]
        if found is None:
            return self._any if event_type not in NOT_A_VISIT else frozenset()  # type: ignore[attr-defined]
        return found
