"""intentstream.stream.ops: metrics records, alert rules (firing, cooldown, resolve), readiness and the
Prometheus text exposition — pure, no Kafka or Redis."""

from __future__ import annotations

import re

import pytest

from intentstream.stream import codec
from intentstream.stream.ops.alerts import AlertRules
from intentstream.stream.ops.metrics import MetricsBuilder, build_record
from intentstream.stream.ops.prometheus import render_prometheus
from intentstream.stream.ops.snapshot import PartitionState, PersonaState, WorkerSnapshot, readiness
from intentstream.stream.settings import OpsSettings

WM = 1_767_607_200_000  # 2026-01-05T10:00:00Z


def snap(ts_s: float, counters: dict | None = None, partitions: dict | None = None, **kw) -> WorkerSnapshot:
    parts = partitions or {}
    kw.setdefault("assigned", frozenset(parts))
    kw.setdefault("recovered", frozenset(parts))
    return WorkerSnapshot(int(ts_s * 1000), counters or {}, parts, **kw)


class Feed:
    """Records built and evaluated one interval (10 s) after another."""

    def __init__(self, **cfg) -> None:
        self.cfg = OpsSettings.defaults(**{"alert_cooldown_s": 60.0, **cfg})
        self.builder = MetricsBuilder("w1")
        self.rules = AlertRules(self.cfg, "w1")
        self.t = 0.0
        self.records: list[dict] = []

    def step(self, counters: dict | None = None, partitions: dict | None = None, **kw) -> list[dict]:
        self.t += 10
        s = snap(self.t, counters, partitions, **kw)
        record = self.builder.build(s)
        self.records.append(record)
        return self.rules.evaluate(record, s)


def codes(alerts: list[dict]) -> list[tuple[str, str | None, str]]:
    return [(a["alert"], a["subject"], a["status"]) for a in alerts]


# --------------------------------------------------------------------------- records


def test_record_has_cumulative_counters_deltas_rates_and_breakdowns():
    b = MetricsBuilder("host:1")
    first = b.build(snap(100, {"events": 50, "invalid": 2, "decision:cart_abandoned:push:sent": 3, "invalid:bad_ts": 2}))
    assert first["interval_s"] is None and first["rates"] == {}
    assert first["deltas"] == {"events": 50, "invalid": 2}  # first record: since the start
    second = b.build(
        snap(
            110,
            {"events": 170, "invalid": 5, "decision:cart_abandoned:push:sent": 4, "decision:cart_abandoned:sms:capped": 1,
             "invalid:bad_ts": 3, "invalid:not_json": 2},
            {0: PartitionState(watermark_ms=WM, offset=99, highwater=130, lag=30, timers=7, recovered=True),
             1: PartitionState(recovered=False)},
            assigned=frozenset({0, 1}),
            recovered=frozenset({0}),
            persona=PersonaState(leader=True, owner="host:1", counters={"learned": 12, "store_retries": 1}),
        )
    )  # fmt: skip
    assert second["ts"] == "1970-01-01T00:01:50.000Z" and second["worker"] == "host:1"
    assert second["interval_s"] == 10.0
    assert second["counters"] == {"events": 170, "invalid": 5, "personas.learned": 12, "personas.store_retries": 1}
    assert second["deltas"]["events"] == 120 and second["deltas"]["invalid"] == 3
    assert second["rates"]["events"] == 12.0
    assert second["decisions"] == [
        {"trigger": "cart_abandoned", "channel": "push", "status": "sent", "total": 4, "delta": 1},
        {"trigger": "cart_abandoned", "channel": "sms", "status": "capped", "total": 1, "delta": 1},
    ]
    assert second["invalid_reasons"] == [
        {"reason": "bad_ts", "total": 3, "delta": 1},
        {"reason": "not_json", "total": 2, "delta": 2},
    ]
    assert second["partitions"] == {
        "0": {"watermark": "2026-01-05T10:00:00.000Z", "offset": 99, "highwater": 130, "lag": 30, "timers": 7, "recovered": True},
        "1": {"recovered": False},  # unknown fields are left out
    }
    assert second["lag"] == 30 and second["assigned"] == [0, 1]
    assert second["ready"] is False  # partition 1 has not recovered its outbox
    assert second["persona"] == {"role": "leader", "leader": True, "owner": "host:1", "learned": 12}
    # plain JSON through the product's codec
    assert codec.loads(codec.dumps(second)) == second


