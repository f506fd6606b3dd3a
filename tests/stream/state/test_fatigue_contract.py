"""The LedgerStore contract, run over every backend (``backend`` in conftest.py: memory,
and Redis, i.e. the Lua script, as an integration test): the same candidates give the same
verdicts on each."""

from __future__ import annotations

import dataclasses

import pytest

from intentstream.stream.checks import check_deterministic, check_idempotent
from intentstream.stream.contract.events import format_ts, parse_ts
from intentstream.stream.decisions.fatigue import Candidate, FatigueLedger, in_holdout, verdict_fields
from intentstream.stream.settings import FatigueSettings
from intentstream.stream.state import LedgerStore
from intentstream.stream.state.fatigue import DAY_MS, HOUR_MS
from intentstream.stream.state.memory import MemoryLedgerStore

WEEK = 7 * DAY_MS


def ts(text: str) -> int:
    value = parse_ts(text)
    assert isinstance(value, int)
    return value


@pytest.fixture
def store(backend) -> LedgerStore:
    return backend.ledger()


@pytest.fixture
def ledger(store) -> FatigueLedger:
    """The channel rules alone (no global caps: they have their own tests below)."""
    return FatigueLedger(store, FatigueSettings.defaults(holdout_share=0.0, global_caps=()))


@pytest.fixture
def capped(store) -> FatigueLedger:
    """The default global caps (2 per 24 h, 5 per 7 days) and trigger priority."""
    assert FatigueSettings.defaults().global_caps == ((86400, 2), (604800, 5))
    return FatigueLedger(store, FatigueSettings.defaults(holdout_share=0.0))


T0 = ts("2026-01-05T10:00:00Z")  # a Monday, 10:00 UTC


def cand(aid, at, channels=("push", "in_app", "email"), *, user="u1", trigger=None, **kw) -> Candidate:
    return Candidate(aid, user, trigger or f"trig-{aid}", at, tuple(channels), **kw)


def test_store_implements_the_protocol(store):
    assert isinstance(store, LedgerStore)


def test_cap_fallback_and_all_capped(ledger):
    got = [ledger.check(cand(f"a{i}", T0 + i, ("push", "email"), tz="UTC")) for i in range(7)]
    assert [v.channel for v in got] == ["push"] * 3 + ["email"] * 3 + [None]
    assert [v.fallback_from for v in got] == [None] * 3 + ["push"] * 3 + [None]
    assert all(v.status == "sent" and v.reason is None for v in got[:6])
    assert (got[6].status, got[6].reason) == ("suppressed", "fatigue_cap")
    # caps are per user: another user is untouched
    assert ledger.check(cand("b0", T0, ("push", "email"), user="u2")).channel == "push"


def test_fallback_skips_capped_middle_channels(ledger):
    for i in range(3):
        ledger.check(cand(f"p{i}", T0 + i, ("push",)))
        ledger.check(cand(f"s{i}", T0 + i, ("sms",)))
    v = ledger.check(cand("x", T0 + 10, ("push", "sms", "email")))
    assert (v.channel, v.fallback_from) == ("email", "push")


def test_rolling_window_edge_is_exactly_seven_days(ledger):
    for i in range(3):
        assert ledger.check(cand(f"a{i}", T0 + i, ("push",))).channel == "push"
    before = ledger.check(cand("early", T0 + WEEK - 1, ("push",)))
    assert (before.status, before.reason) == ("suppressed", "fatigue_cap")
    at_edge = ledger.check(cand("edge", T0 + WEEK, ("push",)))  # T0 is exactly 7 days old: out
    assert (at_edge.status, at_edge.channel) == ("sent", "push")
    nxt = ledger.check(cand("next", T0 + WEEK, ("push",)))  # T0+1, T0+2, edge: full again
    assert nxt.reason == "fatigue_cap"


def test_late_candidate_cannot_overfill_a_window_with_later_deliveries(ledger):
    for i in range(3):
        ledger.check(cand(f"a{i}", T0 + (3 + i) * DAY_MS, ("push",)))
    late = ledger.check(cand("late", T0, ("push", "email")))  # within 7 days of all three
    assert (late.channel, late.fallback_from) == ("email", "push")
    early_enough = ledger.check(cand("old", T0 + 3 * DAY_MS - WEEK, ("push",)))
    assert early_enough.channel == "push"  # exactly a window before the first


