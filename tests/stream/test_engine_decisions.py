"""The engine's decisions: batch-cut independent, deterministic, exactly once across crashes."""

from __future__ import annotations

from collections import Counter

import pytest

from intentstream.stream import codec
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.synth.clickstream import generate_lines, generate_truth
from intentstream.stream.synth.config import GeneratorConfig
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.state.memory import MemorySessionStore
from intentstream.stream.cli.validate import iter_lines

CFG = GeneratorConfig(users=300, days=10, seed=21)
LINES = list(generate_lines(CFG))


def decisions(batch_size: int) -> list[bytes]:
    runner = OfflineRunner(batch_size=batch_size)
    return [v for t, v in runner.run(enumerate(LINES)) if t == "actions.audit"]


@pytest.fixture(scope="module")
def reference() -> list[bytes]:
    return decisions(500)


@pytest.mark.parametrize("batch_size", [1, 13, 97])
def test_decisions_do_not_depend_on_batch_cuts(reference, batch_size):
    assert sorted(decisions(batch_size)) == sorted(reference)


def test_every_trigger_fires_and_decisions_follow_the_contract(reference):
    ds = [codec.loads(v) for v in reference]
    by_trigger = Counter(d["trigger"] for d in ds)
    for trigger in ("cart_abandoned", "payment_stalled", "kyc_stalled", "kyc_rejected", "churn_risk", "first_transaction_nudge", "coupon_interest"):
        assert by_trigger[trigger] > 0, trigger
    by_action: dict[str, list[str]] = {}
    for d in ds:
        by_action.setdefault(d["action_id"], []).append(d["status"])
    # one decision per action; a deferred one is followed by its release or cancellation
    for aid, statuses_of in by_action.items():
        assert statuses_of in (["sent"], ["suppressed"], ["holdout"], ["deferred"], ["deferred", "sent"], ["deferred", "cancelled"]), (aid, statuses_of)
    statuses = Counter(d["status"] for d in ds)
    assert statuses["sent"] and statuses["deferred"] and statuses["suppressed"] and statuses["holdout"]
    released = [d for d in ds if d["status"] == "sent" and d["send_at"] is not None]
    assert released and all(d["send_at"] > d["decided_at"] for d in released)
    for d in ds:
        assert set(d) == {"action_id", "user_id", "trigger", "channel", "status", "reason", "decided_at",
                          "send_at", "fallback_from", "persona", "strategy", "evidence", "experiment"}  # fmt: skip
        assert (d["reason"] is None) == (d["status"] == "sent")
        assert (d["send_at"] is not None) == (d["status"] in ("deferred", "cancelled") or d in released) or d["status"] == "holdout"


def test_planted_journeys_are_caught(reference):
    """Every planted abandoned cart, stalled payment, stalled or rejected KYC gets a
    decision for that trigger at its deadline (suppressed or not: the trigger fired)."""
    fired = {(d["user_id"], d["trigger"], d["decided_at"]) for d in map(codec.loads, reference)}
    by_user = {(u, t) for u, t, _ in fired}
    name = {"cart_abandoned": "cart_abandoned", "payment_stalled": "payment_stalled",
            "kyc_stalled": "kyc_stalled", "kyc_rejected": "kyc_rejected", "churn": "churn_risk"}  # fmt: skip
    planted = caught = 0
    for truth in generate_truth(CFG):
        for j in truth["journeys"]:
            trigger = name.get(j["journey"])
            if trigger is None:
                continue
            planted += 1
            at = j.get("due") or j.get("at")
            if (truth["user_id"], trigger, at) in fired or (trigger == "churn_risk" and (truth["user_id"], trigger) in by_user):
                caught += 1
    assert planted > 100
    assert caught / planted >= 0.95, (caught, planted)


#: the first commit whose outbox has such an entry dies
CRASH_POINTS = {
    "any decision": lambda e: e.topic == "actions.audit",
    "a deferred decision": lambda e: e.id.endswith(":audit") and b'"status":"deferred"' in e.value,
    "the release of a held one": lambda e: e.id.endswith(":audit:released"),
}


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
def test_crash_after_deciding_before_commit_gives_the_same_decisions(point):
    """kill -9 after the ledger recorded decisions but before the state commit — in a step
    that decides, defers or releases a held message: the redelivered batch fires the
    same triggers, the ledger returns the same decisions, the same held ones are
    released; actions.* and the audit get the same records."""
    lines = list(iter_lines(iter(LINES)))[:6000]
    whole = PartitionEngine(MemorySessionStore(), 0)
    whole.process([(i, raw) for i, raw in lines])
    whole.advance_to(1 << 60)
    want = sorted((e.topic, e.id, e.value) for e in whole.pending_outbox() if e.topic.startswith("actions."))
    crash_at = CRASH_POINTS[point]

    class Dies(MemorySessionStore):
        armed = False

        def commit(self, partition, batch):
            if self.armed and any(crash_at(e) for e in batch.outbox):
                self.armed = False
                raise RuntimeError("kill -9")
            super().commit(partition, batch)

    store = Dies()
    store.armed = True
    eng = PartitionEngine(store, 0)
    batches = [lines[i : i + 400] for i in range(0, len(lines), 400)]
    i = 0
    while i < len(batches):
        try:
            eng.process([(off, raw) for off, raw in batches[i]])
        except RuntimeError:
            eng = PartitionEngine(store, 0)  # restart: same store, same ledger
            continue
        i += 1
    eng.advance_to(1 << 60)
    assert not store.armed, "never crashed"
    got = sorted((e.topic, e.id, e.value) for e in eng.pending_outbox() if e.topic.startswith("actions."))
    assert got == want
