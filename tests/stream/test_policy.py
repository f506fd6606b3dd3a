"""The strategy policy (explore / exploit, ROI guard): deterministic under every batching
and restart, and it learns what the simulated world planted."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from intentstream.agents.monitoring import roi_paused
from intentstream.stream import codec
from intentstream.stream.decisions.decider import Decider, TriggerHit
from intentstream.stream.decisions.fatigue import FatigueLedger
from intentstream.stream.decisions.strategies import catalogue_from_settings, load_catalogue
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.policy.chooser import StrategyPolicy
from intentstream.stream.policy.tally import ArmTally
from intentstream.stream.settings import FatigueSettings, PolicySettings, Settings, overlay
from intentstream.stream.simulate.compare import conversions, exploit_shares, planted_best
from intentstream.stream.ops.prometheus import render_prometheus
from intentstream.stream.ops.snapshot import WorkerSnapshot
from intentstream.stream.simulate.loop import Simulation, simulate
from intentstream.stream.simulate.world import engine_settings, load_world
from intentstream.stream.state.memory import MemoryLedgerStore, MemorySessionStore
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

TRACE = [line.rstrip(b"\n") for line in generate_lines(GeneratorConfig(users=300, days=14, seed=11, late_share=0.05, duplicate_share=0.03))]
HARMFUL = Path(__file__).resolve().parent.parent / "data" / "simulation" / "harmful_arm.toml"


def outputs(runner: OfflineRunner) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for topic, payload in runner.run(enumerate(TRACE, 1)):
        out.setdefault(topic, []).append(payload)
    return out


def test_learning_is_the_same_whatever_the_batches():
    base = outputs(OfflineRunner(batch_size=500))
    modes = Counter(codec.loads(v)["strategy"]["policy"]["mode"] for v in base["actions.audit"] if "correction" not in codec.loads(v))
    assert modes["explore"] > 100 and modes["exploit"] > 300  # it ran, and explored about 30 %
    learned = [codec.loads(v)["strategy"]["policy"]["sends"] for v in base["actions.audit"] if "correction" not in codec.loads(v)]
    assert max(learned) > 20  # decisions late in the trace saw what earlier ones achieved
    for size in (1, 7, 61):
        other = outputs(OfflineRunner(batch_size=size))
        assert {t: sorted(v) for t, v in other.items()} == {t: sorted(v) for t, v in base.items()}, size


def test_a_restart_reloads_the_tally_from_the_committed_meta():
    """Kill the engine between steps (its cached tally goes with it): the new engine on the
    same store goes on from the committed tally and decides exactly as one that never died."""
    lines = [(i, raw) for i, raw in enumerate(TRACE)]

    def run(restart_every: int | None) -> list[bytes]:
        store = MemorySessionStore()
        engine = PartitionEngine(store, 0)
        out = []
        for n, i in enumerate(range(0, len(lines), 97)):
            if restart_every and n % restart_every == 0:
                engine = PartitionEngine(store, 0)
            engine.process(lines[i : i + 97])
            entries = engine.pending_outbox()
            out += [e.value for e in entries if e.topic == "actions.audit"]
            engine.ack([e.id for e in entries])
        return out

    clean = run(None)
    assert run(5) == clean and len(clean) > 200


def test_the_regret_rule_and_a_disabled_policy_keep_the_catalogue_choice():
    policy = StrategyPolicy(load_catalogue())
    tally = ArmTally().view()
    picks = {policy.choose("cart_abandoned", None, f"a{i}", "cart_recap_email", True, tally).mode for i in range(200)}
    assert picks == {"rule"}
    off = StrategyPolicy(load_catalogue(), PolicySettings.defaults(enabled=False))
    assert {off.choose("cart_abandoned", None, f"a{i}", "cart_reminder_coupon", False, tally).arm for i in range(200)} == {"cart_reminder_coupon"}


def test_when_every_arm_is_paused_the_trigger_is_suppressed_by_the_roi_guard():
    catalogue = load_catalogue()
    policy = StrategyPolicy(catalogue, PolicySettings.defaults(retest_share=0.0))
    tally = ArmTally()
    for arm in policy.arms("kyc_rejected"):
        for _ in range(250):
            tally.add("kyc_rejected", arm, None, converted=False, clicked=False)
    tally.roll(1)
    decider = Decider(catalogue, FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=0.0)), policy=policy)
    hit = TriggerHit(user_id="u1", trigger="kyc_rejected", ts_ms=1767607200000, evidence=("e1",), tz="UTC")
    d = decider.decide(hit, tally.view()).decision
    assert (d.status, d.reason, d.strategy["policy"]["arm"]) == ("suppressed", "roi_guard", None)


def test_the_simulator_learns_the_planted_best_arms_and_pauses_the_harmful_one():
    """Fixed seed, 2,000 users x 28 days on 2 partitions, the default world plus one
    harmful arm (tests/data/simulation/harmful_arm.toml): the full comparison over seeds
    and partition counts is ``python -m bench policy``."""
    world = load_world(HARMFUL)
    settings = engine_settings(world)
    catalogue = catalogue_from_settings(settings)
    policy = StrategyPolicy(catalogue, settings.policy)
    best = planted_best(world, catalogue, {t: policy.arms(t) for t in catalogue.triggers})
    assert best["churn_risk"] == "winback_big_coupon" and best["payment_stalled"] == "payment_support_contact"
    sim = Simulation(world, settings, 2000, 28, 1, partitions=2)
    learning = sim.run()
    fixed = simulate(world, overlay(settings, {"policy": {"enabled": False}}), 2000, 28, 1, partitions=2)
    shares = exploit_shares(learning, best)
    for trigger in ("churn_risk", "payment_stalled", "kyc_stalled"):  # enough decisions by then
        to_best, exploits, skipped = shares[trigger]
        assert skipped > 300 and to_best >= 0.7 * exploits, (trigger, shares[trigger])
    won, base = sum(conversions(learning).values()), sum(conversions(fixed).values())
    assert won >= 1.05 * base, (won, base)
    paused = [codec.loads(a) for a in learning.alerts]
    assert {(a["subject"], a["status"]) for a in paused} == {("churn_risk/winback_whats_new", "firing")}
    assert {a["worker"] for a in paused} == {"partition:0", "partition:1"}
    # what a worker holding both partitions shows on /metrics: the gauge the Prometheus rule reads
    gauge = roi_paused(sim.engines)
    assert gauge[("churn_risk", "winback_whats_new")] == 2 and sum(gauge.values()) == 2
    assert set(gauge) == set(policy.all_arms())
    text = render_prometheus(WorkerSnapshot(0, roi_paused=gauge))
    assert 'intentstream_roi_guard_paused{trigger="churn_risk",arm="winback_whats_new"} 2' in text
    assert 'intentstream_roi_guard_paused{trigger="churn_risk",arm="winback_big_coupon"} 0' in text
    after = max(a["ts"] for a in paused)
    later = [codec.loads(r)["strategy"]["policy"] for r in learning.decisions if codec.loads(r)["decided_at"] > after]
    assert {p["mode"] for p in later if p["arm"] == "winback_whats_new"} == {"retest"}


def test_policy_off_reproduces_the_catalogue_alone():
    settings = Settings.defaults(policy=PolicySettings.defaults(enabled=False))
    out = outputs(OfflineRunner(settings))
    assert all("policy" not in codec.loads(v)["strategy"] for v in out["actions.audit"] if "correction" not in codec.loads(v))