def test_cooldown_is_checked_before_channels(ledger):
    t = T0
    first = ledger.check(cand("a", t, ("push",), trigger="cart_abandoned"))
    assert first.status == "sent"
    for i in range(3):  # fill push with other triggers
        ledger.check(cand(f"f{i}", t + i + 1, ("push",)))
    v = ledger.check(cand("b", t + DAY_MS - 1, ("push",), trigger="cart_abandoned"))
    assert (v.status, v.reason, v.channel) == ("suppressed", "cooldown", None)
    v = ledger.check(cand("c", t + DAY_MS, ("push",), trigger="cart_abandoned"))
    assert v.reason == "fatigue_cap"  # cooldown over exactly 24 h later; push still full
    # an older candidate for the trigger (a late event) is inside the cooldown too
    assert ledger.check(cand("d", t - 5 * DAY_MS, ("email",), trigger="cart_abandoned")).reason == "cooldown"


def test_suppressed_decisions_do_not_start_a_cooldown(ledger):
    for i in range(3):
        ledger.check(cand(f"f{i}", T0 + i, ("sms",)))
    assert ledger.check(cand("a", T0 + 10, ("sms",), trigger="kyc_stalled")).reason == "fatigue_cap"
    v = ledger.check(cand("b", T0 + 20, ("sms", "email"), trigger="kyc_stalled"))
    assert (v.status, v.channel) == ("sent", "email")


def test_quiet_hours_defer_and_count_at_the_send_time(ledger):
    ny = "America/New_York"
    night = ts("2026-03-07T23:30:00-05:00")  # the night clocks spring forward
    v = ledger.check(cand("n1", night, ("push", "email"), tz=ny))
    assert (v.status, v.reason, v.channel) == ("deferred", "quiet_hours", "push")
    assert format_ts(v.send_at) == "2026-03-08T12:00:00.000Z"
    # email is not a quiet channel: it goes now
    v = ledger.check(cand("n2", night, ("email", "push"), tz=ny))
    assert (v.status, v.channel, v.send_at) == ("sent", "email", None)


def test_a_deferred_send_escapes_a_window_that_is_full_at_decision_time(ledger):
    for i, at in enumerate(("2026-01-01T06:00:00Z", "2026-01-01T07:00:00Z", "2026-01-01T07:30:00Z")):
        # afternoon in Shanghai, where the user was then
        assert ledger.check(cand(f"old{i}", ts(at), ("push",), tz="Asia/Shanghai")).status == "sent"
    # at 23:00 on Jan 7 all three are inside the window; at 08:00 on Jan 8 none is
    v = ledger.check(cand("night", ts("2026-01-07T23:00:00Z"), ("push", "email"), tz="UTC"))
    assert (v.status, v.channel, format_ts(v.send_at)) == ("deferred", "push", "2026-01-08T08:00:00.000Z")


def test_a_deferred_send_counts_against_the_cap_at_its_send_time(ledger):
    ledger.check(cand("d1", ts("2026-01-02T10:00:00Z"), ("push",), tz="UTC"))
    ledger.check(cand("d2", ts("2026-01-02T11:00:00Z"), ("push",), tz="UTC"))
    v = ledger.check(cand("night", ts("2026-01-07T23:00:00Z"), ("push",), tz="UTC"))
    assert v.status == "deferred"
    # Jan 8 12:00: the window (Jan 1 12:00, Jan 8 12:00] holds Jan 2 x2 and Jan 8 08:00
    v = ledger.check(cand("noon", ts("2026-01-08T12:00:00Z"), ("push", "in_app"), tz="UTC"))
    assert (v.channel, v.fallback_from) == ("in_app", "push")
    # Jan 9 11:00: both Jan 2 ones are a week old; only the deferred one remains
    v = ledger.check(cand("later", ts("2026-01-09T11:00:00Z"), ("push",), tz="UTC"))
    assert v.channel == "push"


def test_capped_quiet_channel_falls_back_to_an_immediate_channel(ledger):
    for i in range(3):
        ledger.check(cand(f"p{i}", ts("2026-01-07T12:00:00Z") + i, ("push",), tz="UTC"))
    v = ledger.check(cand("night", ts("2026-01-07T23:00:00Z"), ("push", "in_app"), tz="UTC"))
    assert (v.status, v.channel, v.send_at, v.fallback_from) == ("sent", "in_app", None, "push")


