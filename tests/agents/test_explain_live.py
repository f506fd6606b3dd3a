"""``intentstream explain USER --live`` against a running worker: the decisions it reads
back from Kafka (and the state from Redis) are those ``explain USER --input`` computes
from the same clickstream offline. The deployment helpers are test_worker's."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from intentstream.stream import codec
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

_spec = importlib.util.spec_from_file_location("_worker_e2e_helpers", Path(__file__).with_name("test_worker.py"))
_tw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tw)
deployment = _tw.deployment  # fixture

pytestmark = pytest.mark.integration

SMALL = GeneratorConfig(users=25, days=4, seed=33)


def explain(d, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "intentstream.stream.cli", "explain", *args], env=d.env, cwd=_tw.ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_live_explain_equals_the_offline_one(deployment, tmp_path):
    d = deployment
    lines = list(generate_lines(SMALL))
    path = tmp_path / "click.jsonl"
    path.write_bytes(b"".join(lines))
    expected: dict[str, list[bytes]] = {}
    for topic, value in OfflineRunner().run(enumerate(lines)):
        expected.setdefault(topic, []).append(value)
    audit = [codec.loads(v) for v in expected["actions.audit"]]
    # the user with the most decisions (ties: the smallest id)
    per_user = Counter(r["user_id"] for r in audit if "status" in r)
    user = min(per_user, key=lambda u: (-per_user[u], u))

    d.start_worker()
    d.cli("replay", str(path), "--to-kafka")
    assert len(d.wait_for(d.topics["audit"], len(audit), timeout=45)) == len(audit), d.logs()
    d.wait_for(d.topics["outcomes"], len(expected.get("actions.outcomes", [])), timeout=15)

    live = explain(d, user, "--live", "--json")
    assert live.returncode == 0, live.stderr
    offline = explain(d, user, "--input", str(path), "--json")
    assert offline.returncode == 0, offline.stderr
    got, want = codec.loads(live.stdout), codec.loads(offline.stdout)
    assert [x["decision"] for x in got["decisions"]] == [x["decision"] for x in want["decisions"]]
    assert len(got["decisions"]) == per_user[user]
    assert [(x["decision"]["status"], x["decision"]["reason"]) for x in got["decisions"]] == [
        (x["decision"]["status"], x["decision"]["reason"]) for x in want["decisions"]
    ]
    assert [x["follow_ups"] for x in got["decisions"]] == [x["follow_ups"] for x in want["decisions"]]
    assert [x["agrees"] for x in got["decisions"]] == [x["agrees"] for x in want["decisions"]]
    assert got["events"] == want["events"] and got["segments"] == want["segments"]
    now = got["now"]
    assert now["found"] and now["at"] is not None and "now" not in want
    assert {c["scope"] for c in now["caps"]} >= {"push", "sms", "email", "in_app", "coupon", "all channels"}

    text = explain(d, user, "--live")
    assert text.returncode == 0 and "NOW in Redis: partition" in text.stdout and text.stdout.count("DECISION") == per_user[user]

    unknown = explain(d, "nobody-at-all", "--live")
    assert (unknown.returncode, unknown.stdout) == (1, "") and unknown.stderr.count("\n") == 1

    d.env["INTENTSTREAM_REDIS__URL"] = "redis://127.0.0.1:1/0"
    no_redis = explain(d, user, "--live")
    assert no_redis.returncode == 2 and no_redis.stderr.count("\n") == 1 and "Redis at redis://127.0.0.1:1/0" in no_redis.stderr
