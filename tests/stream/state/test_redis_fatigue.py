"""What only the Redis LedgerStore has: its key layout and TTLs, script (re)loading, reply
decoding, the client built from settings, and atomicity under real concurrency (two
processes on the same users). The contract is test_fatigue_contract.py."""

from __future__ import annotations

import json
import multiprocessing
import random
from collections import defaultdict
from pathlib import Path

import pytest

from intentstream.stream.decisions.fatigue import Candidate, FatigueLedger, verdict_fields
from intentstream.stream.settings import FatigueSettings
from intentstream.stream.state.fatigue import DAY_MS, HOUR_MS, Limits
from intentstream.stream.state.redis.keys import channel_key, cooldown_key, messages_key, record_key

pytestmark = pytest.mark.integration

redis = pytest.importorskip("redis")
from intentstream.stream.state.redis.fatigue import LEDGER_SHA, RedisLedgerStore  # noqa: E402

T0 = 1767607200000  # 2026-01-05T10:00Z


@pytest.fixture
def client(redis_client):
    """A client on a Redis database of this test's own (``redis_db`` in tests/conftest.py)."""
    return redis_client


@pytest.fixture
def prefix():
    return "t"


def test_key_layout_and_ttls(client, prefix):
    ledger = FatigueLedger(RedisLedgerStore(client, prefix), FatigueSettings.defaults(holdout_share=0.0))
    v = ledger.check(Candidate("act1", "alice", "cart_abandoned", T0, ("push", "email"), coupon=True), b'{"d":1}')
    assert v.status == "sent" and v.coupon == "granted"
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*"))
    assert keys == sorted(
        [
            channel_key(prefix, "alice", "push"),
            channel_key(prefix, "alice", "coupon"),
            messages_key(prefix, "alice"),
            cooldown_key(prefix, "alice", "cart_abandoned"),
            record_key(prefix, "alice", "act1"),
        ]
    )
    assert all("{u:alice}" in k for k in keys)  # one hash slot per user
    assert client.zrange(channel_key(prefix, "alice", "push"), 0, -1, withscores=True) == [(b"act1", float(T0))]
    assert client.get(cooldown_key(prefix, "alice", "cart_abandoned")) == str(T0).encode()
    rec = client.hgetall(record_key(prefix, "alice", "act1"))
    assert rec[b"st"] == b"sent" and rec[b"ch"] == b"push" and rec[b"pl"] == b'{"d":1}'
    lim = Limits.from_settings()
    for k in keys:
        ttl = client.pttl(k)
        expected = lim.cooldown_ms + lim.retention_ms if ":cd:" in k else lim.ttl_ms
        assert expected - 60_000 < ttl <= expected, k


def test_old_deliveries_are_pruned_by_event_time(client, prefix):
    fs = FatigueSettings.defaults(channel_cap=100, holdout_share=0.0, global_caps=((86400, 100), (604800, 100)))
    ledger = FatigueLedger(RedisLedgerStore(client, prefix), fs)
    for day in range(20):
        ledger.check(Candidate(f"a{day}", "bob", "churn_risk", T0 + day * DAY_MS, ("email",)))
    horizon = T0 + 19 * DAY_MS - Limits.from_settings().window_ms - Limits.from_settings().retention_ms
    for key in (channel_key(prefix, "bob", "email"), messages_key(prefix, "bob")):  # the global set too
        kept = client.zrange(key, 0, -1, withscores=True)
        assert kept and all(score > horizon for _, score in kept)
        assert len(kept) == 8, key


class _BogusShaOnce:
    """Proxy whose first EVALSHA names an unknown script, so Redis really answers NOSCRIPT
    (as after a restart or SCRIPT FLUSH) without flushing the shared server's cache."""

    def __init__(self, real):
        self.real, self.lost, self.loads = real, True, 0

    def _sha(self, sha):
        return "0" * 40 if self.lost else sha

    def evalsha(self, sha, *args):
        return self.real.evalsha(self._sha(sha), *args)

    def script_load(self, script):
        self.loads += 1
        self.lost = False
        return self.real.script_load(script)

    def pipeline(self, transaction=True):
        pipe, outer = self.real.pipeline(transaction=transaction), self

        class Pipe:
            def execute_command(self, name, sha, *args):  # how the store queues EVALSHA
                return pipe.execute_command(name, outer._sha(sha), *args)

            def execute(self, raise_on_error=True):
                return pipe.execute(raise_on_error=raise_on_error)

        return Pipe()