def test_a_counter_that_went_down_counts_from_zero():
    b = MetricsBuilder("w")
    b.build(snap(0, {"events": 500}))
    r = b.build(snap(10, {"events": 20}))  # the pipeline was rebuilt
    assert r["deltas"] == {"events": 20} and r["rates"] == {"events": 2.0}


def test_readiness():
    assert readiness({2, 0}, {0, 1, 2}) == (True, {"status": "ready", "assigned": [0, 2]})
    ok, body = readiness({0, 1, 2}, {1})
    assert not ok and body["status"] == "not_ready" and body["missing"] == [0, 2]
    assert readiness({0}, None)[1]["reasons"] == ["pipeline not started"]
    assert readiness(set(), set())[1]["reasons"] == ["no partitions assigned"]
    assert readiness(None, {0})[1]["reasons"] == ["consumer not started"]


# --------------------------------------------------------------------------- alerts


def test_dlq_rate_fires_above_the_threshold_only_with_enough_volume():
    f = Feed(dlq_rate_alert=0.05, dlq_min_volume=100)
    assert f.step({"events": 40, "invalid": 20}) == []  # 33 % but only 60 messages
    (a,) = f.step({"events": 130, "invalid": 40})  # +90 / +20: 110 messages, 18 %
    assert (a["alert"], a["status"], a["severity"]) == ("dlq_rate", "firing", "warning")
    assert a["value"] == pytest.approx(20 / 110) and a["threshold"] == 0.05
    assert set(a) == {"ts", "worker", "alert", "subject", "status", "severity", "message", "value", "threshold"}
    assert a["worker"] == "w1" and a["ts"] == "1970-01-01T00:00:20.000Z"
    assert codes(f.step({"events": 330, "invalid": 41})) == [("dlq_rate", None, "resolved")]  # 0.5 %
    assert f.step({"events": 530, "invalid": 42}) == []  # resolved once


def test_dlq_rate_at_exactly_the_threshold_does_not_fire():
    f = Feed(dlq_rate_alert=0.05, dlq_min_volume=100)
    assert f.step({"events": 95, "invalid": 5}) == []


def test_lag_growing_needs_n_consecutive_growths_on_a_partition():
    f = Feed(lag_growth_intervals=3)
    lags = [10, 20, 30, 40]  # grows 3 intervals in a row at the 4th record
    out = [f.step(partitions={0: PartitionState(lag=lag), 1: PartitionState(lag=5)}) for lag in lags]
    assert out[:3] == [[], [], []]
    (a,) = out[3]
    assert (a["alert"], a["status"], a["value"], a["threshold"]) == ("lag_growing", "firing", 3, 3)
    assert "partition(s) 0 (lag 40)" in a["message"]
    assert codes(f.step(partitions={0: PartitionState(lag=40)})) == [("lag_growing", None, "resolved")]  # flat


def test_lag_growth_interrupted_or_unknown_starts_over():
    f = Feed(lag_growth_intervals=3)
    for lag in (10, 20, 15, 30, 40):  # the dip resets the streak
        assert f.step(partitions={0: PartitionState(lag=lag)}) == []
    assert f.step(partitions={0: PartitionState(lag=None)}) == []
    for lag in (50, 60, 70):
        assert f.step(partitions={0: PartitionState(lag=lag)}) == []
    assert codes(f.step(partitions={0: PartitionState(lag=80)})) == [("lag_growing", None, "firing")]


