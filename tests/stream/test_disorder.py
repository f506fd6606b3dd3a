"""Event-time disorder (stream/engine/disorder.py): hand-made sequences, and the meter
counting exactly what the engine counts as late."""

from __future__ import annotations

import pytest

from intentstream.stream.contract.events import parse_event
from intentstream.stream.engine.disorder import DisorderError, DisorderMeter
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.settings import SessionSettings, Settings, default_settings
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

MIN = 60_000


def meter(partitions=1, lateness_s=300, share=0.2, min_events=1, stop=False, quorum=1) -> DisorderMeter:
    """quorum 1: a partition's progress is its newest event (the simplest rule to reason about)."""
    return DisorderMeter(partitions, lateness_s * 1000, quorum, 30 * 86_400_000, share, min_events, stop)


def feed(m: DisorderMeter, minutes, partition=0, user="u") -> DisorderMeter:
    for minute in minutes:
        m.observe(partition, minute * MIN, user)
    return m


def test_late_means_more_than_the_lateness_behind_the_newest_before():
    m = feed(meter(), [10, 5, 4, 4.999, 20, 15, 14])
    # 5 is exactly 300 s behind 10: not late (the engine's rule is strict); 4 is; 4.999 is
    # 5.001 min behind; 15 is 5 min behind 20; 14 is late
    assert (m.events, m.late) == (7, 3)
    assert m.share == pytest.approx(3 / 7)


def test_time_order_and_small_reorders_are_not_late():
    assert feed(meter(), range(100)).late == 0
    assert feed(meter(), [0, 3, 1, 2, 6, 4, 5, 9, 7, 8]).late == 0  # all within 5 minutes
    assert feed(meter(), [0, 0, 0]).late == 0  # ties


def test_each_partition_has_its_own_newest_event():
    m = meter(partitions=2)
    m.observe(0, 100 * MIN, "a")
    m.observe(1, 10 * MIN, "b")  # far behind partition 0, but partition 1 has seen nothing newer
    m.observe(1, 4 * MIN, "c")  # 6 min behind partition 1's newest: late
    m.observe(0, 96 * MIN, "d")
    assert (m.events, m.late) == (4, 1)
    glob = feed(meter(partitions=1), [100, 10, 4, 96])  # one partition: global order
    assert glob.late == 2


def test_with_a_quorum_one_clock_far_ahead_makes_no_one_else_late():
    m = meter(quorum=2)
    m.observe(0, 0, "a")
    m.observe(0, 1000 * MIN, "skewed")  # one device's clock far ahead
    for minute in range(1, 20):
        m.observe(0, minute * MIN, "a")
        m.observe(0, minute * MIN, "b")
    assert m.late == 0
    m.observe(0, 990 * MIN, "skewed")  # but its own older events are late (its user's newest)
    m.observe(0, 3 * MIN, "b")  # and so is what is 5+ min behind the two users in step
    assert m.late == 2
    assert feed(meter(quorum=1), [0, 1000, 1, 2]).late == 2  # quorum 1: the newest event rules


def test_events_too_far_in_the_future_are_left_out_as_the_engine_dead_letters_them():
    m = DisorderMeter(1, 300_000, 2, 86_400_000, 0.2, 1)
    m.observe(0, 0, "a")
    m.observe(0, MIN, "b")
    m.observe(0, 3 * 86_400_000, "c")  # 3 days ahead of both: ts_in_future
    m.observe(0, 2 * MIN, "a")
    assert (m.events, m.future, m.late) == (3, 1, 0)


def test_observe_user_places_users_like_kafka():
    m = meter(partitions=6)
    m.observe_user("21", 100 * MIN)  # murmur2("21") % 6 == 0 (Java's value)
    m.observe(0, 10 * MIN, "another")
    assert m.late == 1


