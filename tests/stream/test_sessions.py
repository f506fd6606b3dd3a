"""The sessionizer with a hand-driven clock: cuts, reordering, lateness, dedup, intent runs."""

from __future__ import annotations

import dataclasses
import random

import pytest

from intentstream.stream import codec
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.engine.timeline import ACCEPTED, DUPLICATE, UserTimeline
from intentstream.stream.engine.user_state import UserState
from intentstream.stream.sessions.sessionizer import SessionConfig, horizon, session_id
from intentstream.stream.state.memory import MemorySessionStore

T0 = 1767607200000
MIN = 60_000


def e(eid, minute, typ="page_view", user="u1", **extra):
    return codec.dumps({"event_id": eid, "user_id": user, "ts": T0 + round(minute * MIN), "type": typ, **extra})


def run(lines, batch=1000, engine=None, final=True):
    eng = engine or PartitionEngine(MemorySessionStore(), 0)
    segs, counters = [], {}
    for start in range(0, len(lines), batch):
        r = eng.process([(start + i, raw) for i, raw in enumerate(lines[start : start + batch])])
        segs += r.segments
        for k, v in r.counters.items():
            counters[k] = counters.get(k, 0) + v
    if final:
        segs += eng.flush().segments
    return segs, counters


def key(segs):
    return sorted((s.user_id, s.start_ms, s.seq, codec.dumps(s.to_dict())) for s in segs)


def test_inactivity_gap_cuts_sessions():
    segs, _ = run([e("a", 0), e("b", 10), e("c", 40.01), e("d", 41)])
    assert [(s.first_event_id, s.last_event_id, s.closed_by) for s in segs] == [
        ("a", "b", "inactivity"),
        ("c", "d", "end_of_input"),
    ]
    assert segs[0].session_id == session_id("u1", T0, "a") != segs[1].session_id


def test_a_gap_of_exactly_the_limit_stays_in_the_session():
    segs, _ = run([e("a", 0), e("b", 30), e("c", 60.0001)])
    assert [s.interactions for s in segs] == [2, 1]


def test_max_length_cuts_a_long_session():
    segs, _ = run([e(f"x{i}", i * 10) for i in range(30)])  # one event every 10 minutes for 5 hours
    assert [(s.interactions, s.closed_by) for s in segs] == [(24, "max_length"), (6, "end_of_input")]
    assert segs[0].end_ms - segs[0].start_ms == 230 * MIN


def test_ids_are_deterministic():
    lines = [e("a", 0, "coupon_view"), e("b", 1, "coupon_claim"), e("c", 2, "page_view")]
    assert key(run(lines)[0]) == key(run(lines)[0])


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("batch", [1, 13, 1000])
def test_reordering_within_the_lateness_gives_the_sorted_result(seed, batch):
    rng = random.Random(seed)
    events = []
    for u in range(5):
        t = rng.randrange(0, 60)
        for i in range(60):
            t += rng.choice([0.2, 1, 3, 8, 25, 45])
            events.append((t, f"u{u}-{i}", rng.choice(["page_view", "coupon_view", "add_to_cart", "kyc_start", "app_open"]), f"u{u}"))
    ordered = [e(eid, t, typ, user) for t, eid, typ, user in sorted(events)]
    # delay every event by up to half the allowed lateness (5 min): never late
    shuffled = [e(eid, t, typ, user) for t, eid, typ, user in sorted(events, key=lambda x: x[0] + rng.uniform(0, 2.5))]
    assert shuffled != ordered
    want, c1 = run(ordered, batch)
    got, c2 = run(shuffled, batch)
    assert c1["late"] == c2["late"] == 0
    assert key(got) == key(want)


def test_late_event_in_the_open_session_is_counted_there():
    # b at 1 min arrives after the user reached 20 min: older than 20 - 5 = 15 min -> late
    segs, c = run([e("a", 0), e("c", 10), e("d", 20), e("b", 1, "coupon_view"), e("f", 21)])
    assert c["late"] == 1
    (seg,) = segs
    assert seg.interactions == 5 and seg.late == 1
    assert seg.type_counts["coupon_view"] == 1 and seg.intent == "browsing"  # no vote...
    assert (seg.start_ms, seg.first_event_id) == (T0, "a")  # ...and no time range change