def test_opt_outs_fall_back_and_can_leave_nothing(ledger):
    v = ledger.check(cand("a", T0, ("push", "email"), opt_outs=frozenset({"push"})))
    assert (v.status, v.channel, v.fallback_from) == ("sent", "email", "push")
    v = ledger.check(cand("b", T0, ("push", "email"), opt_outs=frozenset({"push", "email"})))
    assert (v.status, v.reason, v.channel) == ("suppressed", "opt_out", None)
    # an opted-out channel is never used, even when everything else is capped
    for i in range(3):
        ledger.check(cand(f"e{i}", T0 + i, ("email",)))
    v = ledger.check(cand("c", T0 + 5, ("push", "email"), opt_outs=frozenset({"push"})))
    assert v.reason == "fatigue_cap"


def test_cooldown_comes_before_opt_out(ledger):
    ledger.check(cand("a", T0, ("push",), trigger="churn_risk"))
    v = ledger.check(cand("b", T0 + HOUR_MS, ("push",), trigger="churn_risk", opt_outs=frozenset({"push"})))
    assert v.reason == "cooldown"


def _holdout_user(share: float = 0.05, experiment: str = "fatigue-holdout-v1") -> str:
    return next(f"user-{i}" for i in range(10_000) if in_holdout(f"user-{i}", experiment, share))


def test_holdout_is_recorded_not_counted_and_starts_the_cooldown(store):
    ledger = FatigueLedger(store)  # default holdout ([fatigue] holdout_share: 5%)
    user = _holdout_user()
    exp = "fatigue-holdout-v1"  # one experiment for the candidates' made-up triggers
    verdicts = [ledger.check(cand(f"h{i}", T0 + i, ("push", "email"), user=user, coupon=True, experiment=exp)) for i in range(10)]
    assert {(v.status, v.reason, v.channel, v.coupon) for v in verdicts} == {("holdout", "holdout", "push", "not_sent")}
    again = ledger.check(cand("h-again", T0 + HOUR_MS, ("push",), user=user, trigger="trig-h0", experiment=exp))
    assert again.reason == "cooldown"
    # a quiet-hours holdout shows when it would have gone
    v = ledger.check(cand("h-night", ts("2026-01-05T23:00:00Z"), ("sms",), user=user, tz="UTC", experiment=exp))
    assert (v.status, format_ts(v.send_at)) == ("holdout", "2026-01-06T08:00:00.000Z")
    # nothing was counted: with holdout off, the same user still has every cap free
    treated = FatigueLedger(store, FatigueSettings.defaults(holdout_share=0.0, global_caps=()))
    sent = [treated.check(cand(f"t{i}", T0 + 100 + i, ("push",), user=user)) for i in range(3)]
    assert [v.status for v in sent] == ["sent"] * 3


def test_coupon_has_its_own_cap_and_the_message_goes_without_it(ledger):
    got = [ledger.check(cand(f"c{i}", T0 + i * DAY_MS, ("email",), coupon=True)) for i in range(3)]
    assert [(v.status, v.coupon) for v in got] == [("sent", "granted"), ("sent", "fatigue_cap"), ("sent", "fatigue_cap")]
    week_later = ledger.check(cand("c7", T0 + WEEK, ("push",), coupon=True))
    assert week_later.coupon == "granted"  # the first coupon is exactly 7 days old
    assert ledger.check(cand("plain", T0 + WEEK, ("in_app",))).coupon is None
    for i in range(3):
        ledger.check(cand(f"fill{i}", T0 + 8 * DAY_MS + i, ("sms",)))
    capped = ledger.check(cand("nomsg", T0 + 8 * DAY_MS + 5, ("sms",), coupon=True))
    assert (capped.status, capped.coupon) == ("suppressed", "not_sent")


def test_coupon_counts_at_the_deferred_send_time(ledger):
    assert ledger.check(cand("c0", ts("2026-01-01T07:30:00Z"), ("email",), coupon=True, tz="UTC")).coupon == "granted"
    # decided 23:00 Jan 7 (c0 inside the window), sent 08:00 Jan 8 (c0 a week old): granted
    v = ledger.check(cand("c1", ts("2026-01-07T23:00:00Z"), ("push",), coupon=True, tz="UTC"))
    assert (v.status, v.coupon) == ("deferred", "granted")


