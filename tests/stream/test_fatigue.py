"""The pure half of the fatigue policy (quiet hours, holdout, windows, request building).
Every stateful rule (caps, fallback, cooldown, opt-out, holdout accounting, coupon,
idempotency, determinism) is in tests/stream/state/test_fatigue_contract.py, which runs
against every store; each store's own behaviour is beside it in tests/stream/state/."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import time

import pytest

from intentstream.stream.checks import check_deterministic
from intentstream.stream.contract.events import format_ts, parse_ts
from intentstream.stream.decisions.fatigue import Candidate, FatigueLedger, QuietHours, TriggerPriority, in_holdout
from intentstream.stream.state.fatigue import DAY_MS, HOUR_MS, Limits, global_block, window_fits
from intentstream.stream.state.memory import MemoryLedgerStore
from intentstream.stream.settings import FatigueSettings, default_settings, load_settings


def ts(text: str) -> int:
    value = parse_ts(text)
    assert isinstance(value, int), text
    return value


# --------------------------------------------------------------------------- quiet hours

QUIET_CASES = [
    # zone, decided (local, with its offset), expected send time (UTC) or None = not quiet
    ("UTC", "2026-01-05T21:59:59.999+00:00", None),
    ("UTC", "2026-01-05T22:00:00+00:00", "2026-01-06T08:00:00.000Z"),
    ("UTC", "2026-01-06T07:59:59.999+00:00", "2026-01-06T08:00:00.000Z"),
    ("UTC", "2026-01-06T08:00:00+00:00", None),
    ("UTC", "2026-01-06T00:00:00+00:00", "2026-01-06T08:00:00.000Z"),
    # New York, spring forward 2026-03-08 02:00 EST -> 03:00 EDT: the night is an hour short
    ("America/New_York", "2026-03-07T23:30:00-05:00", "2026-03-08T12:00:00.000Z"),
    ("America/New_York", "2026-03-08T01:59:00-05:00", "2026-03-08T12:00:00.000Z"),
    ("America/New_York", "2026-03-08T03:00:00-04:00", "2026-03-08T12:00:00.000Z"),
    ("America/New_York", "2026-03-08T21:59:00-04:00", None),
    ("America/New_York", "2026-03-08T22:00:00-04:00", "2026-03-09T12:00:00.000Z"),
    # New York, fall back 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice
    ("America/New_York", "2026-10-31T23:00:00-04:00", "2026-11-01T13:00:00.000Z"),
    ("America/New_York", "2026-11-01T01:30:00-04:00", "2026-11-01T13:00:00.000Z"),
    ("America/New_York", "2026-11-01T01:30:00-05:00", "2026-11-01T13:00:00.000Z"),
    ("America/New_York", "2026-11-01T08:00:00-05:00", None),
    ("America/New_York", "2026-11-01T22:00:00-05:00", "2026-11-02T13:00:00.000Z"),
    # Berlin, spring forward 2026-03-29 02:00 CET -> 03:00 CEST; fall back 2026-10-25
    ("Europe/Berlin", "2026-03-28T23:00:00+01:00", "2026-03-29T06:00:00.000Z"),
    ("Europe/Berlin", "2026-03-29T03:30:00+02:00", "2026-03-29T06:00:00.000Z"),
    ("Europe/Berlin", "2026-10-24T22:30:00+02:00", "2026-10-25T07:00:00.000Z"),
    ("Europe/Berlin", "2026-10-25T02:30:00+02:00", "2026-10-25T07:00:00.000Z"),
    ("Europe/Berlin", "2026-10-25T02:30:00+01:00", "2026-10-25T07:00:00.000Z"),
    # no DST, and half-hour offsets
    ("Asia/Shanghai", "2026-01-05T23:00:00+08:00", "2026-01-06T00:00:00.000Z"),
    ("Asia/Kolkata", "2026-01-05T06:00:00+05:30", "2026-01-05T02:30:00.000Z"),
    # Lord Howe: 30-minute DST, spring forward 2026-10-04 02:00 -> 02:30
    ("Australia/Lord_Howe", "2026-10-03T23:00:00+10:30", "2026-10-03T21:00:00.000Z"),
    ("Australia/Lord_Howe", "2026-04-04T23:00:00+11:00", "2026-04-04T21:30:00.000Z"),
]


@pytest.mark.parametrize(("tz", "decided", "expected"), QUIET_CASES)
def test_quiet_hours_defer_to_the_next_local_end(tz, decided, expected):
    q = QuietHours.from_settings()  # 22:00-08:00 for push and sms
    t = ts(decided)
    got = q.next_allowed(t, tz)
    if expected is None:
        assert got == t
    else:
        assert format_ts(got) == expected
        assert got > t
    assert q.send_time("email", t, tz) == t  # not a quiet channel
    assert q.send_time("in_app", t, tz) == t
    assert q.send_time("sms", t, tz) == got


def test_quiet_window_need_not_wrap_midnight_and_can_be_empty():
    q = QuietHours(time(1, 0), time(6, 0), frozenset({"push"}))
    assert q.next_allowed(ts("2026-01-05T00:59:00Z"), "UTC") == ts("2026-01-05T00:59:00Z")
    assert format_ts(q.next_allowed(ts("2026-01-05T01:00:00Z"), "UTC")) == "2026-01-05T06:00:00.000Z"
    assert q.next_allowed(ts("2026-01-05T06:00:00Z"), "UTC") == ts("2026-01-05T06:00:00Z")
    never = QuietHours(time(8, 0), time(8, 0), frozenset({"push"}))
    assert never.next_allowed(ts("2026-01-05T03:00:00Z"), "UTC") == ts("2026-01-05T03:00:00Z")


def test_quiet_end_inside_a_dst_gap_lands_after_the_gap():
    # 02:30 does not exist in New York on 2026-03-08; zoneinfo reads it with the old offset
    q = QuietHours(time(22, 0), time(2, 30), frozenset({"push"}))
    t = ts("2026-03-08T01:00:00-05:00")
    got = q.next_allowed(t, "America/New_York")
    assert format_ts(got) == "2026-03-08T07:30:00.000Z"  # 03:30 EDT, outside the window
    assert q.next_allowed(got, "America/New_York") == got


def test_quiet_hours_and_limits_from_settings():
    s = load_settings(
        env={
            "INTENTSTREAM_FATIGUE__QUIET_START": "21:30",
            "INTENTSTREAM_FATIGUE__QUIET_END": "07:00",
            "INTENTSTREAM_FATIGUE__QUIET_CHANNELS": "sms",
            "INTENTSTREAM_FATIGUE__CHANNEL_CAP": "2",
            "INTENTSTREAM_FATIGUE__WINDOW_S": "86400",
        }
    )
    q = QuietHours.from_settings(s.fatigue)
    assert (q.start, q.end, q.channels) == (time(21, 30), time(7, 0), frozenset({"sms"}))
    lim = Limits.from_settings(s.fatigue)
    assert (lim.channel_cap, lim.window_ms, lim.coupon_cap, lim.cooldown_ms) == (2, DAY_MS, 1, DAY_MS)
    assert Limits.from_settings() == Limits.from_settings(default_settings().fatigue)
    assert QuietHours.from_settings() == QuietHours.from_settings(default_settings().fatigue)
    assert FatigueLedger(MemoryLedgerStore()).limits == Limits.from_settings()


def test_bad_quiet_time_is_refused():
    with pytest.raises(ValueError, match="HH:MM"):
        QuietHours.from_settings(load_settings(env={"INTENTSTREAM_FATIGUE__QUIET_END": "8am"}).fatigue)


# --------------------------------------------------------------------------- holdout


def test_holdout_share_is_about_five_percent_and_experiments_are_independent():
    users = [f"user-{i}" for i in range(20_000)]
    a = {u for u in users if in_holdout(u, "fatigue-holdout-v1", 0.05)}
    b = {u for u in users if in_holdout(u, "other-experiment", 0.05)}
    assert 0.045 < len(a) / len(users) < 0.055
    assert 0.045 < len(b) / len(users) < 0.055
    assert len(a & b) < 0.01 * len(users)  # ~0.25% expected if independent
    # monotone in the share: the 5% group contains the 1% group
    assert {u for u in users if in_holdout(u, "fatigue-holdout-v1", 0.01)} <= a


HOLDOUT_GOLDEN = ["user-6", "user-73", "user-76", "user-91", "user-134"]


def test_holdout_is_stable_across_runs_and_hash_seeds():
    first = [f"user-{i}" for i in range(400) if in_holdout(f"user-{i}", "fatigue-holdout-v1", 0.05)][:5]
    assert first == HOLDOUT_GOLDEN
    code = (
        "from intentstream.stream.decisions.fatigue import in_holdout;"
        "print(','.join(f'user-{i}' for i in range(400) if in_holdout(f'user-{i}', 'fatigue-holdout-v1', 0.05)))"
    )
    outs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outs.add(proc.stdout.strip())
    assert len(outs) == 1
    assert outs.pop().split(",")[:5] == HOLDOUT_GOLDEN


def test_holdout_share_bounds():
    with pytest.raises(ValueError):
        FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=1.5))
    assert not in_holdout("u", "e", 0.0)
    assert in_holdout("u", "e", 1.0)


# --------------------------------------------------------------------------- windows


W = 7 * DAY_MS


@pytest.mark.parametrize(
    ("times", "t", "cap", "fits"),
    [
        ([], 0, 3, True),
        ([], 0, 0, False),
        ([0, 1], 2, 3, True),
        ([0, 1, 2], 3, 3, False),
        ([0, 1, 2], W - 1, 3, False),  # 0 is still inside (W - 1 - W, W - 1]
        ([0, 1, 2], W, 3, True),  # exactly one window later: 0 drops out
        ([0, 1, 2], W + 2, 3, True),
        ([W, W + 1, W + 2], 3, 3, False),  # late: (2, W + 2] would hold 3, W, W+1, W+2
        ([W, W + 1, W + 2], 1, 3, True),  # every window holding 1 ends before W + 1
        ([W, W + 1, W + 2], 0, 3, True),
        ([0, 2 * W], W, 3, True),
        ([5, 10], W, 2, False),
        ([0, 10, 2 * W - 5], W, 2, True),  # (0, W] holds 10 and W; (W - 5, 2W - 5] holds W and 2W-5
    ],
)
def test_window_fits(times, t, cap, fits):
    assert window_fits(times, t, W, cap) is fits


def test_window_fits_matches_a_brute_force_definition():
    rng = random.Random(7)
    for _ in range(2000):
        times = sorted(rng.randrange(0, 3 * W, HOUR_MS) for _ in range(rng.randrange(0, 6)))
        t = rng.randrange(0, 3 * W, HOUR_MS)
        cap = rng.randrange(1, 4)
        after = sorted([*times, t])
        # no window (e - W, e] containing t holds more than cap deliveries, counting t
        ok = all(sum(1 for x in after if e - W < x <= e) <= cap for e in after if e >= t and e - W < t)
        assert window_fits(times, t, W, cap) is ok, (times, t, cap)


# --------------------------------------------------------------------------- request building


def test_request_applies_opt_outs_quiet_hours_and_holdout():
    ledger = FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=0.0), default_tz="Asia/Shanghai")
    t = ts("2026-01-05T15:00:00Z")  # 23:00 in Shanghai
    c = Candidate("a1", "u1", "payment_stalled", t, ("push", "sms", "email"), opt_outs=frozenset({"sms"}))
    req = ledger.request(c, b"{}")
    assert req.options == (("push", ts("2026-01-06T00:00:00Z")), ("email", t))
    assert req.first_choice == "push" and not req.holdout and req.payload == b"{}"
    assert ledger.request(Candidate("a1", "u1", "x", t, ("push",), tz="UTC")).options == (("push", t),)
    everyone = FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=1.0))
    assert everyone.request(c).holdout
    # the candidate's experiment overrides the ledger's
    user = next(f"u{i}" for i in range(1000) if in_holdout(f"u{i}", "exp-b", 0.05) and not in_holdout(f"u{i}", "exp-a", 0.05))
    ledger = FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=0.05, holdout_experiment="exp-a"))
    assert not ledger.request(Candidate("a", user, "x", t, ("push",))).holdout
    assert ledger.request(Candidate("a", user, "x", t, ("push",), experiment="exp-b")).holdout


def test_from_settings_wires_everything():
    s = load_settings(env={"INTENTSTREAM_FATIGUE__HOLDOUT_SHARE": "0.2", "INTENTSTREAM_EVENTS__DEFAULT_TZ": "Europe/Berlin"})
    ledger = FatigueLedger.from_settings(s, MemoryLedgerStore())
    assert ledger.holdout.share_of("churn_risk") == 0.2 and ledger.default_tz == "Europe/Berlin"
    assert ledger.experiment == s.fatigue.holdout_experiment and ledger.limits == Limits.from_settings(s.fatigue)


# --------------------------------------------------------------------------- checks


def test_check_deterministic_catches_an_impure_policy():
    counter = iter(range(10**6))

    def impure():
        return lambda item: {"n": next(counter)}

    with pytest.raises(AssertionError, match="differs"):
        check_deterministic(impure, [1, 2])


# --------------------------------------------------------------------------- global caps and priority


def test_global_caps_and_priority_from_settings():
    lim = Limits.from_settings()
    assert lim.global_caps == ((DAY_MS, 2), (7 * DAY_MS, 5)) and lim.global_window_ms == 7 * DAY_MS
    longer = Limits.from_settings(FatigueSettings.defaults(global_caps=((30 * 86400, 10),)))
    assert longer.ttl_ms == 31 * DAY_MS  # history is kept for the longest window + slack
    for bad in (((86400,),), ((0, 2),), ((86400, -1),)):
        with pytest.raises(ValueError, match="global_caps"):
            Limits.from_settings(FatigueSettings.defaults(global_caps=bad))
    with pytest.raises(ValueError, match="override file"):  # "86400,2" reads as ((86400,), (2,))
        Limits.from_settings(load_settings(env={"INTENTSTREAM_FATIGUE__GLOBAL_CAPS": "86400,2"}).fatigue)
    assert Limits.from_settings(FatigueSettings.defaults(global_caps=())).global_window_ms == 0
    with pytest.raises(ValueError, match="more than once"):
        TriggerPriority(("cart_abandoned", "churn_risk", "cart_abandoned"))


def test_the_default_priority_orders_every_trigger():
    from intentstream.stream.triggers.rules import ALL_TRIGGERS

    order = TriggerPriority.from_settings().order
    assert sorted(order) == sorted(ALL_TRIGGERS)
    assert order[:2] == ("cart_abandoned", "payment_stalled") and order[-1] == "first_transaction_nudge"


def test_global_block_matches_a_brute_force_definition():
    rng = random.Random(11)
    caps = ((DAY_MS, 2), (7 * DAY_MS, 4))
    for _ in range(2000):
        times = sorted(rng.randrange(0, 20 * DAY_MS, 6 * HOUR_MS) for _ in range(rng.randrange(0, 7)))
        t = rng.randrange(0, 20 * DAY_MS, 6 * HOUR_MS)
        due = rng.choice([None, t + rng.randrange(-DAY_MS, 9 * DAY_MS, 6 * HOUR_MS)])
        after = sorted([*times, t])

        def fits(w, cap):  # no window (e - w, e] containing t holds more than cap, counting t
            return all(sum(1 for x in after if e - w < x <= e) <= cap for e in after if e >= t and e - w < t)

        want = None
        if not all(fits(w, cap) for w, cap in caps):
            want = "global_cap"
        elif due is not None and not all(fits(w, cap - 1) for w, cap in caps if due < t + w):
            want = "priority"
        assert global_block(times, t, caps, due) == want, (times, t, due)


def test_request_carries_the_earliest_higher_priority_deadline():
    ledger = FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=0.0))
    t = ts("2026-01-05T12:00:00Z")
    pending = {"cart_abandoned": t + 30 * 60_000, "kyc_stalled": t + HOUR_MS, "coupon_interest": t}
    c = Candidate("a1", "u1", "churn_risk", t, ("email",), pending=pending)
    assert ledger.request(c).reserve_due == t + 30 * 60_000
    assert ledger.request(Candidate("a1", "u1", "cart_abandoned", t, ("email",), pending=pending)).reserve_due is None
    assert ledger.request(Candidate("a1", "u1", "churn_risk", t, ("email",))).reserve_due is None


def test_trigger_hit_takes_the_pending_journeys_from_the_armed_timers():
    from intentstream.stream.decisions.decider import TriggerHit
    from intentstream.stream.triggers.state import Fired, Timer

    timers = {"cart": Timer(100, ("e1",), {}), "kyc": Timer(200, ("e2",), {}), "churn": Timer(50, ("e3",), {}, stale=True)}
    hit = TriggerHit.from_fired("u1", Fired("coupon_interest", 10, ("s1",)), timers=timers)
    assert hit.pending == {"cart_abandoned": 100, "kyc_stalled": 200}  # a stale timer never sends
    assert TriggerHit.from_fired("u1", Fired("coupon_interest", 10, ("s1",))).pending == {}


def test_no_user_ever_exceeds_the_global_caps_on_a_generated_trace():
    """Sent and released messages, by their send time, over a messy generated trace."""
    from collections import Counter, defaultdict

    from intentstream.stream import codec
    from intentstream.stream.engine.offline import OfflineRunner
    from intentstream.stream.synth.clickstream import generate_lines
    from intentstream.stream.synth.config import GeneratorConfig

    lines = generate_lines(GeneratorConfig(users=300, days=10, seed=21, late_share=0.05, duplicate_share=0.03))
    ds = [codec.loads(v) for topic, v in OfflineRunner().run(enumerate(lines)) if topic == "actions.audit"]
    sent: dict[str, list[int]] = defaultdict(list)
    for d in ds:
        if d["status"] == "sent":  # a deferred message counts once: when it is released
            sent[d["user_id"]].append(parse_ts(d["send_at"] or d["decided_at"]))
    caps = Limits.from_settings().global_caps
    for user, times in sent.items():
        for w, cap in caps:
            assert max(sum(1 for x in times if e - w < x <= e) for e in times) <= cap, (user, w, sorted(times))
    reasons = Counter(d["reason"] for d in ds if d["status"] == "suppressed")
    assert reasons["global_cap"] + reasons["priority"] > 0  # the caps were really in play
    assert max(len(t) for t in sent.values()) > 5  # and users got more than 5 in the 10 days
