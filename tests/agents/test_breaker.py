"""The circuit breakers end to end on a real Kafka broker and a real redis-server: a
planted storm trips the storm breaker (nothing more reaches ``actions.*``, the audit goes
on, ``decision_storm`` fires at once), ``intentstream resume`` releases the held actions
exactly once and in order, and live equals offline; a send-rate limit holds, then
releases everything. The deployment helpers are test_worker's."""

from __future__ import annotations

import importlib.util
import time
from collections import defaultdict
from pathlib import Path

import pytest
import redis

from intentstream.stream import codec
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.settings import load_settings
from intentstream.stream.state.redis import keys

_spec = importlib.util.spec_from_file_location("_worker_e2e_helpers", Path(__file__).with_name("test_worker.py"))
_tw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tw)
deployment, trace = _tw.deployment, _tw.trace  # fixtures
values = _tw.values

pytestmark = pytest.mark.integration

STORM = {  # a trigger fires for nearly every closed segment: 357 sends instead of 191
    "INTENTSTREAM_TRIGGERS__NUDGE_MIN_STRENGTH": "0",
    "INTENTSTREAM_TRIGGERS__COUPON_MIN_STRENGTH": "0",
}
CEILING = 20
CHANNELS = ("push", "sms", "email", "in_app", "coupon")


def offline(path: Path, env: dict[str, str]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    lines = path.read_bytes().splitlines(keepends=True)
    for topic, value in OfflineRunner(load_settings(env=env)).run(enumerate(lines)):
        out.setdefault(topic, []).append(value)
    return out


def action_records(d) -> list:
    return [r for ch in CHANNELS for r in d.read(d.topics["actions_prefix"] + ch)]


def alerts(d, code: str) -> list[dict]:
    return [a for a in map(codec.loads, values(d.read(d.topics["alerts"]))) if a["alert"] == code]


def wait_until(what: str, check, d, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{d.logs()}"
        time.sleep(0.5)


def assert_live_equals_offline(d, expected: dict[str, list[bytes]]) -> None:
    """segments, audit and every actions.<channel> hold exactly the offline run's records
    (sorted multisets: none lost, none twice)."""
    want_actions = sorted(v for k, vs in expected.items() if k.startswith("actions.") and k not in ("actions.audit", "actions.outcomes") for v in vs)
    d.wait_for(d.topics["segments"], len(expected["segments"]))
    d.wait_for(d.topics["audit"], len(expected["actions.audit"]))
    wait_until("every action", lambda: len(action_records(d)) >= len(want_actions), d)
    time.sleep(3)  # anything published twice would show up now
    assert sorted(values(d.read(d.topics["segments"]))) == sorted(expected["segments"])
    assert sorted(values(d.read(d.topics["audit"]))) == sorted(expected["actions.audit"])
    assert sorted(values(action_records(d))) == want_actions
    for ch in CHANNELS:
        records = d.read(d.topics["actions_prefix"] + ch)
        assert sorted(values(records)) == sorted(expected.get("actions." + ch, [])), ch
        assert all(r.key == codec.loads(r.value)["user_id"].encode() for r in records)


def assert_in_outbox_order(d) -> None:
    """Each actions.<channel> partition holds its records in the order of the matching
    ``sent`` records on the same audit partition (audit is never held: outbox order)."""
    audit = defaultdict(list)
    for r in d.read(d.topics["audit"]):
        rec = codec.loads(r.value)
        if rec.get("status") == "sent":
            audit[(rec["channel"], r.partition)].append(r.value)
    for ch in CHANNELS:
        by_partition = defaultdict(list)
        for r in d.read(d.topics["actions_prefix"] + ch):
            by_partition[r.partition].append(r.value)
        for p, got in by_partition.items():
            assert got == audit[(ch, p)], (ch, p)


def test_a_planted_storm_is_held_then_released_once_in_order(deployment, trace, redis_url):
    path, _ = trace
    d = deployment
    env = {**STORM, "INTENTSTREAM_BREAKER__STORM_MAX_SENDS": str(CEILING), "INTENTSTREAM_BREAKER__INTERVAL_S": "120"}
    d.env.update(env)
    expected = offline(path, STORM)
    d.start_worker()
    d.cli("replay", str(path), "--to-kafka")
    # decisions go on being made and audited...
    audit = d.wait_for(d.topics["audit"], len(expected["actions.audit"]))
    assert len(audit) == len(expected["actions.audit"]), d.logs()
    # ...the alert fires at once, no history needed...
    wait_until("decision_storm", lambda: any(a["status"] == "firing" for a in alerts(d, "decision_storm")), d, timeout=30)
    storm = alerts(d, "decision_storm")[0]
    assert storm["severity"] == "critical" and "sends_ceiling" in storm["message"]
    # ...and no more than the ceiling reached actions.* before the breaker tripped
    time.sleep(3)
    leaked = len(action_records(d))
    assert leaked <= CEILING
    client = redis.Redis.from_url(redis_url)
    state = client.hgetall(keys.breaker_key(d.env["INTENTSTREAM_REDIS__KEY_PREFIX"]))
    assert state[b"state"] == b"open" and state[b"reason"] == b"sends_ceiling"
    sends = sum(len(v) for k, v in expected.items() if k.startswith("actions.") and k not in ("actions.audit", "actions.outcomes"))
    dry = d.cli("resume", "--dry-run").stdout
    assert "breaker: OPEN" in dry and f"{sends - leaked:,} held action(s)" in dry and "dry run: nothing changed" in dry, dry
    assert len(action_records(d)) == leaked  # a dry run releases nothing
    assert "released" in d.cli("resume").stdout
    assert_live_equals_offline(d, expected)  # every held action exactly once, audit unchanged
    assert_in_outbox_order(d)
    assert b"state" not in client.hgetall(keys.breaker_key(d.env["INTENTSTREAM_REDIS__KEY_PREFIX"]))


def test_a_send_rate_limit_holds_then_releases_everything(deployment, trace):
    path, expected = trace
    d = deployment
    d.env.update({"INTENTSTREAM_BREAKER__MAX_PER_MINUTE_PUSH": "300", "INTENTSTREAM_BREAKER__MAX_PER_MINUTE_IN_APP": "300"})
    d.start_worker()
    d.cli("replay", str(path), "--to-kafka")
    wait_until("send_rate_limited", lambda: any(a["status"] == "firing" for a in alerts(d, "send_rate_limited")), d, timeout=60)
    assert_live_equals_offline(d, expected)
    assert_in_outbox_order(d)
    wait_until("send_rate_limited resolved", lambda: any(a["status"] == "resolved" for a in alerts(d, "send_rate_limited")), d, timeout=30)