def test_noscript_reloads_and_retries_in_order(client, prefix):
    proxy = _BogusShaOnce(client)
    store = RedisLedgerStore(proxy, prefix)
    ledger = FatigueLedger(store, FatigueSettings.defaults(holdout_share=0.0, global_caps=()))
    v = ledger.check(Candidate("a1", "carol", "t1", T0, ("push",)))
    assert (v.status, v.duplicate, proxy.loads) == ("sent", False, 1)
    proxy.lost = True  # the server restarted: its script cache is empty
    got = ledger.check_many([Candidate(f"b{i}", "carol", f"t{i + 2}", T0 + i, ("push", "email")) for i in range(4)])
    assert [(x.channel, x.duplicate) for x in got] == [("push", False), ("push", False), ("email", False), ("email", False)]
    assert proxy.loads == 2
    assert client.script_exists(LEDGER_SHA) == [True]


def test_first_pipeline_loads_the_script(client, prefix):
    proxy = _BogusShaOnce(client)
    got = FatigueLedger(RedisLedgerStore(proxy, prefix), FatigueSettings.defaults(holdout_share=0.0)).check_many(
        [Candidate(f"c{i}", "carl", f"t{i}", T0 + i, ("push",)) for i in range(2)]
    )
    assert [x.status for x in got] == ["sent", "sent"] and proxy.loads == 1


def test_decoded_responses_client_works_too(redis_db, prefix):
    c = redis.Redis.from_url(redis_db.url, decode_responses=True)
    try:
        ledger = FatigueLedger(RedisLedgerStore(c, prefix), FatigueSettings.defaults(holdout_share=0.0))
        v = ledger.check(Candidate("x", "dave", "t", T0, ("sms",), tz="UTC"), '{"é":1}'.encode())
        again = ledger.check(Candidate("x", "dave", "t", T0, ("sms",), tz="UTC"))
        assert again.duplicate and again.payload == '{"é":1}'.encode() and again.channel == v.channel == "sms"
    finally:
        c.close()


def test_from_settings(redis_db, prefix):
    from intentstream.stream.settings import load_settings

    s = load_settings(env={"INTENTSTREAM_REDIS__URL": redis_db.url, "INTENTSTREAM_REDIS__KEY_PREFIX": prefix})
    store = RedisLedgerStore.from_settings(s)
    try:
        assert store.prefix == prefix
        v = FatigueLedger.from_settings(s, store).check(Candidate("a", "erin", "t", T0, ("in_app",)))
        assert v.channel == "in_app"
    finally:
        store.client.close()


# --------------------------------------------------------------------------- concurrency

USERS = [f"cu{i}" for i in range(12)]
# The workers see the candidates in random order, up to 10 days late; history is kept long
# enough for that (by default the ledger keeps window + 1 day: enough for in-order streams).
FATIGUE = FatigueSettings.defaults(retention_slack_s=30 * 86400, holdout_share=0.05)
LIMITS = Limits.from_settings(FATIGUE)
CHANNELS = ("push", "sms", "email", "in_app")