def test_recording_the_same_action_twice_is_a_no_op(ledger):
    first = ledger.check(cand("dup", T0, ("sms", "email"), trigger="payment_stalled", coupon=True), b'{"v":1}')
    assert not first.duplicate and first.channel == "sms"
    # redelivered, even with different inputs: the original verdict and payload come back
    again = ledger.check(cand("dup", T0 + HOUR_MS, ("email",), trigger="payment_stalled"), b'{"v":2}')
    assert again.duplicate
    assert {**verdict_fields(again), "duplicate": False} == verdict_fields(first)
    assert again.payload == b'{"v":1}'
    # and nothing was counted twice: two more sms fit under the cap of 3
    assert [ledger.check(cand(f"s{i}", T0 + i + 1, ("sms",))).channel for i in range(3)] == ["sms", "sms", None]
    # suppressed decisions are idempotent too
    sup = ledger.check(cand("s9", T0 + 9, ("sms",)))
    assert sup.reason == "fatigue_cap"
    assert ledger.check(cand("s9", T0 + 9, ("email",))).reason == "fatigue_cap"


def test_limits_are_the_stores_to_enforce(store):
    ledger = FatigueLedger(store, FatigueSettings.defaults(channel_cap=1, coupon_cap=0, window_s=86400, cooldown_s=0, holdout_share=0.0))
    a = ledger.check(cand("a", T0, ("push", "email"), coupon=True, trigger="t"))
    b = ledger.check(cand("b", T0 + 1, ("push", "email"), trigger="t"))
    c = ledger.check(cand("c", T0 + DAY_MS, ("push",), trigger="t"))
    assert (a.channel, a.coupon, b.channel, c.channel) == ("push", "fatigue_cap", "email", "push")


def test_ledger_is_deterministic_and_idempotent(backend, make_candidates):
    cands = make_candidates(400)

    def fresh():
        return FatigueLedger(backend.ledger(), FatigueSettings.defaults(holdout_share=0.1)).check

    verdicts = check_deterministic(fresh, cands)
    assert {v.status for v in verdicts} >= {"sent", "deferred", "suppressed", "holdout"}
    check_idempotent(fresh, cands)


def test_pipelined_batches_equal_one_by_one(backend, make_candidates):
    cands = make_candidates(120, seed=11, users=3)
    one = FatigueLedger(backend.ledger(), FatigueSettings.defaults(holdout_share=0.1))
    many = FatigueLedger(backend.ledger(), FatigueSettings.defaults(holdout_share=0.1))
    items = [(c, f"p{i}".encode()) for i, c in enumerate(cands)]
    items += items[:15]  # redeliveries in the same batch run
    singles = [one.check(c, p) for c, p in items]
    assert many.check_many(items) == singles


def test_same_verdicts_as_the_reference_store(store, make_candidates):
    """Differential: a long random sequence agrees verdict for verdict with the memory store."""
    base = make_candidates(600, seed=5, users=5)
    cands = []
    for i, c in enumerate(base):
        cands.append(c)
        if i % 7 == 0 and i >= 10:
            # a redelivery, a day or two after the original: within the retention horizon.
            # (Beyond it the stores may differ: memory forgets by event time, Redis by TTL.)
            cands.append(base[i - 10])
    ref = FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=0.1))
    sut = FatigueLedger(store, FatigueSettings.defaults(holdout_share=0.1))
    for c in cands:
        assert sut.check(c, c.action_id.encode()) == ref.check(c, c.action_id.encode()), c


# --------------------------------------------------------------------------- global caps and priority

ALL = ("push", "sms", "in_app", "email")


def _rs(v):
    return v.status, v.reason


def test_global_cap_counts_every_channel_and_no_fallback_helps(capped):
    a = capped.check(cand("a", T0, ("push",), coupon=True))
    b = capped.check(cand("b", T0 + 1, ("email",), coupon=True))  # the coupon is no message
    assert (a.channel, b.channel) == ("push", "email") and _rs(b) == ("sent", None)
    c = capped.check(cand("c", T0 + 2, ALL, coupon=True))
    assert (c.status, c.reason, c.channel, c.send_at, c.coupon) == ("suppressed", "global_cap", None, None, "not_sent")
    # rolling 24 h, not a calendar day: a and b hold (T0 - 1 ms, T0 + 24 h - 1 ms]
    assert capped.check(cand("d", T0 + DAY_MS - 1, ALL)).reason == "global_cap"
    assert _rs(capped.check(cand("e", T0 + DAY_MS, ("in_app",)))) == ("sent", None)  # a is out
    assert capped.check(cand("f", T0 + DAY_MS, ALL)).reason == "global_cap"  # b and e
    assert _rs(capped.check(cand("g", T0 + DAY_MS + 1, ("sms",)))) == ("sent", None)  # b is out
    # per user: another user is untouched
    assert capped.check(cand("h", T0 + 2, ALL, user="u2")).status == "sent"


