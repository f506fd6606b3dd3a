"""``intentstream demo``: the product on a synthetic trace, in-process, with no servers.

Generates a clickstream with planted personas and journeys, runs it through the same
engine the worker runs (in-memory state, simulated partitions), and prints what happened:
events, rejections, segments, the decisions by trigger and outcome, how many planted
journeys the triggers caught, the uplift of each trigger against its holdout group, and
the strategy policy learning on simulated users who react (exploit traffic per week),
and the persona report (with each persona's triggers and uplift). Files land in
``--out-dir``: ``clickstream.jsonl``, ``truth.jsonl``, ``segments.jsonl``,
``decisions.jsonl``, ``outcomes.jsonl``, ``dead-letter.jsonl``, ``report.md`` and
``report.html``. The generated users do not react to messages (uplift near zero, mostly
"not enough data" at a 5% holdout); ``intentstream simulate`` has users who do.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from intentstream.stream import codec
from intentstream.stream.decisions.contract import split_audit
from intentstream.stream.synth.clickstream import generate_lines, generate_truth
from intentstream.stream.synth.config import GenerationStats, GeneratorConfig
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.settings import load_settings

#: Planted journey -> the trigger that should catch it.
JOURNEY_TRIGGER = {
    "cart_abandoned": "cart_abandoned",
    "payment_stalled": "payment_stalled",
    "kyc_stalled": "kyc_stalled",
    "kyc_rejected": "kyc_rejected",
    "churn": "churn_risk",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate a trace, run the engine in-process, print what happened (no servers)")
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--lang", choices=("zh", "en"), default="en", help="language of the persona report")
    p.add_argument("--out-dir", default="out/demo", help="where the demo's files go (default: out/demo)")
    p.set_defaults(func=run)


def caught_journeys(truth: Sequence[Mapping[str, Any]], decisions: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """(caught, planted) per trigger: a planted journey is caught when a decision for its
    trigger was made for that user at its deadline (churn: at any time)."""
    fired = {(d["user_id"], d["trigger"], d["decided_at"]) for d in decisions}
    users = {(d["user_id"], d["trigger"]) for d in decisions}
    out: dict[str, list[int]] = {}
    for t in truth:
        for j in t["journeys"]:
            trigger = JOURNEY_TRIGGER.get(j["journey"])
            if trigger is None:
                continue
            tally = out.setdefault(trigger, [0, 0])
            tally[1] += 1
            hit = (t["user_id"], trigger, j.get("due", j["at"])) in fired
            tally[0] += hit or (trigger == "churn_risk" and (t["user_id"], trigger) in users)
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def learning_demo(seed: int, say: Callable[[str], None], users: int = 1500, days: int = 28) -> None:
    """The strategy policy learning: the closed-loop simulator's users react to messages
    (planted effects, config/simulation.toml); per week, where exploit traffic went."""
    from intentstream.stream.decisions.strategies import catalogue_from_settings
    from intentstream.stream.policy.chooser import StrategyPolicy
    from intentstream.stream.simulate.compare import exploit_by_week, planted_best
    from intentstream.stream.simulate.loop import simulate
    from intentstream.stream.simulate.world import engine_settings, load_world

    world = load_world()
    settings = engine_settings(world)
    catalogue = catalogue_from_settings(settings)
    best = planted_best(world, catalogue, {t: StrategyPolicy(catalogue, settings.policy).arms(t) for t in catalogue.triggers})
    res = simulate(world, settings, users, days, seed, partitions=1)
    say(f"7. the strategy policy learning, on {users:,} simulated users who react to messages ({days} days, one "
        f"partition; 30% of decisions explore): exploit decisions per week (weeks with at least 50), the planted best arm marked *")  # fmt: skip
    for trigger in ("churn_risk", "payment_stalled"):
        say(f"   {trigger}:")
        for week, arms in exploit_by_week(res, trigger, world.start_ms):
            total = sum(arms.values())
            if total < 50:  # the tail of long cadences: too few to read a share
                continue
            shares = ", ".join(f"{'*' if a == best.get(trigger) else ''}{a} {n / total:.0%}" for a, n in arms.most_common())
            say(f"     week {week + 1}: {total:>4} exploit decisions: {shares}")


def run(args: argparse.Namespace) -> int:
    from intentstream.stream.report.html import render_html
    from intentstream.stream.report.markdown import render_markdown
    from intentstream.stream.report.model import build_report
    from intentstream.stream.outcomes.render import render_text
    from intentstream.stream.outcomes.uplift import summarize
    from intentstream.stream.report.sources import learn
    from intentstream.stream.report.triggers import cluster_uplift

    settings = load_settings(args.config)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = GeneratorConfig(users=args.users, days=args.days, seed=args.seed, invalid_share=0.002)
    say = print

    started = time.perf_counter()
    stats = GenerationStats()
    lines = list(generate_lines(cfg, stats))
    (out / "clickstream.jsonl").write_bytes(b"".join(lines))
    truth = list(generate_truth(cfg))
    (out / "truth.jsonl").write_bytes(b"".join(codec.dumps_line(t) for t in truth))
    say(f"1. generated {len(lines):,} lines for {cfg.users} users over {cfg.days} days "
        f"({stats.late} late, {stats.duplicates} duplicated, {stats.invalid} malformed) -> {out / 'clickstream.jsonl'}")  # fmt: skip

    runner = OfflineRunner(settings)
    runner.source = str(out / "clickstream.jsonl")
    segments: list[bytes] = []
    decisions: list[bytes] = []
    outcomes: list[bytes] = []
    t = settings.topics
    with open(out / "dead-letter.jsonl", "wb") as dlq:
        runner.dead_letter = dlq
        for topic, value in runner.run(enumerate(lines, 1)):
            if topic == t.segments:
                segments.append(value)
            elif topic == t.audit:
                decisions.append(value)
            elif topic == t.outcomes:
                outcomes.append(value)
    (out / "segments.jsonl").write_bytes(b"".join(v + b"\n" for v in segments))
    (out / "decisions.jsonl").write_bytes(b"".join(v + b"\n" for v in decisions))
    (out / "outcomes.jsonl").write_bytes(b"".join(v + b"\n" for v in outcomes))
    engine_s = time.perf_counter() - started
    c = runner.counters
    say(f"2. engine: {c['events']:,} events, {sum(runner.invalid.values())} rejected to the dead-letter file "
        f"({', '.join(f'{k} {v}' for k, v in sorted(runner.invalid.items())) or 'none'}), "
        f"{c['late']} late, {c['duplicates']} duplicates dropped")  # fmt: skip

    segs = [codec.loads(v) for v in segments]
    stages = Counter(s["behaviour_stage"] for s in segs)
    say(f"3. {len(segs):,} intent segments: " + ", ".join(f"{k} {v}" for k, v in stages.most_common()))

    ds, later, corrections = split_audit(codec.loads(v) for v in decisions)
    say(f"4. {len(ds):,} decisions (every one in {out / 'decisions.jsonl'}, with what became of the deferred ones):")
    table: Counter[tuple[str, str]] = Counter((d["trigger"], d["status"]) for d in ds)
    statuses = ("sent", "deferred", "suppressed", "holdout")
    say(f"   {'trigger':<25}" + "".join(f"{s:>11}" for s in statuses))
    for trigger in sorted({k[0] for k in table}):
        say(f"   {trigger:<25}" + "".join(f"{table[(trigger, s)]:>11}" for s in statuses))
    reasons = Counter(d["reason"] for d in ds if d["reason"])
    say("   reasons: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    outcome = Counter(r["status"] if r["status"] == "sent" else f"{r['status']} ({r['reason']})" for r in later)
    held = sum(1 for d in ds if d["status"] == "deferred") - len(later)
    say(f"   deferred: {outcome.pop('sent', 0)} released at their send time, "
        + "".join(f"{n} {k}, " for k, n in sorted(outcome.items())) + f"{held} still held at the end; "
        f"corrections: {len(corrections)}")  # fmt: skip
    channels = Counter(d["channel"] for d in ds if d["status"] in ("sent", "deferred"))
    say("   deliveries by channel: " + ", ".join(f"{k} {v}" for k, v in channels.most_common()))

    say("5. planted journeys caught by their trigger:")
    for trigger, (caught, planted) in caught_journeys(truth, ds).items():
        say(f"   {trigger:<25} {caught:>5} / {planted:<5} ({caught / max(planted, 1):.0%})")

    records = [codec.loads(v) for v in outcomes]
    trigger_uplift = summarize(records, levels=(("trigger",),), min_per_arm=settings.outcomes.min_per_arm, confidence=settings.outcomes.confidence)
    say(f"6. outcomes: {len(records):,} decisions whose attribution window closed -> {out / 'outcomes.jsonl'} "
        f"(per strategy, channel and persona: intentstream uplift {out / 'outcomes.jsonl'}):")
    sys.stdout.write("".join(f"   {line}\n" for line in render_text(trigger_uplift).splitlines()))

    learning_demo(args.seed, say)

    model = learn(segs, settings.personas)
    rep = build_report(model, lang=args.lang, uplift=cluster_uplift(model, records, settings.outcomes), settings=settings.report)
    (out / "report.html").write_text(render_html(rep), encoding="utf-8")
    text = render_markdown(rep)
    (out / "report.md").write_text(text, encoding="utf-8")
    say(f"8. persona report ({len(rep.clusters)} personas; HTML with charts: {out / 'report.html'}), "
        f"all in {time.perf_counter() - started:.1f}s (engine {engine_s:.1f}s):\n")  # fmt: skip
    sys.stdout.write(text)
    return 0
