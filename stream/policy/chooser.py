"""Which strategy a decision uses: explore / exploit between a trigger's arms, with an
ROI guard. A pure function of the decision (trigger, persona, action id), the
catalogue's own choice and the :class:`~intentstream.stream.policy.tally.ArmTally`
snapshot — no clock, no global random state — so replay equals live.

Per decision, ``u`` = a hash of the action id in [0, 1):

1. **ROI guard** — an arm with at least ``roi_min_sends`` sends whose conversion per send
   is below ``roi_min_conversion`` (the domain's 1.5 %) is *paused*. ``u <
   retest_share`` re-tests a paused arm (``retest``), so an arm can come back: it is
   active again as soon as its rate is at or above the threshold. When every arm of the
   trigger is paused the decision is ``suppressed`` / ``roi_guard`` (the trigger does not
   pay for its messages); otherwise paused arms are simply not chosen — the next arm
   goes (no message is lost to the guard).
2. **Explore** — ``u < explore_share`` (30 %): an active arm drawn uniformly by a second
   hash (``explore``).
3. **Exploit** — otherwise the active arm with the best estimated conversion per send
   among those with at least ``min_exploit_sends`` sends (``exploit``); while none has
   that many, the catalogue's own choice (persona override, regret rule) if active.
   The estimate for the decision's behaviour persona pools the persona's own sends with
   the arm's trigger-wide rate: (conv_p + k · rate) / (sends_p + k), k =
   ``persona_prior_sends``, so a thin persona leans on everyone and a well-measured one
   stands on its own.
4. A user under the regret rule (``[strategies] regret_streak`` ignored messages) keeps
   the catalogue's alternate (``rule``) unless it is paused.

>>> from intentstream.stream.decisions.strategies import load_catalogue
>>> from intentstream.stream.policy.tally import ArmTally
>>> policy = StrategyPolicy(load_catalogue())
>>> policy.arms("churn_risk")
('winback_coupon', 'winback_whats_new', 'winback_market_update', 'winback_big_coupon')
>>> tally = ArmTally()
>>> picks = [policy.choose("churn_risk", None, f"a{i}", "winback_coupon", False, tally.view()) for i in range(1000)]
>>> from collections import Counter
>>> Counter(p.mode for p in picks)["explore"], Counter(p.arm for p in picks if p.mode == "exploit")
(302, Counter({'winback_coupon': 698}))
>>> for _ in range(300):            # the big coupon converts 20 % of the time, the others 2-5 %
...     tally.add("churn_risk", "winback_big_coupon", None, converted=_ % 5 == 0, clicked=False)
...     tally.add("churn_risk", "winback_coupon", None, converted=_ % 100 == 0, clicked=False)
...     tally.add("churn_risk", "winback_whats_new", None, converted=_ % 20 == 0, clicked=False)
>>> _ = tally.roll(1)
>>> picks = [policy.choose("churn_risk", None, f"b{i}", "winback_coupon", False, tally.view()) for i in range(1000)]
>>> Counter(p.arm for p in picks if p.mode == "exploit")
Counter({'winback_big_coupon': 699})
>>> sorted(policy.paused("churn_risk", tally.view()))       # 1 % after 300 sends
['winback_coupon']
>>> Counter(p.mode for p in picks if p.arm == "winback_coupon")
Counter({'retest': 58})
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from intentstream.stream.decisions.strategies import Catalogue
from intentstream.stream.policy.tally import CONVERSIONS, SENDS, arm_key
from intentstream.stream.settings import PolicySettings, default_settings

EXPLORE, EXPLOIT, RETEST, RULE = "explore", "exploit", "retest", "rule"


@dataclass(frozen=True, slots=True)
class PolicyChoice:
    """The arm a decision uses, how it was chosen, and what the policy knew of it:
    ``estimate`` its conversion per send for the decision's persona (None: no sends yet)
    and ``sends`` the trigger-wide sends behind it. ``arm`` None: every arm is paused."""

    arm: str | None
    mode: str
    estimate: float | None
    sends: int

    def to_dict(self) -> dict[str, object]:
        return {
            "arm": self.arm,
            "mode": self.mode,
            "estimate": None if self.estimate is None else round(self.estimate, 4),
            "sends": self.sends,
        }


def _unit(*parts: str) -> float:
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class StrategyPolicy:
    """The explore / exploit policy over a catalogue (see the module docstring)."""

    def __init__(self, catalogue: Catalogue, cfg: PolicySettings | None = None) -> None:
        self.cfg = cfg = cfg or default_settings().policy
        if not 0 <= cfg.explore_share <= 1 or not 0 <= cfg.retest_share <= cfg.explore_share:
            raise ValueError("[policy] needs 0 <= retest_share <= explore_share <= 1")
        if cfg.epoch_s <= 0:
            raise ValueError("[policy] epoch_s must be positive")
        self._arms: dict[str, tuple[str, ...]] = {}
        for trigger, route in catalogue.triggers.items():
            keys = [route.default, route.alternate]
            for pr in route.personas:
                keys += [k for k in (pr.default, pr.alternate) if k]
            self._arms[trigger] = tuple(dict.fromkeys(keys))

    @property
    def epoch_ms(self) -> int:
        return self.cfg.epoch_s * 1000

    def arms(self, trigger: str) -> tuple[str, ...]:
        """The trigger's arms: the strategies its route names, in catalogue order."""
        return self._arms.get(trigger, ())

    def rate(self, tally: Mapping[str, Sequence[int]], trigger: str, arm: str) -> tuple[float | None, int]:
        """(conversion per send, sends) of an arm trigger-wide; None without sends."""
        c = tally.get(arm_key(trigger, arm))
        if not c or not c[SENDS]:
            return None, 0
        return c[CONVERSIONS] / c[SENDS], c[SENDS]

    def paused(self, trigger: str, tally: Mapping[str, Sequence[int]]) -> set[str]:
        """The arms the ROI guard pauses now."""
        out = set()
        for arm in self.arms(trigger):
            r, n = self.rate(tally, trigger, arm)
            if r is not None and n >= self.cfg.roi_min_sends and r < self.cfg.roi_min_conversion:
                out.add(arm)
        return out

    def paused_arms(self, tally: Mapping[str, Sequence[int]]) -> set[tuple[str, str]]:
        """(trigger, arm) of every paused arm."""
        return {(t, a) for t in self._arms for a in self.paused(t, tally)}

    def all_arms(self) -> list[tuple[str, str]]:
        """(trigger, arm) of every arm, by trigger in catalogue order."""
        return [(t, a) for t, arms in self._arms.items() for a in arms]

    def estimate(self, tally: Mapping[str, Sequence[int]], trigger: str, arm: str, persona: str | None) -> float | None:
        """Conversion per send of ``arm`` for ``persona``, pooled with the trigger-wide rate."""
        r, _ = self.rate(tally, trigger, arm)
        if r is None:
            return None
        c = tally.get(arm_key(trigger, arm, persona or "-"))
        if not c:
            return r
        k = self.cfg.persona_prior_sends
        return (c[CONVERSIONS] + k * r) / (c[SENDS] + k)

    def choose(
        self,
        trigger: str,
        persona: str | None,
        action_id: str,
        rule_arm: str,
        regret: bool,
        tally: Mapping[str, Sequence[int]],
    ) -> PolicyChoice:
        """The arm for one decision (``rule_arm``: the catalogue's own choice)."""
        arms = self.arms(trigger) or (rule_arm,)
        if not self.cfg.enabled:
            return self._choice(tally, trigger, rule_arm, RULE, persona)
        paused = self.paused(trigger, tally)
        active = [a for a in arms if a not in paused]
        u = _unit(action_id, "policy")
        if paused and u < self.cfg.retest_share:
            frozen = sorted(paused)
            return self._choice(tally, trigger, frozen[int(_unit(action_id, "retest") * len(frozen))], RETEST, persona)
        if not active:
            return PolicyChoice(None, RULE, None, 0)
        if regret and rule_arm in active:
            return self._choice(tally, trigger, rule_arm, RULE, persona)
        if u < self.cfg.explore_share:
            return self._choice(tally, trigger, active[int(_unit(action_id, "explore") * len(active))], EXPLORE, persona)
        best, best_est = None, -1.0
        for a in active:
            if self.rate(tally, trigger, a)[1] >= self.cfg.min_exploit_sends:
                est = self.estimate(tally, trigger, a, persona)
                if est is not None and est > best_est:
                    best, best_est = a, est
        if best is None:
            best = rule_arm if rule_arm in active else active[0]
        return self._choice(tally, trigger, best, EXPLOIT, persona)

    def _choice(self, tally: Mapping[str, Sequence[int]], trigger: str, arm: str, mode: str, persona: str | None) -> PolicyChoice:
        return PolicyChoice(arm, mode, self.estimate(tally, trigger, arm, persona), self.rate(tally, trigger, arm)[1])