def test_late_event_of_a_closed_session_becomes_a_late_flush_segment():
    lines = [e("a", 0, user="idle"), e("b", 2, user="idle"),
             e("x", 40, user="busy"), e("x2", 40, user="busy2"),  # the watermark (35 min) closes idle's session
             e("late1", 1, "kyc_start", user="idle"), e("late2", 3, "kyc_submit", user="idle"),
             e("y", 50, user="busy"), e("y2", 50, user="busy2")]  # fmt: skip
    segs, c = run(lines, batch=1, final=False)
    assert c["late"] == 2
    idle = [s for s in segs if s.user_id == "idle"]
    assert [(s.interactions, s.closed_by) for s in idle] == [(2, "inactivity"), (2, "late_flush")]
    late = idle[1]
    assert (late.late, late.intent, late.first_event_id, late.last_event_id) == (2, "kyc", "late1", "late2")
    assert late.kyc_status == "in_progress"
    assert late.session_id == session_id("idle", T0 + MIN, "late1") and late.seq == 0


def test_late_events_update_the_profile_without_rolling_statuses_back():
    segs, c = run([e("k1", 0, "kyc_start"), e("k2", 10, "kyc_approved"), e("k0", 1, "kyc_submit"), e("n", 300)])
    assert c["late"] == 1
    assert [s.kyc_status for s in segs] == ["completed", "completed"]


def test_duplicates_never_count_twice():
    lines = [e("a", 0), e("a", 0), e("b", 1), e("c", 2), e("b", 1),  # buffered and released duplicates
             e("d", 20), e("a", 0),  # duplicate arriving late
             e("z", 3, "coupon_view"), e("z", 3, "coupon_view"),  # a late event and its duplicate
             e("f", 300), e("c", 2)]  # after the session closed  # fmt: skip
    segs, c = run(lines)
    assert c["duplicates"] == 5 and c["late"] == 1
    assert sum(s.interactions for s in segs) == 6


def view(tl, st, ts, eid, watermark=0, dev=None, ch=None, tz=None):
    """A page_view through the timeline's accept."""
    return tl.accept(st, ts, eid, "page_view", dev, ch, None, tz, None, None, watermark)


def test_dedup_memory_is_bounded_by_size_and_event_time():
    cfg = dataclasses.replace(SessionConfig.from_settings(), dedup_max=8)
    st, tl = UserState("u"), UserTimeline(cfg)
    for i in range(20):
        assert view(tl, st, T0 + i * MIN, f"e{i}") == ACCEPTED
    assert len(st.log) == 64
    assert view(tl, st, T0 + 19 * MIN, "e19") == DUPLICATE
    # two days later the old ids are pruned when the state is stored
    view(tl, st, T0 + 2 * 1440 * MIN, "new")
    back = UserState.load("u", st.dump(cfg))
    assert len(back.log) == 8 and back.log == st.log


def test_intent_change_needs_k_consecutive_votes():
    browse = [e(f"b{i}", i * 0.5) for i in range(5)]
    coupons = [e(f"c{i}", 3 + i * 0.5, "coupon_view") for i in range(3)]
    segs, _ = run(browse + [e("m", 3.2, "message_open")] + coupons)
    assert [(s.intent, s.interactions, s.closed_by) for s in segs] == [
        ("browsing", 5, "intent_change"),
        ("coupon", 4, "end_of_input"),  # the generic interaction inside the run goes with it
    ]
    assert segs[1].first_event_id == "c0" and segs[1].seq == 1 and segs[0].session_id == segs[1].session_id


def test_one_stray_event_does_not_cut():
    lines = [e(f"b{i}", i) for i in range(5)] + [e("c", 5, "coupon_view")] + [e(f"d{i}", 6 + i) for i in range(3)]
    (seg,) = run(lines)[0]
    assert (seg.intent, seg.interactions) == ("browsing", 9)


def test_a_run_broken_by_a_third_intent_stays():
    lines = [e(f"b{i}", i) for i in range(5)] + [e("c1", 5, "coupon_view"), e("c2", 6, "coupon_view"), e("k", 7, "kyc_start")]
    (seg,) = run(lines)[0]
    assert seg.interactions == 8 and seg.intent == "browsing"


