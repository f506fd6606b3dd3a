"""From a trigger hit to a :class:`~intentstream.stream.decisions.contract.Decision`: choose the strategy from the
catalogue, render it, and let the fatigue ledger rule on it.

The ledger stores the rendered *draft* (everything but the outcome) with its verdict, so a
redelivered hit gets back exactly the original decision, even if the catalogue or the
persona changed in between.

>>> from intentstream.stream.decisions.fatigue import FatigueLedger
>>> from intentstream.stream.state.memory import MemoryLedgerStore
>>> from intentstream.stream.decisions.strategies import load_catalogue
>>> from intentstream.stream.settings import FatigueSettings
>>> decider = Decider(load_catalogue(), FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=0.0)))
>>> hit = TriggerHit("u1", "cart_abandoned", 1767607200000, ("e1", "e2"),   # 10:00 UTC
...                  facts={"item_id": "SKU-1042"}, tz="Europe/Berlin")
>>> first = decider.decide(hit)
>>> d = first.decision
>>> d.status, d.channel, d.strategy["key"], d.strategy["coupon"]["code"]
('sent', 'push', 'cart_reminder_coupon', 'CART-82C9B9F8BD')
>>> again = decider.decide(hit)               # redelivered: same decision, flagged
>>> again.duplicate, again.decision == d
(True, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from intentstream.stream import codec
from intentstream.stream.decisions.contract import BehaviourPersona, Decision, action_id
from intentstream.stream.contract.events import format_ts
from intentstream.stream.decisions.fatigue import Candidate, FatigueLedger
from intentstream.stream.decisions.strategies import Catalogue, catalogue_from_settings
from intentstream.stream.policy.chooser import StrategyPolicy
from intentstream.stream.outcomes.record import HOLDOUT, TREATMENT
from intentstream.stream.settings import Settings, default_settings
from intentstream.stream.state.fatigue import COUPON_GRANTED, LedgerStore, Verdict
from intentstream.stream.triggers.rules import TIMER_TRIGGER


@dataclass(frozen=True, slots=True)
class TriggerHit:
    """A trigger that fired for a user at event time ``ts_ms``.

    ``evidence`` identifies the occurrence (event ids or a segment id) and determines the
    action_id; ``facts`` fill the templates (``amount``, ``currency``, ``item_id``,
    ``category``); ``ignored_streak`` counts consecutive ignored messages (regret rule).
    """

    user_id: str
    trigger: str
    ts_ms: int
    evidence: tuple[str, ...]
    facts: Mapping[str, Any] = field(default_factory=dict)
    tz: str | None = None
    opt_outs: frozenset[str] = frozenset()
    persona: BehaviourPersona | None = None
    ignored_streak: int = 0
    experiment: str | None = None
    #: about a moment long past (a late event revealed it): recorded as suppressed, reason
    #: ``stale``, without touching the ledger (it counts against no cap or cooldown)
    stale: bool = False
    #: trigger -> deadline (ms) of the user's pending journeys (armed timers): the fatigue
    #: ledger's priority rule keeps the last free global slot for the higher-ranked ones
    pending: Mapping[str, int] = field(default_factory=dict)
    #: the user's recent active hours (``UserProfile.hours``): send-time optimisation
    active_hours: str = ""

    @classmethod
    def from_fired(
        cls,
        user_id: str,
        fired: Any,
        *,
        tz: str | None = None,
        opt_outs: Iterable[str] = (),
        persona: BehaviourPersona | None = None,
        experiment: str | None = None,
        timers: Mapping[str, Any] | None = None,
        active_hours: str = "",
    ) -> TriggerHit:
        """From a :class:`intentstream.stream.triggers.rules.Fired` and what the engine knows of the
        user; ``timers``: the user's armed trigger timers (``TriggerState.timers``), whose
        triggers are ``pending`` unless stale (a stale timer never sends)."""
        return cls(
            user_id=user_id,
            trigger=fired.trigger,
            ts_ms=fired.ts_ms,
            evidence=tuple(fired.evidence),
            facts=dict(fired.facts),
            tz=tz,
            opt_outs=frozenset(opt_outs),
            persona=persona,
            ignored_streak=fired.ignored_streak,
            experiment=experiment,
            stale=fired.stale,
            pending={TIMER_TRIGGER[k]: t.due_ms for k, t in (timers or {}).items() if not t.stale},
            active_hours=active_hours,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decision, and whether it was already recorded (then do not send it again)."""

    decision: Decision
    duplicate: bool = False