def test_watermark_stalled_while_records_wait():
    f = Feed(watermark_stall_intervals=2)
    assert f.step(partitions={0: PartitionState(watermark_ms=WM, lag=0)}) == []
    assert f.step(partitions={0: PartitionState(watermark_ms=WM, lag=0)}) == []  # no lag: idle, fine
    assert f.step(partitions={0: PartitionState(watermark_ms=WM, lag=50)}) == []  # stalled 1 interval
    (a,) = f.step(partitions={0: PartitionState(watermark_ms=WM, lag=80)})  # 2 intervals
    assert (a["alert"], a["severity"], a["value"], a["threshold"]) == ("watermark_stalled", "critical", 2, 2)
    assert "partition(s) 0 (lag 80" in a["message"]
    assert codes(f.step(partitions={0: PartitionState(watermark_ms=WM + 1000, lag=80)})) == [
        ("watermark_stalled", None, "resolved")
    ]


def test_a_revoked_partition_clears_its_alert():
    f = Feed(watermark_stall_intervals=1)
    f.step(partitions={3: PartitionState(watermark_ms=WM, lag=5)})
    assert codes(f.step(partitions={3: PartitionState(watermark_ms=WM, lag=5)})) == [("watermark_stalled", None, "firing")]
    assert codes(f.step(partitions={})) == [("watermark_stalled", None, "resolved")]


def test_store_retries_alert_counts_pipeline_and_persona_writer():
    f = Feed()
    assert f.step({"store_retries": 0}) == []
    (a,) = f.step({"store_retries": 0}, persona=PersonaState(False, counters={"store_retries": 2}))
    assert (a["alert"], a["severity"], a["value"], a["threshold"]) == ("store_unavailable", "critical", 2, 0)
    assert "personas 2" in a["message"]
    assert codes(f.step({"store_retries": 0}, persona=PersonaState(False, counters={"store_retries": 2}))) == [
        ("store_unavailable", None, "resolved")
    ]


def test_decision_volume_jump_against_the_trailing_mean_per_trigger():
    f = Feed(volume_jump_factor=5.0, volume_window_intervals=3, volume_min_count=20)
    total = {"cart_abandoned": 0, "churn_risk": 0}

    def step(cart: int, churn: int) -> list[dict]:
        total["cart_abandoned"] += cart
        total["churn_risk"] += churn
        return f.step({f"decision:{t}:push:sent": n for t, n in total.items()})

    for _ in range(3):  # the window fills: no verdict before it is full
        assert step(6, 1) == []
    assert step(30, 1) == []  # 30 = 5 x 6: not above
    (a,) = step(200, 4)  # 200 > 5 x mean(6, 6, 30); churn 4 is under the minimum count
    assert (a["alert"], a["subject"], a["status"]) == ("decision_volume_jump", "cart_abandoned", "firing")
    assert a["value"] == 200 and a["threshold"] == pytest.approx(5 * 14)
    assert codes(step(7, 1)) == [("decision_volume_jump", "cart_abandoned", "resolved")]
    # a trigger that had none in the window and jumps past the minimum count
    for _ in range(3):
        step(7, 0)
    assert codes(step(7, 25)) == [("decision_volume_jump", "churn_risk", "firing")]


def test_cooldown_limits_repeats_per_alert_and_a_resolve_follows_once():
    f = Feed(alert_cooldown_s=30.0)
    retries = 0

    def outage(down: bool) -> list[dict]:
        nonlocal retries
        retries += 3 if down else 0
        return f.step({"store_retries": retries})

    assert codes(outage(True)) == [("store_unavailable", None, "firing")]  # t=10
    assert outage(True) == [] and outage(True) == []  # t=20, 30: within the cooldown
    assert codes(outage(True)) == [("store_unavailable", None, "firing")]  # t=40: 30 s later
    assert f.rules.active[0].code == "store_unavailable"
    assert codes(outage(False)) == [("store_unavailable", None, "resolved")]  # t=50
    assert f.rules.active == []
    # flapping back within the cooldown (t=60): held back, and so no resolve for it either
    assert outage(True) == []
    assert [c.code for c in f.rules.active] == ["store_unavailable"]
    assert outage(False) == []  # t=70
    assert outage(False) == [] and f.rules.active == []  # t=80
    assert codes(outage(True)) == [("store_unavailable", None, "firing")]  # t=90: 50 s after the last