def test_a_stray_head_is_absorbed():
    lines = [e("p", 0)] + [e(f"c{i}", 1 + i, "coupon_claim") for i in range(6)]
    (seg,) = run(lines)[0]
    assert (seg.intent, seg.interactions) == ("coupon", 7)


def test_statuses_are_as_of_each_segments_end():
    day = 1440
    lines = [e("k1", 0, "kyc_start"),  # yesterday's session: KYC started, never approved
             e("p1", day), e("p2", day + 1), e("p3", day + 2),
             e("a1", day + 3, "add_to_cart"), e("a2", day + 4, "checkout_start"), e("a3", day + 5, "payment_success", amount=50)]  # fmt: skip
    segs, _ = run(lines)
    assert [(s.intent, s.kyc_status, s.transaction_status, s.behaviour_stage) for s in segs] == [
        ("kyc", "in_progress", "not_started", "verifying"),
        ("browsing", "in_progress", "not_started", "verifying"),
        ("purchase", "in_progress", "completed", "transacted"),
    ]
    assert segs[2].amount == 50.0 and segs[1].closed_by == "intent_change"


def test_lifecycle_is_taken_at_the_session_start():
    day = 1440
    segs, _ = run([e("a", 0), e("b", 100 * day), e("c", 100 * day + 60)])
    assert [s.lifecycle_stage for s in segs] == ["introduction", "decline", "growth"]


def test_pure_functions_with_a_hand_driven_clock():
    cfg, st = SessionConfig.from_settings(), UserState("u")
    tl = UserTimeline(cfg)
    out = tl.segments
    for i, minute in enumerate([0, 1, 2]):
        view(tl, st, T0 + minute * MIN, f"e{i}", dev="ios", ch="app", tz="UTC")
    assert tl.next_due(st) == T0 + 1  # the first buffered event
    tl.advance(st, horizon(st, T0 + 10 * MIN, cfg))  # watermark at 10 min: all released
    assert not st.buf and out == [] and tl.next_due(st) == T0 + 32 * MIN + 1
    tl.advance(st, T0 + 32 * MIN)
    assert out == []
    tl.advance(st, T0 + 32 * MIN + 1)
    assert [s.interactions for s in out] == [3] and tl.next_due(st) is None
    tl.flush(st)
    assert len(out) == 1


def test_state_round_trips_through_storage_at_every_step():
    rng = random.Random(3)
    lines, t = [], 0.0
    for i in range(400):
        t += rng.choice([0.1, 1, 4, 20, 50])
        lag = rng.choice([0, 0, 0, 2, 9])
        lines.append((t + lag, e(f"e{i}", t, rng.choice(["page_view", "coupon_view", "add_to_cart", "checkout_start",
                                                          "payment_success", "kyc_start", "message_open", "x"]),
                                 user=f"u{i % 3}", device="ios", amount=3.0)))  # fmt: skip
        if rng.random() < 0.05:
            lines.append((t + lag + 1, lines[-1][1]))
    lines = [raw for _, raw in sorted(lines, key=lambda x: x[0])]
    cached, _ = run(lines, batch=1)
    uncached, _ = run(lines, batch=1, engine=PartitionEngine(MemorySessionStore(), 0, cache_users=0))
    assert key(cached) == key(uncached)


def test_an_active_users_state_stays_under_2kb():
    cfg, st = SessionConfig.from_settings(), UserState("u000123")
    tl = UserTimeline(cfg)
    types = ["page_view", "click", "search", "coupon_view", "add_to_cart", "page_view"]
    for i in range(120):  # an event every 20 s for 40 minutes, every field set
        wm = T0 + i * 20_000 - 300_000
        tl.accept(st, T0 + i * 20_000, f"e000123-{i:05d}", types[i % 6], "android", "mini_program", None,
                  "America/Sao_Paulo", None, None, wm)  # fmt: skip
        tl.advance(st, horizon(st, wm, cfg))
    assert len(st.buf) == 16 and st.sess is not None  # the last 5 minutes are buffered
    assert len(st.dump(cfg)) <= 2048