def test_global_cap_over_seven_days(capped):
    got = [capped.check(cand(f"d{i}", T0 + i * DAY_MS, ALL)) for i in range(6)]
    assert [_rs(v) for v in got] == [("sent", None)] * 5 + [("suppressed", "global_cap")]
    assert capped.check(cand("x", T0 + WEEK - 1, ALL)).reason == "global_cap"
    assert capped.check(cand("y", T0 + WEEK, ALL)).status == "sent"  # d0 is exactly a week old


def test_a_late_message_cannot_overfill_a_global_window(capped):
    capped.check(cand("a", T0 + 10 * HOUR_MS, ("push",)))
    capped.check(cand("b", T0 + 20 * HOUR_MS, ("email",)))
    # (T0 - 4 h, T0 + 20 h] would hold it, a and b
    assert capped.check(cand("late", T0, ("in_app",))).reason == "global_cap"
    assert capped.check(cand("older", T0 - 4 * HOUR_MS, ("in_app",))).status == "sent"


def test_priority_keeps_the_last_slot_for_a_pending_higher_journey(capped):
    pend = {"cart_abandoned": T0 + 30 * 60_000}  # the cart timer, due in 30 min
    # two slots free: a lower-priority message takes one even with a journey pending
    assert capped.check(cand("a", T0, ("push",), trigger="churn_risk", pending=pend)).status == "sent"
    # the last slot of the 24 h window: not for it while cart_abandoned is pending
    b = capped.check(cand("b", T0 + 1, ALL, trigger="coupon_interest", pending=pend))
    assert (b.status, b.reason, b.channel) == ("suppressed", "priority", None)
    # a pending journey of lower priority reserves nothing; nor does the same trigger
    low = {"first_transaction_nudge": T0, "coupon_interest": T0}
    assert capped.check(cand("c", T0 + 2, ALL, trigger="coupon_interest", pending=low)).status == "sent"
    assert capped.check(cand("d", T0 + DAY_MS + 2, ("email",), trigger="kyc_rejected")).status == "sent"
    e = capped.check(cand("e", T0 + DAY_MS + 3, ("sms",), trigger="cart_abandoned", pending={"cart_abandoned": T0 + DAY_MS}))
    assert _rs(e) == ("sent", None)  # not strictly above itself: its own journey may take the last slot
    # the full window answers global_cap, whatever is pending
    assert capped.check(cand("f", T0 + DAY_MS + 4, ALL, trigger="churn_risk", pending=pend)).reason == "global_cap"


def test_priority_keeps_a_slot_only_where_the_pending_message_can_land(capped):
    capped.check(cand("a", T0, ("push",)))
    # a kyc timer due exactly 24 h after the send time cannot share a 24 h window with it
    v = capped.check(cand("b", T0 + 1, ("email",), trigger="churn_risk", pending={"kyc_stalled": T0 + 1 + DAY_MS}))
    assert _rs(v) == ("sent", None)
    v = capped.check(cand("c", T0 + DAY_MS, ("in_app",), trigger="coupon_interest", pending={"kyc_stalled": T0 + 2 * DAY_MS - 1}))
    assert _rs(v) == ("suppressed", "priority")  # b holds (T0 + 1, T0 + 24 h]: one slot left, kyc due within it
    # an overdue timer (waiting for a late burst) is still pending
    v = capped.check(cand("d", T0 + DAY_MS, ("in_app",), trigger="coupon_interest", pending={"churn_risk": T0}))
    assert _rs(v) == ("suppressed", "priority")
    # a churn timer due in 6 days keeps the last slot of the week, not of the day
    for i, at in enumerate((2, 3)):
        capped.check(cand(f"w{i}", T0 + at * DAY_MS, ALL))
    churn = {"churn_risk": T0 + 9 * DAY_MS}
    assert _rs(capped.check(cand("x", T0 + 3 * DAY_MS + 1, ALL, trigger="coupon_interest", pending=churn))) == ("suppressed", "priority")
    assert _rs(capped.check(cand("y", T0 + 3 * DAY_MS + 1, ALL, trigger="coupon_interest", pending={"churn_risk": T0 + 11 * DAY_MS}))) == ("sent", None)


