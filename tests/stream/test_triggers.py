"""Every trigger rule, driven by hand-made events and a hand-driven watermark."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest

from intentstream.stream import codec
from intentstream.stream.contract.events import Event
from intentstream.stream.settings import TriggerSettings
from intentstream.stream.triggers.rules import CHURN, TriggerRules
from intentstream.stream.triggers.state import TriggerState

T0 = 1767607200000  # 2026-01-05T10:00:00Z
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
#: the churn cadence of the shipped defaults: 7, 14, 30 days of silence
STEPS = [s * 1000 for s in TriggerSettings.defaults().churn_steps_s]


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

    def churn(self) -> list[tuple[int, int, tuple[str, ...]]]:
        """(time, step, evidence) of each churn_risk fired."""
        return [(f.ts_ms, f.facts["step"], f.evidence) for f in self.fired if f.trigger == "churn_risk"]


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


def test_churn_cadence_fires_each_step_once_then_stops():
    u = User().ev("page_view", T0).ev("page_view", T0 + DAY)
    last = T0 + DAY
    u.tick(last + STEPS[1] - 1)
    assert u.churn() == [(last + STEPS[0], 1, ("e2",))]
    u.tick(last + 400 * DAY)
    assert u.churn() == [
        (last + STEPS[0], 1, ("e2",)),
        (last + STEPS[1], 2, ("e2", "churn_step:2")),
        (last + STEPS[2], 3, ("e2", "churn_step:3")),
    ]  # each its own evidence, so its own action_id; then nothing more
    assert u.st.timers == {} and u.st.churn_step == 3


def test_churn_cadence_catches_up_when_the_watermark_jumps_over_several_steps():
    u = User().ev("page_view", T0).ev("page_view", T0 + DAY)
    u.rules.on_delivery(u.st, "a1", "cart_abandoned", T0 + DAY + STEPS[1])  # ignored between steps 2 and 3
    fired = u.rules.fire_due(u.st, T0 + 400 * DAY)
    assert [(f.ts_ms - T0 - DAY, f.facts["step"], f.ignored_streak) for f in fired] == [(STEPS[0], 1, 0), (STEPS[1], 2, 0), (STEPS[2], 3, 1)]


def test_a_return_starts_the_cadence_over():
    u = User(TriggerSettings.defaults(churn_rhythm_factor=0.0)).ev("page_view", T0).ev("page_view", T0 + DAY).tick(T0 + DAY + STEPS[1])
    assert [step for _, step, _ in u.churn()] == [1, 2]
    back = T0 + DAY + STEPS[1] + 3 * DAY
    u.ev("app_open", back).tick(back + STEPS[1] - 1)  # e3, with the old step 3 still ahead: cancelled
    assert u.churn()[2:] == [(back + STEPS[0], 1, ("e3",))]
    u.ev("page_view", back + STEPS[0] + HOUR).tick(back + 400 * DAY)  # e4: back between steps
    assert [(t - back - STEPS[0] - HOUR, step) for t, step, _ in u.churn()[3:]] == [(s, i + 1) for i, s in enumerate(STEPS)]


def test_reacting_to_a_reminder_is_no_return():
    """Opening, clicking or dismissing a message (or unsubscribing) is no visit: the
    cadence goes on, and stops after its last step; a visit starts it over."""
    u = User().ev("page_view", T0).ev("page_view", T0 + DAY)
    last = T0 + DAY
    u.tick(last + STEPS[0])
    aid = "a-step1"
    u.ev("message_open", last + STEPS[0] + HOUR, action_id=aid).ev("message_click", last + STEPS[0] + 2 * HOUR, action_id=aid)
    u.ev("message_dismiss", last + STEPS[1] + HOUR, action_id="a-step2").tick(last + 400 * DAY)
    assert [(t - last, step) for t, step, _ in u.churn()] == [(s, i + 1) for i, s in enumerate(STEPS)]
    assert u.st.last_event_ms == last and u.st.days == [T0 // DAY, last // DAY]
    u.ev("app_open", last + 401 * DAY).ev("page_view", last + 402 * DAY).tick(last + 402 * DAY + STEPS[0])
    assert u.churn()[-1] == (last + 402 * DAY + STEPS[0], 1, ("e7",))


def test_churn_follows_the_users_own_rhythm():
    """A user who comes every 10 days is not at risk after 7 silent days, but after 20
    (2 x the median gap); the later steps keep their ratio to the first."""
    u = User()
    for d in (0, 10, 20, 30):
        u.ev("page_view", T0 + d * DAY)
    last = T0 + 30 * DAY
    assert [t - T0 for t, _, _ in u.churn()] == [17 * DAY]  # with two days known, day 10 + 7: no rhythm yet
    u.tick(last + 20 * DAY - 1)
    assert [t for t, _, _ in u.churn() if t > last] == []
    u.tick(last + 400 * DAY)
    assert [(t - last, step) for t, step, _ in u.churn() if t > last] == [(20 * DAY, 1), (STEPS[1] * 20 * DAY // STEPS[0], 2), (STEPS[2] * 20 * DAY // STEPS[0], 3)]
    assert u.st.days == [(T0 + d * DAY) // DAY for d in (10, 20, 30)]  # day 0 left the 30-day window

    daily = User()
    for d in (0, 1, 2, 4, 5):
        daily.ev("page_view", T0 + d * DAY)
    daily.tick(T0 + 5 * DAY + STEPS[0])
    assert [t for t, _, _ in daily.churn()] == [T0 + 5 * DAY + STEPS[0]]  # 2 x 1 day < 7: the configured step


def test_cadence_never_goes_below_the_configured_steps():
    rules = TriggerRules()
    steps = rules.churn_steps_ms
    rng = random.Random(5)
    for _ in range(300):
        days = sorted(rng.sample(range(100, 130), rng.randint(0, 12)))
        cad = rules.cadence(days)
        assert len(cad) == len(steps) and all(c >= s for c, s in zip(cad, steps))
        assert all(abs(c / cad[0] - s / steps[0]) < 1e-9 for c, s in zip(cad, steps))  # the steps' ratios kept
    off = TriggerRules(TriggerSettings.defaults(churn_rhythm_factor=0.0))
    assert off.cadence([100, 120, 125, 129]) == steps
    with pytest.raises(ValueError):
        TriggerRules(TriggerSettings.defaults(churn_steps_s=(1209600, 604800)))


def test_a_late_old_event_does_not_refire_a_churn_step():
    """After step 1 fired, an older visit and a retry of the latest activity (new id, same
    time) arrive late: nothing fires again; step 2 stays where the latest activity put it."""
    u = User().ev("page_view", T0).ev("page_view", T0 + DAY)
    last = T0 + DAY
    u.tick(last + STEPS[0] + HOUR)
    u.ev("page_view", T0 + 2 * HOUR).ev("page_view", last).tick(last + STEPS[1] - 1)
    assert [(t - last, step) for t, step, _ in u.churn()] == [(STEPS[0], 1)]
    assert u.st.timers[CHURN].due_ms == last + STEPS[1] and u.st.timers[CHURN].facts["step"] == 2


def test_the_churn_deadline_is_a_function_of_the_events_not_their_order():
    """Any arrival order of the same events (before the deadline) arms the same step at
    the same deadline with the same evidence; rhythm included."""
    times = [T0 + d * DAY + h * HOUR for d, h in ((0, 1), (4, 2), (9, 0), (9, 5), (13, 3), (18, 1))]
    seen = set()
    for order in itertools.islice(itertools.permutations(range(len(times))), 0, None, 37):
        rules, st = TriggerRules(), TriggerState()
        for i in order:
            rules.on_fields(st, times[i], f"e{i}", "page_view", None, None)
        t = st.timers[CHURN]
        seen.add((t.due_ms, t.evidence, t.facts["step"]))
    assert seen == {(times[-1] + 9 * DAY, ("e5",), 1)}  # gaps 4, 5, 4, 5 days: median 4.5, x 2 = 9 days


def test_churn_reminders_per_silence_never_exceed_the_steps():
    """Random activity with silences short and long, fed in order: between two visits at
    most len(steps) reminders, each after the visit, each step once, in order."""
    rng = random.Random(11)
    for _ in range(20):
        u, t = User(), T0
        visits = []
        for _ in range(25):
            t += rng.choice([HOUR, DAY, 3 * DAY, 9 * DAY, 20 * DAY, 45 * DAY])
            visits.append(t)
            u.tick(t - 1).ev("page_view", t)
        u.tick(t + 400 * DAY)
        for a, b in zip(visits, visits[1:] + [t + 400 * DAY]):
            steps = [step for at, step, _ in u.churn() if a < at < b]
            assert steps == list(range(1, len(steps) + 1)) and len(steps) <= len(STEPS), (a, b, steps)


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
