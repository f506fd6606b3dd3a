"""The decision contract (stream/decisions/contract.py) and the decider that produces it
(stream/decisions/decider.py: catalogue + fatigue ledger)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from intentstream.stream import codec
from intentstream.stream.checks import check_deterministic, check_idempotent
from intentstream.stream.decisions.decider import Decider, TriggerHit, build_decision
from intentstream.stream.decisions.contract import REASONS, STATUSES, BehaviourPersona, Decision, action_id
from intentstream.stream.contract.events import parse_ts
from intentstream.stream.decisions.fatigue import FatigueLedger, HoldoutDesign
from intentstream.stream.settings import FatigueSettings
from intentstream.stream.state.fatigue import DAY_MS, HOUR_MS, Verdict
from intentstream.stream.state.memory import MemoryLedgerStore
from intentstream.stream.decisions.strategies import load_catalogue
from intentstream.stream.triggers.state import Fired

KEYS = {
    "action_id", "user_id", "trigger", "channel", "status", "reason", "decided_at", "send_at",
    "fallback_from", "persona", "strategy", "evidence", "experiment",
}  # fmt: skip
STRATEGY_KEYS = {"key", "group", "persona_rule", "channels", "link", "content", "coupon", "coupon_withheld"}


def ts(text: str) -> int:
    value = parse_ts(text)
    assert isinstance(value, int)
    return value


T0 = ts("2026-01-05T10:00:00Z")
CATALOGUE = load_catalogue()


def decider(holdout_share: float = 0.0) -> Decider:
    return Decider(CATALOGUE, FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=holdout_share)))


def hit(trigger="cart_abandoned", at=T0, evidence=("e1",), user="u1", **kw) -> TriggerHit:
    return TriggerHit(user, trigger, at, tuple(evidence), **kw)


# --------------------------------------------------------------------------- action ids


def test_action_id_is_deterministic_and_order_insensitive():
    a = action_id("u1", "cart_abandoned", ["e1", "e2"])
    assert a == action_id("u1", "cart_abandoned", ("e2", "e1", "e2"))
    assert len(a) == 20 and int(a, 16) >= 0
    assert len({a, action_id("u2", "cart_abandoned", ["e1", "e2"]), action_id("u1", "churn_risk", ["e1", "e2"]),
                action_id("u1", "cart_abandoned", ["e1"])}) == 4  # fmt: skip
    assert action_id("u1", "kyc_stalled", ["e9"]) == "5f03b9ff1542ad2868c8"  # pinned: ids must never drift


# --------------------------------------------------------------------------- the contract


def test_to_dict_has_a_stable_key_set_for_every_status():
    d = decider()
    seen = {}
    design = HoldoutDesign.from_settings()
    user = next(f"h{i}" for i in range(10_000) if design.assign(f"h{i}", "cart_abandoned")[1])
    hits = [
        hit(at=T0),  # sent
        hit(at=T0 + HOUR_MS, evidence=("e2",)),  # suppressed: cooldown
        hit("kyc_stalled", ts("2026-01-05T23:00:00Z"), tz="UTC"),  # deferred
        hit("payment_stalled", opt_outs=frozenset({"push", "sms", "email"})),  # suppressed: opt_out
    ]
    for h in hits:
        o = d.decide(h).decision
        seen[(o.status, o.reason)] = o
    held = Decider(CATALOGUE, FatigueLedger(MemoryLedgerStore())).decide(hit(user=user)).decision
    seen[(held.status, held.reason)] = held
    capped = Decider(CATALOGUE, FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(channel_cap=0, holdout_share=0.0)))
    o = capped.decide(hit()).decision
    seen[(o.status, o.reason)] = o
    assert set(seen) == {("sent", None), ("suppressed", "cooldown"), ("deferred", "quiet_hours"),
                         ("suppressed", "opt_out"), ("holdout", "holdout"), ("suppressed", "fatigue_cap")}  # fmt: skip
    for o in seen.values():
        obj = o.to_dict()
        assert set(obj) == KEYS and set(obj["strategy"]) == STRATEGY_KEYS
        assert Decision.from_dict(codec.loads(codec.dumps(obj))) == o


def test_decision_validates_status_and_reason():
    base = dict(action_id="a", user_id="u", trigger="t", channel=None, decided_at=T0)
    with pytest.raises(ValueError, match="status"):
        Decision(status="maybe", reason=None, **base)
    with pytest.raises(ValueError, match="reason"):
        Decision(status="suppressed", reason=None, **base)
    with pytest.raises(ValueError, match="reason"):
        Decision(status="sent", reason="cooldown", **base)
    with pytest.raises(ValueError, match="unknown reason"):
        Decision(status="suppressed", reason="tired", **base)
    assert set(STATUSES) == {"sent", "deferred", "cancelled", "suppressed", "holdout"}
    assert {"fatigue_cap", "cooldown", "quiet_hours", "opt_out", "holdout"} <= set(REASONS)


def test_the_full_json_of_one_decision():
    persona = BehaviourPersona(3, "已完成交易·中紧迫·优惠券导向", "transacted", "coupon_oriented")
    out = decider().decide(hit(evidence=("e2", "e1"), facts={"item_id": "SKU-1042"}, tz="Europe/Berlin", persona=persona))
    obj = out.decision.to_dict()
    aid = action_id("u1", "cart_abandoned", ["e1", "e2"])
    assert obj == {
        "action_id": aid,
        "user_id": "u1",
        "trigger": "cart_abandoned",
        "channel": "push",
        "status": "sent",
        "reason": None,
        "decided_at": "2026-01-05T10:00:00.000Z",
        "send_at": None,
        "fallback_from": None,
        "persona": {"cluster_id": 3, "label": "已完成交易·中紧迫·优惠券导向"},
        "strategy": {
            "key": "cart_bigger_coupon",
            "group": "default",
            "persona_rule": 0,
            "channels": ["push", "in_app", "email"],
            "link": "app://cart",
            "content": {
                "en": {
                    "title": "A deal on your cart",
                    "body": "Your cart still holds SKU-1042, and today it comes with a better price.",
                    "coupon_line": "Your coupon: USD 15 off orders over USD 60. It expires in 24 hours.",
                },
                "zh": {
                    "title": "您的购物车有专属优惠",
                    "body": "SKU-1042还在购物车里，今天下单更划算。",
                    "coupon_line": "专属券：满USD 60减USD 15，24小时后失效。",
                },
            },
            "coupon": {
                "value": 15.0,
                "currency": "USD",
                "min_spend": 60.0,
                "expiry_hours": 24,
                "expires_at": "2026-01-06T10:00:00.000Z",
                "code": f"CART-{aid[:10].upper()}",
            },
            "coupon_withheld": None,
        },
        "evidence": ["e1", "e2"],
        "experiment": {"id": "holdout-v2/cart_abandoned", "arm": "treatment"},
    }
    assert codec.dumps(obj) == codec.dumps(Decision.from_dict(codec.loads(codec.dumps(obj))).to_dict())


# --------------------------------------------------------------------------- the decider


def test_capped_coupon_is_withheld_and_its_line_dropped():
    d = decider()
    first = d.decide(hit("cart_abandoned")).decision
    second = d.decide(hit("churn_risk", T0 + HOUR_MS, ("e5",))).decision
    assert first.strategy["coupon"] is not None and first.strategy["coupon_withheld"] is None
    assert second.status == "sent"
    assert second.strategy["coupon"] is None and second.strategy["coupon_withheld"] == "fatigue_cap"
    assert all(t["coupon_line"] is None for t in second.strategy["content"].values())
    assert second.strategy["content"]["en"]["body"]  # the message itself still goes


def test_suppressed_and_holdout_decisions_carry_no_coupon():
    d = decider()
    d.decide(hit())
    sup = d.decide(hit(at=T0 + 1, evidence=("e9",))).decision
    assert (sup.reason, sup.strategy["coupon"], sup.strategy["coupon_withheld"]) == ("cooldown", None, "not_sent")
    everyone = decider(holdout_share=1.0).decide(hit()).decision
    assert (everyone.status, everyone.channel, everyone.strategy["coupon_withheld"]) == ("holdout", "push", "not_sent")
    plain = d.decide(hit("kyc_rejected", evidence=("k1",))).decision
    assert plain.strategy["coupon"] is None and plain.strategy["coupon_withheld"] is None


def test_deferred_coupon_expires_relative_to_the_send_time():
    night = ts("2026-03-07T23:30:00-05:00")
    o = decider().decide(hit("kyc_stalled", night, tz="America/New_York")).decision
    assert (o.status, o.to_dict()["send_at"]) == ("deferred", "2026-03-08T12:00:00.000Z")
    assert o.strategy["coupon"]["expires_at"] == "2026-03-11T12:00:00.000Z"  # +72 h


def test_fallback_and_regret_rule_show_in_the_decision():
    d = decider()
    o = d.decide(hit("payment_stalled", opt_outs=frozenset({"push"}))).decision
    assert (o.channel, o.fallback_from) == ("sms", "push")
    alt = d.decide(hit("kyc_rejected", evidence=("k1",), ignored_streak=5)).decision
    assert (alt.strategy["key"], alt.strategy["group"], alt.channel) == ("kyc_video_check", "alternate", "email")


def test_redelivery_returns_the_original_decision_even_if_inputs_changed():
    d = decider()
    first = d.decide(hit(facts={"item_id": "A"}))
    later = hit(facts={"item_id": "B"}, persona=BehaviourPersona(1, "x", "transacted"), ignored_streak=9)
    again = d.decide(later)
    assert again.duplicate and not first.duplicate
    assert codec.dumps(again.decision.to_dict()) == codec.dumps(first.decision.to_dict())


def test_from_fired_takes_the_trigger_rules_output():
    fired = Fired("payment_stalled", T0, ("p1", "p2"), {"amount": 129.5, "currency": "EUR"}, ignored_streak=2)
    h = TriggerHit.from_fired("u7", fired, tz="Asia/Shanghai", opt_outs=["sms"])
    assert (h.user_id, h.trigger, h.ts_ms, h.evidence, h.ignored_streak, h.opt_outs) == (
        "u7", "payment_stalled", T0, ("p1", "p2"), 2, frozenset({"sms"}))  # fmt: skip
    o = decider().decide(h).decision
    assert "EUR 129.50" in o.strategy["content"]["en"]["body"]
    assert o.action_id == action_id("u7", "payment_stalled", ["p1", "p2"])


def test_build_decision_on_a_bare_verdict():
    draft = {"action_id": "a", "user_id": "u", "trigger": "t", "decided_at": T0, "persona": None,
             "evidence": ["e"], "strategy": {"content": {"en": {"coupon_line": None}}, "coupon": None}}  # fmt: skip
    d = build_decision(draft, Verdict("suppressed", "fatigue_cap"))
    assert (d.status, d.channel, d.strategy["coupon_withheld"]) == ("suppressed", None, None)


def random_hits(n: int, seed: int = 2) -> list[TriggerHit]:
    rng = random.Random(seed)
    triggers = sorted(CATALOGUE.triggers)
    zones = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Shanghai"]
    t = T0
    out = []
    for i in range(n):
        t += rng.randrange(0, 6 * HOUR_MS)
        persona = rng.choice([None, BehaviourPersona(1, "a", "transacted", "coupon_oriented"), BehaviourPersona(2, "b", "exploring")])
        out.append(
            TriggerHit(
                f"u{rng.randrange(8)}", rng.choice(triggers), t, (f"e{i}",),
                facts=rng.choice([{}, {"amount": 12.5, "currency": "USD", "item_id": "SKU-1"}]),
                tz=rng.choice(zones), opt_outs=frozenset(rng.sample(["push", "sms", "email"], rng.choice([0, 0, 1]))),
                persona=persona, ignored_streak=rng.choice([0, 0, 0, 6]),
            )
        )  # fmt: skip
    return out


def test_decider_is_deterministic_idempotent_and_batches_like_singles():
    hits = random_hits(300)

    def fresh():
        return decider(holdout_share=0.1).decide

    outs = check_deterministic(fresh, hits)
    check_idempotent(fresh, hits)
    statuses = {o.decision.status for o in outs}
    assert statuses == {"sent", "deferred", "suppressed", "holdout"}
    assert decider(holdout_share=0.1).decide_many(hits) == outs
    # the replayed output file is byte-identical
    lines = b"".join(codec.dumps_line(o.decision.to_dict()) for o in outs)
    again = b"".join(codec.dumps_line(o.decision.to_dict()) for o in decider(holdout_share=0.1).decide_many(hits))
    assert lines == again


def test_caps_hold_over_a_long_random_run():
    outs = [o.decision for o in decider().decide_many(random_hits(2000, seed=9))]
    by_key: dict[tuple[str, str], list[int]] = {}
    for o in outs:
        if o.is_delivery:
            by_key.setdefault((o.user_id, o.channel), []).append(o.delivery_at)
            if o.strategy["coupon"]:
                by_key.setdefault((o.user_id, "coupon"), []).append(o.delivery_at)
    for (user, channel), times in by_key.items():
        cap = 1 if channel == "coupon" else 3
        times.sort()
        for i, t in enumerate(times):
            assert sum(1 for x in times if t - 7 * DAY_MS < x <= t) <= cap, (user, channel, i)
    assert dataclasses.is_dataclass(outs[0])
