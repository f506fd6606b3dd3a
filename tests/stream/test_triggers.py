"""Every trigger rule, driven by hand-made events and a hand-driven watermark."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from intentstream.stream import codec
from intentstream.stream.contract.events import Event
from intentstream.stream.settings import TriggerSettings
from intentstream.stream.triggers.rules import TriggerRules
from intentstream.stream.triggers.state import TriggerState

T0 = 1767607200000  # 2026-01-05T10:00:00Z
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


class User:
    """Feeds one user's events to the rules; collects everything that fires."""

    def __init__(self, config: TriggerSettings | None = None) -> None:
        self.rules = TriggerRules(config)
        self.st = TriggerState()
        self.fired: list = []
        self.n = 0

    def ev(self, type_: str, at: int, **props) -> User:
        self.n += 1
        self.fired += self.rules.on_event(self.st, Event(f"e{self.n}", "u1", at, type_, props=props))
        return self

    def tick(self, watermark: int) -> User:
        self.fired += self.rules.fire_due(self.st, watermark)
        # state must survive a serialization round trip at any point (it lives in Redis)
        self.st = TriggerState.from_dict(codec.loads(codec.dumps(self.st.to_dict())))
        return self

    def triggers(self) -> list[tuple[str, int]]:
        return [(f.trigger, f.ts_ms) for f in self.fired]


def test_cart_abandoned_fires_at_the_deadline_of_the_last_add_to_cart():
    u = User().ev("add_to_cart", T0).ev("add_to_cart", T0 + 10 * MIN).tick(T0 + 39 * MIN)
    assert u.triggers() == []
    u.tick(T0 + 40 * MIN)
    assert u.triggers() == [("cart_abandoned", T0 + 40 * MIN)]
    assert u.fired[0].evidence == ("e1", "e2")
    u.tick(T0 + 5 * DAY)  # fires once
    assert len(u.triggers()) == 1


@pytest.mark.parametrize("completion", ["checkout_start", "payment_success"])
def test_cart_abandoned_is_cancelled_by_checkout_or_payment(completion):
    u = User().ev("add_to_cart", T0).ev(completion, T0 + 29 * MIN).tick(T0 + DAY)
    assert "cart_abandoned" not in [t for t, _ in u.triggers()]


def test_checkout_after_the_deadline_does_not_undo_the_abandonment():
    u = User().ev("add_to_cart", T0).ev("checkout_start", T0 + 31 * MIN)
    assert u.triggers() == [("cart_abandoned", T0 + 30 * MIN)]


def test_emptying_the_cart_cancels_the_reminder():
    u = User().ev("add_to_cart", T0).ev("remove_from_cart", T0 + MIN).tick(T0 + DAY)
    assert u.triggers() == []


def test_payment_stalled_after_the_last_payment_step():
    u = User().ev("checkout_start", T0).ev("payment_submit", T0 + 5 * MIN).ev("payment_fail", T0 + 6 * MIN)
    u.tick(T0 + 20 * MIN)
    assert u.triggers() == []
    u.tick(T0 + 21 * MIN)
    assert u.triggers() == [("payment_stalled", T0 + 21 * MIN)]


def test_payment_success_cancels_payment_stalled():
    u = User().ev("checkout_start", T0).ev("payment_success", T0 + 14 * MIN).tick(T0 + DAY)
    assert u.triggers() == []


def test_kyc_stalled_and_kyc_rejected():
    u = User().ev("kyc_start", T0).ev("kyc_submit", T0 + HOUR).tick(T0 + 25 * HOUR - 1)
    assert u.triggers() == []
    u.tick(T0 + 25 * HOUR)
    assert u.triggers() == [("kyc_stalled", T0 + 25 * HOUR)]

    u = User().ev("kyc_start", T0).ev("kyc_approved", T0 + HOUR).tick(T0 + 3 * DAY)
    assert u.triggers() == []

    u = User().ev("kyc_start", T0).ev("kyc_rejected", T0 + HOUR)
    assert u.triggers() == [("kyc_rejected", T0 + HOUR)]  # at once, not on a timer
    u.tick(T0 + 3 * DAY)
    assert u.triggers() == [("kyc_rejected", T0 + HOUR)]  # the stalled timer was cancelled


def test_churn_risk_needs_two_active_days_then_seven_silent_days():
    one_day = User().ev("page_view", T0).ev("page_view", T0 + HOUR).tick(T0 + 30 * DAY)
    assert one_day.triggers() == []

    u = User().ev("page_view", T0).ev("page_view", T0 + DAY).tick(T0 + 8 * DAY - 1)
    assert u.triggers() == []
    u.tick(T0 + 8 * DAY)
    assert u.triggers() == [("churn_risk", T0 + 8 * DAY)]