class Decider:
    """Catalogue + fatigue ledger. Pure apart from the ledger's store."""

    def __init__(
        self, catalogue: Catalogue, ledger: FatigueLedger, regret_streak: int | None = None,
        policy: StrategyPolicy | None = None,
    ) -> None:  # fmt: skip
        """``regret_streak``: ``[strategies] regret_streak`` (default: :func:`~intentstream.stream.settings.default_settings`);
        ``policy``: the explore / exploit policy between a trigger's strategies (None:
        the catalogue alone chooses)."""
        self.catalogue = catalogue
        self.ledger = ledger
        self.regret_streak = default_settings().strategies.regret_streak if regret_streak is None else regret_streak
        self.policy = policy

    @classmethod
    def from_settings(cls, settings: Settings, store: LedgerStore) -> Decider:
        catalogue = catalogue_from_settings(settings)
        return cls(
            catalogue,
            FatigueLedger.from_settings(settings, store),
            settings.strategies.regret_streak,
            StrategyPolicy(catalogue, settings.policy) if settings.policy.enabled else None,
        )

    def prepare(self, hit: TriggerHit, tally: Mapping[str, Sequence[int]] | None = None) -> tuple[Candidate, dict[str, Any]]:
        """The ledger candidate and the decision draft for a hit (no state touched);
        ``tally``: the policy's view of what each arm achieved (the step's
        :class:`~intentstream.stream.policy.tally.ArmTally` snapshot). The draft's
        ``strategy.policy`` is None only when every arm is paused (ROI guard)."""
        attrs = hit.persona.attributes() if hit.persona else None
        choice = self.catalogue.choose(hit.trigger, attrs, hit.ignored_streak, self.regret_streak)
        st = choice.strategy
        aid = action_id(hit.user_id, hit.trigger, hit.evidence)
        picked = None
        if self.policy is not None:
            persona = str(hit.persona.cluster_id) if hit.persona else None
            picked = self.policy.choose(hit.trigger, persona, aid, st.key, choice.group == "alternate", tally or {})
            if picked.arm is not None and picked.arm != st.key:
                st = self.catalogue.strategies[picked.arm]
        experiment, held_out = self.ledger.holdout.assign(hit.user_id, hit.trigger, hit.experiment)
        offer = None
        if st.coupon:
            offer = {k: v for k, v in st.coupon.details(aid, 0).items() if k != "expires_at"}
        draft: dict[str, Any] = {
            "action_id": aid,
            "user_id": hit.user_id,
            "trigger": hit.trigger,
            "decided_at": hit.ts_ms,
            "persona": hit.persona.to_dict() if hit.persona else None,
            "evidence": sorted(set(hit.evidence)),
            "experiment": {"id": experiment, "arm": HOLDOUT if held_out else TREATMENT},
            "strategy": {
                "key": st.key,
                "group": choice.group,
                "persona_rule": choice.persona_rule,
                "channels": list(st.channels),
                "link": st.link,
                "content": self.catalogue.render(st, hit.facts),
                "coupon": offer,
            },
        }
        if picked is not None:
            draft["strategy"]["policy"] = picked.to_dict()
        cand = Candidate(
            action_id=aid,
            user_id=hit.user_id,
            trigger=hit.trigger,
            decided_at=hit.ts_ms,
            channels=st.channels,
            tz=hit.tz,
            opt_outs=hit.opt_outs,
            experiment=hit.experiment,
            coupon=st.coupon is not None,
            pending=hit.pending,
            active_hours=hit.active_hours,
        )
        return cand, draft

    def decide(self, hit: TriggerHit, tally: Mapping[str, Sequence[int]] | None = None) -> Outcome:
        cand, draft = self.prepare(hit, tally)
        blocked = _blocked(hit, draft)
        if blocked:
            return _outcome(Verdict("suppressed", blocked, payload=codec.dumps(draft)))
        return _outcome(self.ledger.check(cand, codec.dumps(draft)))

    def decide_many(self, hits: Iterable[TriggerHit], tally: Mapping[str, Sequence[int]] | None = None) -> list[Outcome]:
        """Several hits in order; one pipelined round trip per chunk on Redis."""
        drafts = []
        for hit in hits:
            cand, draft = self.prepare(hit, tally)
            drafts.append((_blocked(hit, draft), cand, draft))
        checked = iter(self.ledger.check_many([(cand, codec.dumps(draft)) for blocked, cand, draft in drafts if not blocked]))
        return [
            _outcome(Verdict("suppressed", blocked, payload=codec.dumps(draft)) if blocked else next(checked))
            for blocked, _, draft in drafts
        ]


def _blocked(hit: TriggerHit, draft: Mapping[str, Any]) -> str | None:
    """Why a hit is suppressed before the ledger sees it (it then counts against no cap or
    cooldown): ``stale`` (a moment long past) or ``roi_guard`` (every arm paused)."""
    if hit.stale:
        return "stale"
    policy = draft["strategy"].get("policy")
    if policy is not None and policy["arm"] is None:
        return "roi_guard"
    return None


def _outcome(v: Verdict) -> Outcome:
    return Outcome(build_decision(codec.loads(v.payload), v), v.duplicate)


def build_decision(draft: Mapping[str, Any], v: Verdict) -> Decision:
    """The decision for a draft and the ledger's verdict on it."""
    strategy = dict(draft["strategy"])
    offer = strategy.get("coupon")
    if offer is not None and v.coupon == COUPON_GRANTED:
        when = v.send_at if v.send_at is not None else draft["decided_at"]
        strategy["coupon"] = {**offer, "expires_at": format_ts(when + offer["expiry_hours"] * 3_600_000)}
        strategy["coupon_withheld"] = None
    else:
        strategy["coupon"] = None
        strategy["coupon_withheld"] = v.coupon if offer is not None else None
        strategy["content"] = {
            lang: {**texts, "coupon_line": None} for lang, texts in strategy["content"].items()
        }
    return Decision(
        action_id=draft["action_id"],
        user_id=draft["user_id"],
        trigger=draft["trigger"],
        channel=v.channel,
        status=v.status,
        reason=v.reason,
        decided_at=draft["decided_at"],
        send_at=v.send_at,
        fallback_from=v.fallback_from,
        persona=draft["persona"],
        strategy=strategy,
        evidence=tuple(draft["evidence"]),
        experiment=draft.get("experiment"),  # None in ledger records older than per-trigger holdouts
    )
