"""One device whose clock runs months ahead changes nobody else's decisions.

The watermark follows the partition's 2nd most advanced user ([events]
watermark_quorum), and an event more than [events] max_future_s ahead of that progress is
dead-lettered (``ts_in_future``) before it touches any state.
"""

from __future__ import annotations

import dataclasses

from intentstream.stream import codec
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.engine.progress import Leaders
from intentstream.stream.settings import PolicySettings, Settings, default_settings
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

LINES = [line.rstrip(b"\n") for line in generate_lines(GeneratorConfig(users=200, days=6, seed=8))]
SIX_MONTHS_MS = 183 * 86_400_000


def skewed(lines: list[bytes], at: int, user: str | None = None) -> tuple[list[bytes], str]:
    """``lines`` with one extra event, ``at`` lines in, six months ahead of the line before it."""
    before = codec.loads(lines[at])
    user = user or before["user_id"]
    from intentstream.stream.contract.events import parse_event

    ts = parse_event(lines[at]).ts_ms + SIX_MONTHS_MS
    extra = codec.dumps({"event_id": "skewed-1", "user_id": user, "ts": ts, "type": "page_view"})
    return lines[: at + 1] + [extra] + lines[at + 1 :], user


#: users' decisions compared one by one: without the strategy policy, whose learning ties
#: every user's decision to the others' outcomes
INDEPENDENT = Settings.defaults(policy=PolicySettings.defaults(enabled=False))


def run(lines: list[bytes], settings: Settings = INDEPENDENT) -> tuple[OfflineRunner, dict[str, list[bytes]]]:
    runner = OfflineRunner(settings)
    out: dict[str, list[bytes]] = {}
    for topic, payload in runner.run(enumerate(lines, 1)):
        out.setdefault(topic, []).append(payload)
    return runner, out


def not_of(user: str, payloads: list[bytes]) -> list[bytes]:
    return sorted(p for p in payloads if codec.loads(p)["user_id"] != user)


def test_one_skewed_event_changes_no_other_users_decisions_and_is_dead_lettered():
    clean_runner, clean = run(LINES)
    lines, user = skewed(LINES, 400)
    runner, out = run(lines)
    assert runner.invalid["ts_in_future"] == 1
    (dlq,) = out["clickstream.dlq"]
    record = codec.loads(dlq)
    assert record["reason"] == "ts_in_future" and "skewed-1" in record["raw"] and "days ahead" in record["detail"]
    # nobody else's segments or decisions moved; the skewed event never reached its user either
    for topic in ("segments", "actions.audit", "actions.push"):
        assert not_of(user, out.get(topic, [])) == not_of(user, clean.get(topic, [])), topic
    assert sorted(out["actions.audit"]) == sorted(clean["actions.audit"])
    assert runner.counters["late"] == clean_runner.counters["late"]


def test_with_the_old_rule_the_same_event_would_have_dragged_everyone():
    """watermark_quorum = 1 is the newest-event rule: the skewed event makes the rest late."""
    settings = default_settings()
    old = dataclasses.replace(settings, events=dataclasses.replace(settings.events, watermark_quorum=1, max_future_s=10**9))
    clean_runner, _ = run(LINES, old)
    runner, _ = run(skewed(LINES, 400)[0], old)
    assert runner.counters["late"] > clean_runner.counters["late"] + 1000


def test_a_skewed_first_event_cannot_drag_the_watermark():
    """The very first event of a partition cannot be judged (no progress yet) and is
    accepted; it then holds one of the quorum's places, so the watermark follows the most
    advanced *other* user instead of the 2nd: a little less latency margin, never a jump.
    Only the skewed user's own later events become late (its own horizon is months ahead)."""
    lines, user = skewed(LINES, 0)
    runner, out = run(lines)
    clean_runner, clean = run(LINES)
    own = sum(1 for line in LINES if codec.loads(line)["user_id"] == user)
    assert runner.invalid["ts_in_future"] == 0
    assert runner.counters["late"] - clean_runner.counters["late"] <= own + 5
    others, clean_others = not_of(user, out["actions.audit"]), not_of(user, clean["actions.audit"])
    assert len(set(others) ^ set(clean_others)) <= 0.01 * len(clean_others)  # the quorum shifted by one user


def test_leaders_keep_the_quorum_most_advanced_users():
    lead = Leaders(quorum=3)
    for user, ts in [("a", 5), ("b", 9), ("a", 7), ("c", 1), ("d", 8), ("c", 10), ("b", 3)]:
        lead.add(user, ts)
    assert lead.top == [(10, "c"), (9, "b"), (8, "d")] and lead.progress() == 8
    assert Leaders(3, lead.dump()).top == lead.top
    assert Leaders(2).progress() == -1 and not Leaders(2).judge("x", 10**15, 1)


def test_a_quiet_month_for_the_whole_partition_is_not_a_clock_skew():
    """Everyone comes back after longer than max_future_s: the first returning user's
    event is dead-lettered, the second proves time jumped, and the rest flows."""
    from intentstream.stream.engine.partition import PartitionEngine
    from intentstream.stream.state.memory import MemorySessionStore

    eng = PartitionEngine(MemorySessionStore(), 0)
    t0, day = 1767607200000, 86_400_000

    def ev(i: int, user: str, ts: int) -> tuple[int, bytes]:
        return i, codec.dumps({"event_id": f"e{i}", "user_id": user, "ts": ts, "type": "page_view"})

    eng.process([ev(0, "a", t0), ev(1, "b", t0 + 1000), ev(2, "c", t0 + 2000)])
    back = t0 + 45 * day
    r = eng.process([ev(3, "a", back), ev(4, "b", back + 1000), ev(5, "c", back + 2000), ev(6, "a", back + 3000)])
    assert r.invalid == {"ts_in_future": 1} and [x.offset for x in r.rejections] == [3]
    assert r.counters["events"] == 3 and r.watermark >= back - 300_000
    again = eng.process([ev(7, "d", back + 4000)])
    assert again.invalid == {} and eng.meta.ahead == ()
