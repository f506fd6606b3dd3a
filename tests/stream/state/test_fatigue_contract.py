"""The LedgerStore contract, run over every backend (``backend`` in conftest.py: memory,
and Redis, i.e. the Lua script, as an integration test): the same candidates give the same
verdicts on each."""

from __future__ import annotations

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
    treated = FatigueLedger(store, FatigueSettings.defaults(holdout_share=0.0))
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