def _workload(seed: int = 42, n: int = 900) -> list[dict]:
    """Overlapping candidates on few users, many at the same instants, some coupons."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        chans = list(CHANNELS)
        rng.shuffle(chans)
        out.append(
            dict(
                action_id=f"act{i}",
                user_id=rng.choice(USERS),
                trigger=rng.choice(["cart_abandoned", "churn_risk", "kyc_stalled", "payment_stalled", "coupon_interest"]),
                decided_at=T0 + rng.randrange(0, 10 * DAY_MS, HOUR_MS),
                channels=tuple(chans[: rng.randrange(1, 4)]),
                tz=rng.choice(["UTC", "America/New_York", "Asia/Shanghai"]),
                coupon=rng.random() < 0.5,
            )
        )
    return out


def _worker(redis_url: str, prefix: str, seed: int, pipelined: bool, barrier, out_path: str) -> None:
    client = redis.Redis.from_url(redis_url)
    ledger = FatigueLedger(RedisLedgerStore(client, prefix, pipeline_size=8), FATIGUE)
    cands = [Candidate(**c) for c in _workload()]
    rng = random.Random(seed)
    rng.shuffle(cands)
    cands += rng.sample(cands, len(cands) // 3)  # redeliveries within this worker too
    barrier.wait()
    verdicts = []
    if pipelined:
        for i in range(0, len(cands), 8):
            verdicts += ledger.check_many(cands[i : i + 8])
    else:
        verdicts = [ledger.check(c) for c in cands]
    with open(out_path, "w") as fh:
        for c, v in zip(cands, verdicts):
            fh.write(json.dumps({"c": c.action_id, "u": c.user_id, "t": c.trigger, "at": c.decided_at, **verdict_fields(v)}) + "\n")
    client.close()


@pytest.mark.slow
def test_two_processes_never_exceed_caps_or_decide_an_action_twice(redis_db, prefix, tmp_path: Path):
    redis_url = redis_db.url
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    outs = [tmp_path / "w0.jsonl", tmp_path / "w1.jsonl"]
    procs = [
        ctx.Process(target=_worker, args=(redis_url, prefix, 1, False, barrier, str(outs[0]))),
        ctx.Process(target=_worker, args=(redis_url, prefix, 2, True, barrier, str(outs[1]))),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    rows = [json.loads(line) for path in outs for line in path.read_text().splitlines()]

    by_action: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_action[r["c"]].append(r)
    assert len(by_action) == len(_workload())
    for aid, rs in by_action.items():
        originals = [r for r in rs if not r["duplicate"]]
        assert len(originals) == 1, (aid, rs)  # recorded exactly once across both processes
        fields = {json.dumps({k: v for k, v in r.items() if k != "duplicate"}, sort_keys=True) for r in rs}
        assert len(fields) == 1, (aid, rs)  # every answer for it is the original decision

    decisions = [next(r for r in rs if not r["duplicate"]) for rs in by_action.values()]
    statuses = {d["status"] for d in decisions}
    assert {"sent", "suppressed", "holdout"} <= statuses
    assert any(d["reason"] == "fatigue_cap" for d in decisions)  # the caps were really contended
    deliveries: dict[tuple[str, str], list[int]] = defaultdict(list)
    for d in decisions:
        if d["status"] in ("sent", "deferred"):
            when = d["send_at"] or d["at"]
            deliveries[(d["u"], d["channel"])].append(when)
            if d["coupon"] == "granted":
                deliveries[(d["u"], "coupon")].append(when)
    window = LIMITS.window_ms
    for (user, channel), times in deliveries.items():
        cap = 1 if channel == "coupon" else 3
        for t in times:
            assert sum(1 for x in times if t - window < x <= t) <= cap, (user, channel, sorted(times))
        # and the ledger's own sorted set holds exactly these deliveries
        stored = redis_db.client.zrange(channel_key(prefix, user, channel), 0, -1, withscores=True)
        assert sorted(int(s) for _, s in stored) == sorted(times)
    # the global caps, across channels, and the ledger's set of all messages
    messages: dict[str, list[int]] = defaultdict(list)
    for (user, channel), times in deliveries.items():
        if channel != "coupon":
            messages[user] += times
    for user, times in messages.items():
        for window, cap in LIMITS.global_caps:
            assert all(sum(1 for x in times if t - window < x <= t) <= cap for t in times), (user, sorted(times))
        stored = redis_db.client.zrange(messages_key(prefix, user), 0, -1, withscores=True)
        assert sorted(int(s) for _, s in stored) == sorted(times)
    assert any(d["reason"] == "global_cap" for d in decisions)
    # cooldown: two messages (or holdout records) of one trigger are >= 24 h apart
    started: dict[tuple[str, str], list[int]] = defaultdict(list)
    for d in decisions:
        if d["status"] in ("sent", "deferred", "holdout"):
            started[(d["u"], d["t"])].append(d["at"])
    for key, times in started.items():
        times.sort()
        assert all(b - a >= DAY_MS for a, b in zip(times, times[1:])), (key, times)