def test_a_dump_grouped_by_user_stops_after_the_sample():
    m = meter(share=0.2, min_events=15, stop=True)
    users = [[u * 100 + i for i in range(10)] for u in range(3)]  # 3 users, 10 events each, user by user
    dump = [t for times in reversed(users) for t in times]  # newest user first
    with pytest.raises(DisorderError) as exc:
        for i, t in enumerate(dump):
            m.observe(0, t * MIN, f"u{i // 10}")
    assert (exc.value.events, exc.value.late) == (15, 5)  # the check waits for min_events
    text = str(exc.value)
    assert "33.3% of the first 15 events are more than 300 s behind the newest events read before them" in text
    assert "ordered by user, not by time" in text
    assert "--sort" in text and "allowed_lateness_s" in text and "--allow-disorder" in text


def test_below_the_sample_nothing_stops_and_the_first_crossing_is_kept():
    m = meter(share=0.2, min_events=5)
    feed(m, [100, 1, 2, 3])  # 3 of 4 late, but the sample is 5
    assert m.tripped is None and not m.sampled
    feed(m, [101])  # 5th event, not late: 3/5 > 0.2
    assert m.tripped == (5, 3)
    feed(m, [200] + list(range(20)))
    assert m.tripped == (5, 3)


def test_a_file_that_turns_unordered_later_stops_later():
    m = meter(share=0.2, min_events=10, stop=True)
    feed(m, range(100))  # ordered
    with pytest.raises(DisorderError) as exc:
        feed(m, range(50))  # the same minutes again: all late
    assert exc.value.events == 126 and exc.value.late == 26  # first share > 20 %


def test_exactly_at_the_limit_does_not_stop():
    m = feed(meter(share=0.5, min_events=2, stop=True), [10, 1])  # 1 of 2 = 50 %: not past
    assert m.tripped is None
    with pytest.raises(DisorderError):
        feed(m, [2])


def test_no_limit_never_trips():
    m = feed(meter(share=None, min_events=1, stop=True), [100, 1, 2, 3])
    assert m.late == 3 and m.tripped is None


def test_from_settings_reads_the_knobs():
    s = default_settings()
    m = DisorderMeter.from_settings(s, 6)
    assert (m.max_late_share, m.min_events, m.lateness_ms, m.stop) == (0.2, 1000, 300_000, True)
    assert m.max_future_ms == s.events.max_future_s * 1000 and m._lead[0].quorum == s.events.watermark_quorum
    assert (s.events.max_late_share, s.events.late_share_min_events) == (0.2, 1000)
    wider = Settings.defaults(sessions=SessionSettings.defaults(allowed_lateness_s=3600))
    assert DisorderMeter.from_settings(wider, 1).lateness_ms == 3_600_000


def test_summary_for_validate():
    m = feed(meter(partitions=6, min_events=3), [10, 11, 12, 13])
    assert m.summary().startswith("event-time disorder: 0.0% of 4 events are more than 300 s behind the newest events")
    assert "under the limit (0.2)" in m.summary()
    feed(m, [1, 2])
    assert "past the limit (0.2) at event 5 (20.0% late)" not in m.summary()  # 1/5 is not past
    feed(m, [3])
    assert "past the limit (0.2) at event 6 (33.3% late)" in m.summary() and "--sort" in m.summary()


@pytest.mark.parametrize("order", ["delivery", "user"])
def test_the_meter_counts_what_the_engine_counts_as_late(order):
    """Per partition, the engine's rule (progress of the quorum-th user, the user's own
    newest event): without duplicates (the engine drops them before judging lateness) the
    meter's late count is the engine's."""
    lines = [line.rstrip(b"\n") for line in generate_lines(GeneratorConfig(users=80, days=2, seed=5, late_share=0.05, duplicate_share=0.0))]
    if order == "user":
        lines.sort(key=lambda raw: parse_event(raw).user_id)
    runner = OfflineRunner(partitions=4)
    runner.disorder = DisorderMeter.from_settings(runner.settings, 4, stop=False)
    outputs = list(runner.run(enumerate(lines, 1)))
    assert runner.disorder.events == runner.counters["events"] == len(lines)
    assert runner.disorder.late == runner.counters["late"]
    assert (runner.disorder.tripped is None) == (order == "delivery")
    plain = OfflineRunner(partitions=4)
    assert list(plain.run(enumerate(lines, 1))) == outputs  # measuring changes nothing
