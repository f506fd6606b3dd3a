"""The circuit breakers' pure rules (stream/ops/breaker.py) and their alerts
(stream/ops/alerts.py), on a hand-driven clock."""

from __future__ import annotations

from intentstream.agents.breaker import DISCARDED_REASON, discarded_entry
from intentstream.stream import codec
from intentstream.stream.ops.alerts import AlertRules
from intentstream.stream.ops.breaker import BreakerState, Gate, StormDetector, TokenBucket
from intentstream.stream.ops.metrics import build_record
from intentstream.stream.ops.prometheus import render_prometheus
from intentstream.stream.ops.snapshot import WorkerSnapshot
from intentstream.stream.settings import BreakerSettings, OpsSettings
from intentstream.stream.state import OutboxEntry


def cfg(**kw) -> BreakerSettings:
    return BreakerSettings.defaults(**kw)


def test_token_bucket_refills_at_its_rate_up_to_its_burst():
    b = TokenBucket.of(per_minute=60, burst_s=3.0)  # 1/s, 3 at once
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.9) is False and b.take(1.0) is True
    assert [b.take(100.0) for _ in range(4)] == [True, True, True, False]  # never more than the burst
    assert TokenBucket.of(per_minute=1, burst_s=1.0).capacity == 1.0  # at least one record


def test_storm_ceiling_trips_in_the_first_interval_and_counts_per_interval():
    d = StormDetector(cfg(interval_s=10.0, storm_max_sends=10, storm_max_decisions=0, storm_late_share=0))
    assert d.observe(0.0, sends=10) is None
    assert d.observe(9.9, sends=1).rule == "sends_ceiling"
    d = StormDetector(cfg(interval_s=10.0, storm_max_sends=10, storm_max_decisions=0, storm_late_share=0))
    assert d.observe(0.0, sends=10) is None and d.observe(10.0, sends=10) is None  # a new interval
    d = StormDetector(cfg(storm_max_sends=0, storm_max_decisions=5))
    assert d.observe(0.0, decisions=6).rule == "decisions_ceiling"


def test_storm_jump_needs_the_baseline_and_the_floor():
    c = cfg(interval_s=1.0, storm_max_sends=0, storm_max_decisions=0, storm_jump_factor=3.0, storm_baseline_intervals=3, storm_min_sends=10, storm_late_share=0)
    d = StormDetector(c)
    assert d.observe(0.0, sends=50) is None  # no baseline yet: only the ceilings apply
    for t in (1.0, 2.0, 3.0):
        assert d.observe(t, sends=5) is None
    trip = d.observe(4.0, sends=20)  # mean of (5, 5, 5) x 3 = 15
    assert trip.rule == "sends_jump" and trip.threshold == 15.0
    d.reset(4.5)
    assert d.observe(4.6, sends=9) is None  # under the floor
    quiet = StormDetector(c)
    quiet.observe(0.0, sends=5)
    assert quiet.observe(100.0, sends=12).rule == "sends_jump"  # quiet intervals count as zeros


def test_storm_late_share_after_enough_events():
    d = StormDetector(cfg(storm_max_sends=0, storm_max_decisions=0, storm_late_share=0.5, storm_late_min_events=100))
    assert d.observe(0.0, events=99, late=99) is None
    assert d.observe(1.0, events=1, late=1).rule == "late_share"


def test_gate_holds_everything_while_open_and_releases_in_order():
    gate = Gate(cfg(max_per_minute_push=0), lambda e: e[0] or None)
    gate.open = True
    out, held = gate.split(3, [("push", 1), ("", 2), ("sms", 3)], now=0.0, full=True)
    assert out == [("", 2)] and held == [("push", 1), ("sms", 3)]
    st = gate.state("sends_ceiling", "x", 1000)
    assert st.open and st.held == {"push": 1, "sms": 1} and st.rate_held == {}
    out, held = gate.split(3, [("push", 4)], now=0.0, full=False)
    assert out == [] and gate.state().held == {"push": 2, "sms": 1}
    gate.open = False
    out, held = gate.split(3, [("push", 4)], now=1.0, full=False)  # still behind the held ones
    assert out == [] and held == [("push", 4)]
    out, held = gate.split(3, [("push", 1), ("sms", 3), ("push", 4)], now=1.0, full=True)
    assert out == [("push", 1), ("sms", 3), ("push", 4)] and held == []
    gate.forget([3])
    assert gate.state().held == {}


def test_a_discarded_action_becomes_its_audit_record():
    value = codec.dumps({"action_id": "a1", "status": "sent", "reason": None, "channel": "sms", "user_id": "u"})
    e = discarded_entry(OutboxEntry(7, "a1:sms", "actions.sms", b"u", value), "actions.audit")
    assert (e.seq, e.id, e.topic, e.key) == (7, "a1:audit:discarded", "actions.audit", b"u")
    assert codec.loads(e.value) == {"action_id": "a1", "status": "discarded", "reason": DISCARDED_REASON, "channel": "sms", "user_id": "u"}


def _evaluate(rules: AlertRules, snap: WorkerSnapshot, previous: WorkerSnapshot | None = None) -> dict[str, str]:
    return {a["alert"]: a["status"] for a in rules.evaluate(build_record("w", snap, previous), snap)}


def test_breaker_alerts_fire_in_the_first_interval_and_resolve():
    rules = AlertRules(OpsSettings.defaults(alert_cooldown_s=60), "w")
    storm = BreakerState(open=True, rule="sends_ceiling", detail="21 actions", since_ms=0, held={"push": 5}, rate_held={})
    got = _evaluate(rules, WorkerSnapshot(1000, {}, breaker=storm))
    assert got == {"decision_storm": "firing"}
    limited = BreakerState(held={"sms": 2}, rate_held={"sms": 2})
    assert _evaluate(rules, WorkerSnapshot(2000, {}, breaker=limited)) == {"decision_storm": "resolved", "send_rate_limited": "firing"}
    assert _evaluate(rules, WorkerSnapshot(3000, {}, breaker=BreakerState())) == {"send_rate_limited": "resolved"}
    text = render_prometheus(WorkerSnapshot(0, {}, breaker=limited), alerts=rules.active)
    assert 'intentstream_breaker_held{channel="sms",cause="rate"} 2' in text and "intentstream_breaker_open 0" in text


def test_late_share_spike_and_clock_skew_fire_from_the_first_interval():
    rules = AlertRules(OpsSettings.defaults(late_share_alert=0.2, late_share_min_events=100), "w")
    before = WorkerSnapshot(0, {"events": 0, "late": 0, "invalid:ts_in_future": 0})
    now = WorkerSnapshot(10_000, {"events": 200, "late": 50, "invalid:ts_in_future": 1})
    assert _evaluate(rules, before) == {}
    assert _evaluate(rules, now, before) == {"late_share_spike": "firing", "clock_skew": "firing"}
    later = WorkerSnapshot(20_000, {"events": 400, "late": 50, "invalid:ts_in_future": 1})
    assert _evaluate(rules, later, now) == {"late_share_spike": "resolved", "clock_skew": "resolved"}