def test_priority_applies_to_the_last_slot_of_the_week_too(capped):
    for i in range(4):
        capped.check(cand(f"w{i}", T0 + i * DAY_MS, ALL))
    pend = {"kyc_stalled": T0 + 5 * DAY_MS}
    # the 24 h window is empty, the 7-day one has its last slot free
    v = capped.check(cand("low", T0 + 4 * DAY_MS, ALL, trigger="churn_risk", pending=pend))
    assert _rs(v) == ("suppressed", "priority")
    # an unlisted trigger ranks below every listed one
    assert capped.check(cand("odd", T0 + 4 * DAY_MS, ALL, trigger="made_up", pending=pend)).reason == "priority"
    v = capped.check(cand("high", T0 + 4 * DAY_MS, ALL, trigger="kyc_rejected", pending=pend))
    assert _rs(v) == ("sent", None)


def test_global_cap_and_priority_come_before_holdout_which_counts_nothing(store):
    exp = "fatigue-holdout-v1"
    user = _holdout_user()
    held = FatigueLedger(store, FatigueSettings.defaults(holdout_experiment="fatigue-holdout"))
    hv = [held.check(cand(f"h{i}", T0 + i, ALL, user=user, experiment=exp)) for i in range(4)]
    assert {_rs(v) for v in hv} == {("holdout", "holdout")}  # holdout records do not fill the cap
    treated = FatigueLedger(store, FatigueSettings.defaults(holdout_share=0.0))
    assert [treated.check(cand(f"t{i}", T0 + 10 + i, ALL, user=user)).status for i in range(3)] == ["sent", "sent", "suppressed"]
    # both arms are filtered alike: a holdout decision on a full window is global_cap, not holdout
    assert _rs(held.check(cand("h9", T0 + 20, ALL, user=user, experiment=exp))) == ("suppressed", "global_cap")
    other = next(f"user-{i}" for i in range(10_000) if in_holdout(f"user-{i}", exp, 0.05) and f"user-{i}" != user)
    held.check(cand("o1", T0, ALL, user=other, experiment=exp))
    treated.check(cand("o2", T0 + 1, ALL, user=other))
    v = held.check(cand("o3", T0 + 2, ALL, user=other, experiment=exp, trigger="churn_risk", pending={"cart_abandoned": T0}))
    assert _rs(v) == ("suppressed", "priority")


def test_a_deferred_message_counts_against_the_global_cap_at_its_send_time(capped):
    for i, at in enumerate(("2026-01-05T07:00:00Z", "2026-01-05T07:30:00Z")):
        capped.check(cand(f"m{i}", ts(at), ("email",), tz="UTC"))
    # decided 23:00, when m0 and m1 fill the 24 h window; sent 08:00 the next day, when they do not
    v = capped.check(cand("night", ts("2026-01-05T23:00:00Z"), ("push",), tz="UTC"))
    assert (v.status, format_ts(v.send_at)) == ("deferred", "2026-01-06T08:00:00.000Z")
    # 07:00: (Jan 5 08:00, Jan 6 08:00] would hold it and the deferred one; 07:10 a third
    assert capped.check(cand("early", ts("2026-01-06T07:00:00Z"), ("email",), tz="UTC")).status == "sent"
    assert capped.check(cand("more", ts("2026-01-06T07:10:00Z"), ("in_app",), tz="UTC")).reason == "global_cap"


def test_global_verdicts_are_idempotent(capped):
    pend = {"cart_abandoned": T0 + HOUR_MS}
    first = capped.check(cand("a", T0, ("push",)))
    assert capped.check(cand("a", T0, ("push",))).duplicate  # counted once
    pri = capped.check(cand("p", T0 + 1, ("email",), trigger="churn_risk", pending=pend))
    assert _rs(pri) == ("suppressed", "priority")
    again = capped.check(cand("p", T0 + 1, ("email",), trigger="churn_risk"))  # nothing pending now
    assert again.duplicate and _rs(again) == ("suppressed", "priority")
    assert capped.check(cand("b", T0 + 2, ("email",))).status == "sent" and first.status == "sent"
    gc = capped.check(cand("c", T0 + 3, ALL))
    assert _rs(gc) == ("suppressed", "global_cap")
    assert capped.check(cand("c", T0 + 3, ALL)).duplicate