def test_the_cooldown_is_per_alert():
    f = Feed(alert_cooldown_s=600.0, dlq_min_volume=1)
    assert codes(f.step({"store_retries": 1, "events": 10})) == [("store_unavailable", None, "firing")]
    assert codes(f.step({"store_retries": 2, "events": 10, "invalid": 10})) == [("dlq_rate", None, "firing")]


# --------------------------------------------------------------------------- Prometheus

# one sample line of the text format 0.0.4: name, optional labels, value, optional timestamp
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    rf"(?:\{{(?P<labels>{_LABEL}(?:,{_LABEL})*)?\}})?"
    r" (?P<value>[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+|Inf)|NaN)"
    r"(?: -?[0-9]+)?$"
)
META = re.compile(r"^# (?:HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (?:counter|gauge|histogram|summary|untyped))$")


def parse_exposition(text: str) -> tuple[dict[str, str], dict[tuple[str, str], float]]:
    """Check every line against the format; (type by family, value by (name, labels))."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[tuple[str, str], float] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("#"):
            assert META.match(line), line
            kind, name = line.split()[1:3]
            if kind == "TYPE":
                assert name not in types, f"family {name} declared twice"
                types[name] = line.split()[3]
                current = name
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        assert m["name"] == current, f"{m['name']} outside its family block"
        key = (m["name"], m["labels"] or "")
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(m["value"])
    return types, samples


def test_prometheus_exposition_parses_and_has_the_product_series():
    s = snap(
        0,
        {"events": 1200, "invalid": 7, "late": 3, "decisions": 5, "store_retries": 0, "published": 40,
         "decision:cart_abandoned:push:sent": 4, "decision:cart_abandoned:sms:holdout": 1,
         "invalid:bad_ts": 4, "invalid:not_json": 3},
        {0: PartitionState(watermark_ms=WM + 250, offset=10, highwater=15, lag=4, timers=9, recovered=True),
         5: PartitionState(recovered=False)},
        assigned=frozenset({0, 5}),
        recovered=frozenset({0}),
        persona=PersonaState(True, "h:1", {"learned": 12, "malformed": 3, "malformed.not_json": 2, "malformed.empty": 1}),
    )  # fmt: skip
    rules = AlertRules(OpsSettings.defaults(), "w1")
    rules.evaluate(build_record("w1", snap(0, {"store_retries": 2})), snap(0, {"store_retries": 2}))
    text = render_prometheus(s, worker='w"1', alerts=rules.active, extra_counters={"reports": 3, "send_failures": 1})
    types, samples = parse_exposition(text)
    assert samples[("intentstream_events_total", "")] == 1200
    assert types["intentstream_events_total"] == "counter"
    # breakdowns replace the plain totals (no double counting when summed)
    assert ("intentstream_invalid_total", "") not in samples
    assert samples[("intentstream_invalid_total", 'reason="bad_ts"')] == 4
    assert ("intentstream_decisions_total", "") not in samples
    assert samples[("intentstream_decisions_total", 'trigger="cart_abandoned",channel="push",status="sent"')] == 4
    assert samples[("intentstream_partition_watermark_seconds", 'partition="0"')] == pytest.approx((WM + 250) / 1000)
    assert types["intentstream_partition_watermark_seconds"] == "gauge"
    assert samples[("intentstream_partition_lag", 'partition="0"')] == 4
    assert ("intentstream_partition_lag", 'partition="5"') not in samples  # unknown: absent
    assert samples[("intentstream_partition_recovered", 'partition="5"')] == 0
    assert samples[("intentstream_partition_timers", 'partition="0"')] == 9
    assert samples[("intentstream_lag", "")] == 4 and samples[("intentstream_partitions_assigned", "")] == 2
    assert samples[("intentstream_ready", "")] == 0
    assert samples[("intentstream_persona_leader", "")] == 1
    assert samples[("intentstream_persona_learned_total", "")] == 12
    assert samples[("intentstream_persona_malformed_total", 'reason="not_json"')] == 2
    assert ("intentstream_persona_malformed_total", "") not in samples
    assert samples[("intentstream_ops_send_failures_total", "")] == 1
    assert samples[("intentstream_alert_firing", 'alert="store_unavailable",subject=""')] == 1
    assert samples[("intentstream_worker_info", 'worker="w\\"1"')] == 1  # escaped label value
    assert all(name.endswith("_total") for name, kind in types.items() if kind == "counter")


def test_prometheus_without_breakdowns_keeps_plain_totals_and_odd_names_are_sanitised():
    text = render_prometheus(snap(0, {"invalid": 2, "decisions": 0, "weird-name.x": 1}), alerts=[])
    _, samples = parse_exposition(text)
    assert samples[("intentstream_invalid_total", "")] == 2
    assert samples[("intentstream_decisions_total", "")] == 0
    assert samples[("intentstream_weird_name_x_total", "")] == 1
    assert ("intentstream_persona_leader", "") not in samples  # no persona writer given


def test_outcomes_in_the_metrics_record_and_prometheus():
    """Rolling conversion and uplift per trigger from the engine's outcome counters: only
    measured records count, the window keeps the latest N, and below the minimum per arm
    there is no uplift (not enough data)."""
    from intentstream.stream.ops.outcomes import OutcomeMeter

    meter = OutcomeMeter(window=50, min_per_arm=10, confidence=0.95)
    step = {"outcome:cart_abandoned:treatment:1:1:1": 30, "outcome:cart_abandoned:treatment:0:1:1": 10,
            "outcome:cart_abandoned:holdout:0:1:0": 8, "outcome:cart_abandoned:holdout:1:1:0": 2,
            "outcome:cart_abandoned:treatment:1:0:1": 99, "outcome:churn_risk:holdout:0:1:0": 3, "events": 5}  # fmt: skip
    meter.observe(step)
    cart, churn = meter.summary()
    assert (cart["records"], cart["treatment"], cart["holdout"], cart["cvr"], cart["holdout_cvr"]) == (50, 40, 10, 0.75, 0.2)
    assert cart["enough"] and cart["uplift"]["low"] < 0.55 < cart["uplift"]["high"] and cart["uplift"]["low"] > 0
    assert not churn["enough"] and churn["uplift"] is None and churn["cvr"] is None
    meter.observe({"outcome:cart_abandoned:holdout:0:1:0": 20})  # the window slides: the oldest leave
    cart = meter.summary()[0]
    assert (cart["records"], cart["treatment"], cart["holdout"]) == (50, 30, 20)
    snap = WorkerSnapshot(10_000, {**step, "decisions": 3}, outcomes=tuple(meter.summary()))
    record = build_record("w1", snap)
    assert "outcome:cart_abandoned:treatment:1:1:1" not in record["counters"]
    assert [o["trigger"] for o in record["outcomes"]] == ["cart_abandoned", "churn_risk"]
    text = render_prometheus(snap)
    assert 'intentstream_outcomes_total{trigger="cart_abandoned",arm="treatment",converted="true"} 129' in text
    assert 'intentstream_outcome_conversion_rate{trigger="cart_abandoned",arm="holdout"}' in text
    assert 'intentstream_outcome_uplift{trigger="cart_abandoned",bound="low"}' in text
    assert 'intentstream_outcome_uplift{trigger="churn_risk"' not in text
