"""The user profile: status machines, order robustness, opt-outs, lifecycle, active days."""

from __future__ import annotations

import itertools

import pytest

from intentstream.stream.sessions.profiles import DAY_MS, LifecycleRules, UserProfile, apply, day_bounds, local_day, updated

T0 = 1767607200000  # Monday 2026-01-05 10:00 UTC


def ev(minute, typ, tz=None, amount=None, channel=None):
    return (T0 + minute * 60_000, f"e{minute}", typ, None, None, amount, tz, channel)


def run(events):
    p = UserProfile()
    for e in events:
        apply(p, e)
    return p


@pytest.mark.parametrize(
    "types, kyc",
    [
        ([], "not_started"),
        (["kyc_start"], "in_progress"),
        (["kyc_start", "kyc_submit"], "in_progress"),
        (["kyc_start", "kyc_submit", "kyc_approved"], "completed"),
        (["kyc_start", "kyc_submit", "kyc_rejected"], "rejected"),
        (["kyc_start", "kyc_rejected", "kyc_start"], "in_progress"),  # retry after rejection
        (["kyc_approved", "kyc_start"], "completed"),  # an approved user stays approved
    ],
)
def test_kyc_status(types, kyc):
    assert run([ev(i, t) for i, t in enumerate(types)]).kyc == kyc


@pytest.mark.parametrize(
    "types, tx",
    [
        ([], "not_started"),
        (["add_to_cart"], "not_started"),  # a cart is no payment attempt
        (["add_to_cart", "checkout_start"], "in_progress"),
        (["checkout_start", "payment_submit", "payment_fail"], "failed"),
        (["checkout_start", "payment_fail", "payment_submit"], "in_progress"),
        (["checkout_start", "payment_success"], "completed"),
        (["payment_success", "checkout_start"], "in_progress"),  # the latest attempt counts
    ],
)
def test_transaction_status(types, tx):
    assert run([ev(i, t) for i, t in enumerate(types)]).tx == tx


def test_statuses_do_not_depend_on_arrival_order():
    events = [ev(0, "kyc_start"), ev(1, "checkout_start"), ev(2, "kyc_submit"), ev(3, "payment_fail"),
              ev(4, "kyc_approved"), ev(5, "payment_submit"), ev(6, "payment_success", amount=12.5),
              ev(7, "unsubscribe", channel="sms")]  # fmt: skip
    want = run(events).dump()
    for perm in itertools.islice(itertools.permutations(events), 0, 5000, 7):
        assert run(perm).dump() == want


def test_rfm_inputs_and_opt_outs():
    p = run([ev(0, "payment_success", amount=10.25), ev(5, "payment_success", amount=5.0),
             ev(9, "unsubscribe", channel="sms"), ev(10, "payment_fail")])  # fmt: skip
    assert (p.tx_count, p.tx_amount, p.last_purchase_ms) == (2, 15.25, T0 + 5 * 60_000)
    assert p.opt_outs == {"sms"}
    apply(p, ev(11, "unsubscribe"))  # no channel: all of them
    assert p.opt_outs == {"push", "sms", "email", "in_app"}


def test_tz_follows_the_newest_event_with_one():
    p = run([ev(0, "page_view", tz="Europe/Berlin"), ev(5, "page_view"), ev(-3, "page_view", tz="Asia/Tokyo")])
    assert p.tz == "Europe/Berlin" and p.tz_or("UTC") == "Europe/Berlin"  # Tokyo's event is older
    apply(p, ev(4, "page_view", tz="Asia/Tokyo"))
    assert p.tz == "Asia/Tokyo"
    assert UserProfile().tz_or("America/New_York") == "America/New_York"


@pytest.mark.parametrize(
    "first_seen_days_ago, silent_days, stage",
    [(0, 0, "introduction"), (89, 1, "introduction"), (90, 1, "growth"), (364, 0, "growth"),
     (365, 2, "maturity"), (5 * 365, 0, "maturity"), (200, 91, "decline"), (100, 90, "growth")],
)  # fmt: skip
def test_lifecycle_stage(first_seen_days_ago, silent_days, stage):
    now = T0 + 400 * 365 * DAY_MS // 100
    p = run([(now - first_seen_days_ago * DAY_MS, "a", "page_view", None, None, None, None, None),
             (now - silent_days * DAY_MS, "b", "page_view", None, None, None, None, None)])  # fmt: skip
    assert p.lifecycle_stage(now, LifecycleRules.from_settings()) == stage
    assert p.lifecycle_stage(now, LifecycleRules(90, 365, silent_days + 1)) != "decline"


def test_active_days_bitmap_and_count():
    p = run([ev(d * 1440, "page_view") for d in (0, 1, 1, 3, 10)] + [ev(2 * 1440, "page_view")])
    last = local_day(None, T0 + 10 * DAY_MS)
    assert p.day_last == last and p.days_total == 5
    assert p.active_days(7, last) == 1  # days 4..10: only day 10
    assert p.active_days(11, last) == 5
    assert p.active_days(7, last + 8) == 0
    far = run([ev(0, "page_view"), ev(40 * 1440, "page_view")])
    assert far.active_days(32, far.day_last) == 1 and far.days_total == 2


def test_local_days_follow_the_users_zone_across_dst():
    # Berlin switches to summer time on 2026-03-29: that day has 23 hours
    lo, hi = day_bounds("Europe/Berlin", local_day("Europe/Berlin", 1774785600000))
    assert hi - lo == 23 * 3_600_000
    assert local_day("Asia/Shanghai", T0 + 14 * 3_600_000) == local_day(None, T0) + 1
    p = run([(T0 + 5 * 3_600_000, "a", "page_view", None, None, None, "Asia/Shanghai", None),
             (T0 + 6 * 3_600_000, "b", "page_view", None, None, None, "Asia/Shanghai", None)])  # fmt: skip
    assert p.days_total == 2  # 23:00 and 00:00 local


def test_dump_load_round_trip_and_updated_is_pure():
    p = run([ev(0, "kyc_start", tz="Asia/Shanghai"), ev(1, "payment_success", amount=3.5), ev(2, "unsubscribe", channel="push")])
    assert UserProfile.load(p.dump()) == p
    q = updated(p, ev(3, "kyc_approved"))
    assert (p.kyc, q.kyc) == ("in_progress", "completed")


def test_active_hours_are_the_latest_clock_hours_in_local_time_and_bounded():
    from intentstream.stream.sessions.profiles import ACTIVE_HOURS_KEPT, UserProfile, apply_fields, likely_hours

    p = UserProfile()
    p.tz = "America/New_York"  # UTC-5 in January
    t0 = 1767607200000  # 2026-01-05T10:00Z = 05:00 local
    for i in range(3):  # three events in one clock hour: recorded once
        apply_fields(p, t0 + i * 60_000, "page_view", 0, None, None)
    apply_fields(p, t0 + 3_600_000, "page_view", 0, None, None)
    apply_fields(p, t0 - 3_600_000, "page_view", 0, None, None)  # older than the newest hour: ignored
    assert p.hours == "fg" and likely_hours(p.hours, 1) == {5, 6} and likely_hours(p.hours) == frozenset()
    for day in range(1, 30):
        apply_fields(p, t0 + day * 86_400_000, "page_view", 0, None, None)
    assert len(p.hours) == ACTIVE_HOURS_KEPT and likely_hours(p.hours) == {5}
    back = UserProfile.load(p.dump())
    assert back.hours == p.hours and back.hour_next == p.hour_next
    old = UserProfile.load(UserProfile().dump()[:15])  # a record from before active hours
    assert old.hours == "" and old.hour_next == 0