def test_churn_lookback_window_forgets_old_days():
    u = User().ev("page_view", T0).ev("page_view", T0 + 40 * DAY)  # 40 days apart: one day each in the window
    u.tick(T0 + 100 * DAY)
    assert u.triggers() == []
    u.ev("page_view", T0 + 101 * DAY).tick(T0 + 200 * DAY)
    assert u.triggers() == []  # day 40 fell out of the 30-day window: day 101 is alone
    assert u.st.days == [(T0 + 101 * DAY) // DAY]


def test_churn_counts_distinct_days_inside_the_window():
    u = User().ev("page_view", T0).ev("page_view", T0 + 29 * DAY).tick(T0 + 37 * DAY)
    assert u.triggers() == [("churn_risk", T0 + 36 * DAY)]


def seg(**over):
    base = dict(
        segment_id="s1", end_ms=T0, intent_strength=0.7, behaviour_stage="exploring", closed_by="inactivity",
        transaction_status="not_started", main_activity="general_exploring",
    )
    return SimpleNamespace(**{**base, **over})


def test_persona_driven_triggers_from_segments():
    rules, st = TriggerRules(), TriggerState()
    assert [f.trigger for f in rules.on_segment(st, seg())] == ["first_transaction_nudge"]
    assert rules.on_segment(st, seg(intent_strength=0.3)) == []
    assert rules.on_segment(st, seg(transaction_status="completed", behaviour_stage="transacted")) == []
    coupon = seg(main_activity="coupon_oriented", behaviour_stage="considering", intent_strength=0.55)
    assert [f.trigger for f in rules.on_segment(st, coupon)] == ["coupon_interest"]
    st.transacted_ms = T0 + 1  # a purchase after the segment ended: still a nudge at its end
    assert [f.trigger for f in rules.on_segment(st, seg())] == ["first_transaction_nudge"]
    st.transacted_ms = T0 - 1  # an earlier purchase: no first-transaction nudge any more
    assert rules.on_segment(st, seg()) == []


def test_ignored_messages_build_the_regret_streak_and_an_open_resets_it():
    u = User()
    for i in range(5):
        u.rules.on_delivery(u.st, f"a{i}", "cart_abandoned", T0 + i * DAY)
    u.tick(T0 + 6 * DAY)
    assert u.st.ignored_streak == 5
    u.ev("add_to_cart", T0 + 6 * DAY).tick(T0 + 7 * DAY)
    assert u.fired[-1].ignored_streak == 5  # the decider will switch strategy group
    u.rules.on_delivery(u.st, "a9", "cart_abandoned", T0 + 7 * DAY)
    u.ev("message_open", T0 + 7 * DAY + HOUR, action_id="a9", channel="push")
    assert u.st.ignored_streak == 0 and u.st.awaiting == {}


def test_feedback_deadline_counts_before_a_later_trigger_deadline():
    u = User()
    u.rules.on_delivery(u.st, "a1", "kyc_stalled", T0)  # ignored at T0 + 24 h
    u.ev("add_to_cart", T0 + 24 * HOUR)  # its deadline is 30 min after the ignore
    u.tick(T0 + 2 * DAY)
    assert u.fired[-1].trigger == "cart_abandoned" and u.fired[-1].ignored_streak == 1


def test_three_dismissals_block_the_trigger_for_thirty_days():
    u = User()
    for i in range(3):
        u.rules.on_delivery(u.st, f"a{i}", "cart_abandoned", T0 + i * HOUR)
        u.ev("message_dismiss", T0 + i * HOUR + MIN, action_id=f"a{i}", channel="push")
    assert "cart_abandoned" in u.st.blocked_until
    u.ev("add_to_cart", T0 + DAY).tick(T0 + 2 * DAY)
    assert "cart_abandoned" not in [t for t, _ in u.triggers()]
    u.ev("add_to_cart", T0 + 31 * DAY).tick(T0 + 32 * DAY)
    assert ("cart_abandoned", T0 + 31 * DAY + 30 * MIN) in u.triggers()


def test_disabled_triggers_never_fire():
    cfg = TriggerSettings.defaults(enabled=("payment_stalled",))
    u = User(cfg).ev("add_to_cart", T0).ev("kyc_rejected", T0 + MIN).tick(T0 + DAY)
    assert u.triggers() == []


def test_rules_are_deterministic_for_the_same_input():
    def run():
        u = User()
        for i, t in enumerate(["add_to_cart", "page_view", "checkout_start", "kyc_start", "page_view"]):
            u.ev(t, T0 + i * 7 * MIN + (i % 2) * DAY)
        u.tick(T0 + 10 * DAY)
        return u.fired, u.st.to_dict()

    assert run() == run()