def test_global_caps_are_configurable(store):
    one_a_day = FatigueLedger(store, FatigueSettings.defaults(holdout_share=0.0, global_caps=((86400, 1),)))
    assert one_a_day.limits.global_caps == ((DAY_MS, 1),)
    assert [_rs(one_a_day.check(cand(f"a{i}", T0 + i * 12 * HOUR_MS, ALL))) for i in range(4)] == [
        ("sent", None), ("suppressed", "global_cap"), ("sent", None), ("suppressed", "global_cap"),
    ]  # fmt: skip


def test_same_global_verdicts_as_the_reference_store(store, make_candidates):
    """Differential with the global caps tight and random pending journeys in play."""
    import random

    rng = random.Random(3)
    triggers = ["cart_abandoned", "payment_stalled", "kyc_stalled", "churn_risk", "coupon_interest"]
    base = [
        dataclasses.replace(
            c, pending={p: c.decided_at + rng.randrange(-HOUR_MS, 5 * DAY_MS) for p in rng.sample(triggers, rng.choice([0, 0, 1, 2]))}
        )
        for c in make_candidates(500, seed=8, users=4)
    ]
    cands = []
    for i, c in enumerate(base):
        cands.append(c)
        if i % 9 == 0 and i >= 6:
            cands.append(dataclasses.replace(base[i - 6], pending={}))  # a redelivery, within retention
    fs = FatigueSettings.defaults(holdout_share=0.1, global_caps=((6 * 3600, 1), (86400, 3), (3 * 86400, 5)))
    ref = FatigueLedger(MemoryLedgerStore(), fs)
    sut = FatigueLedger(store, fs)
    got = [sut.check(c, c.action_id.encode()) for c in cands]
    assert got == [ref.check(c, c.action_id.encode()) for c in cands]
    assert {v.reason for v in got} >= {"global_cap", "priority", "fatigue_cap", "holdout", None}


def test_send_time_holds_a_patient_trigger_until_the_users_active_hour(ledger):
    # 10:00 UTC; the user was active at 18:00 and 19:00 UTC on several days ("s", "t")
    hours = "stst" + "st"
    v = ledger.check(cand("w1", T0, ("email",), trigger="churn_risk", tz="UTC", active_hours=hours))
    assert (v.status, v.reason, v.channel, v.send_at) == ("deferred", "send_time", "email", T0 + 8 * HOUR_MS)
    # the moment of a cart is now: never held for send time
    v = ledger.check(cand("w2", T0, ("email",), trigger="cart_abandoned", tz="UTC", active_hours=hours))
    assert (v.status, v.send_at) == ("sent", None)
    # already inside an active hour, or no hour seen twice yet: at once
    v = ledger.check(cand("w3", T0, ("email",), trigger="coupon_interest", tz="UTC", active_hours="kkk"))
    assert (v.status, v.send_at) == ("sent", None)
    v = ledger.check(cand("w4", T0, ("email",), user="u2", trigger="first_transaction_nudge", tz="UTC", active_hours="st"))
    assert (v.status, v.send_at) == ("sent", None)


def test_send_time_skips_the_quiet_hours_and_keeps_their_reason_when_it_moves_nothing(ledger):
    late = T0 + 13 * HOUR_MS  # 23:00 UTC, inside the quiet hours (22:00-08:00) for push
    # active at 20:00 ("u"): the push waits past 08:00 for the user's evening, 21 h later
    v = ledger.check(cand("q1", late, ("push",), trigger="churn_risk", tz="UTC", active_hours="uuu"))
    assert (v.status, v.reason, v.send_at) == ("deferred", "send_time", late + 21 * HOUR_MS)
    # active at 23:00 only ("x"): always quiet, so quiet hours alone decide (08:00)
    v = ledger.check(cand("q2", late, ("push",), user="u2", trigger="churn_risk", tz="UTC", active_hours="xxx"))
    assert (v.status, v.reason, v.send_at) == ("deferred", "quiet_hours", late + 9 * HOUR_MS)
    # email has no quiet hours: the same 23:00 decision goes at once for a night owl
    v = ledger.check(cand("q3", late, ("email",), user="u3", trigger="churn_risk", tz="UTC", active_hours="xxx"))
    assert (v.status, v.send_at) == ("sent", None)
