"""Policies compared on the closed-loop simulator, on the same seeds and users:

1. the strategy policy (explore / exploit with the ROI guard, the default) against the
   fixed catalogue (``[policy] enabled = false``): conversions, where exploit traffic
   goes, and the ROI guard on a world with one harmful arm planted
   (tests/data/simulation/harmful_arm.toml); at the default 6 partitions (the policy
   learns per partition) and at 1;
2. send-time optimisation against immediate sending (``[send_time] triggers = []``).

Reads only what the engine published and what the simulated users sent back: the open
rate of the delay-tolerant triggers' messages (Wilson intervals, the Newcombe interval
of the difference) and the measured conversions of every trigger. The world plants that
send time matters (``[reactions] inactive_open_factor`` in config/simulation.toml: a
message arriving outside the user's local active hours is opened 0.3x as often).

    python -m bench policy
    python -m bench.policy --seeds 5 --users 3000 --days 28
"""

from __future__ import annotations

import time

import statistics
from pathlib import Path

from scipy import stats

from bench.common import machine, simulation_args
from intentstream.stream import codec
from intentstream.stream.decisions.strategies import catalogue_from_settings
from intentstream.stream.policy.chooser import StrategyPolicy
from intentstream.stream.settings import overlay
from intentstream.stream.simulate.compare import compare_policies, conversions, exploit_shares, planted_best
from intentstream.stream.simulate.loop import simulate
from intentstream.stream.simulate.world import engine_settings, load_world

IMMEDIATE = {"send_time": {"triggers": []}}
FIXED = {"policy": {"enabled": False}}
HARMFUL = Path(__file__).resolve().parent.parent / "tests" / "data" / "simulation" / "harmful_arm.toml"


def learning(args, seeds: list[int], world_file: str | Path | None, partitions: int | None) -> None:
    """Strategy policy vs the fixed catalogue; prints one table."""
    world = load_world(world_file)
    settings = engine_settings(world)
    catalogue = catalogue_from_settings(settings)
    policy = StrategyPolicy(catalogue, settings.policy)
    best = planted_best(world, catalogue, {t: policy.arms(t) for t in catalogue.triggers})
    gains, shares, alerts = [], {}, []
    won_all = base_all = 0
    for seed in seeds:
        a = simulate(world, settings, args.users, args.days, seed, partitions=partitions)
        b = simulate(world, overlay(settings, FIXED), args.users, args.days, seed, partitions=partitions)
        won, base = sum(conversions(a).values()), sum(conversions(b).values())
        won_all, base_all = won_all + won, base_all + base
        gains.append(won / base - 1)
        for trigger, (k, n, _) in exploit_shares(a, best).items():
            sh = shares.setdefault(trigger, [0, 0])
            sh[0], sh[1] = sh[0] + k, sh[1] + n
        alerts += [codec.loads(x) for x in a.alerts]
    parts = partitions or settings.topics.partitions
    name = Path(world_file).name if world_file else "default world"
    print(f"\n### {name}, {parts} partition(s): {len(seeds)} seeds x {args.users:,} users x {args.days} days\n")
    mean = statistics.mean(gains)
    if len(gains) > 1:
        half = stats.t.ppf(0.975, len(gains) - 1) * statistics.stdev(gains) / len(gains) ** 0.5
        interval = f"[{mean - half:+.1%}, {mean + half:+.1%}] (95 %, t over seeds)"
    else:
        interval = "(one seed: no interval)"
    print(f"conversions: strategy policy {won_all:,} vs fixed catalogue {base_all:,}: {mean:+.1%} {interval}\n")
    print("| trigger | planted best arm | exploit decisions to it, 2nd half | share |")
    print("|---|---|---:|---:|")
    for trigger, (k, n) in sorted(shares.items()):
        print(f"| {trigger} | {best[trigger]} | {k:,} / {n:,} | {k / n if n else 0:.0%} |")
    paused = sorted({(x["subject"], x["status"], x["worker"], x["ts"]) for x in alerts})
    print(f"\nROI guard alerts: {len(paused)}" + "".join(f"\n- {s} {st} on {w} at {ts}" for s, st, w, ts in paused[:12]))


def main(argv: list[str] | None = None) -> None:
    args = simulation_args("python -m bench.policy", 3, 1, argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    print(f"\n## Strategy policy vs the fixed catalogue ({machine()})")
    for world_file, partitions in ((args.world, None), (args.world or HARMFUL, None), (args.world or HARMFUL, 1)):
        started = time.perf_counter()
        learning(args, seeds, world_file, partitions)
        print(f"\n({time.perf_counter() - started:.0f} s)")
    world = load_world(args.world)
    settings = engine_settings(world)
    started = time.perf_counter()
    c = compare_policies(world, settings, {}, IMMEDIATE, seeds=seeds, users=args.users, days=args.days)
    took = time.perf_counter() - started
    triggers = ", ".join(settings.send_time.triggers)
    print(f"\n## Send time vs immediate sending ({machine()})\n")
    print(f"{len(seeds)} seeds x {args.users:,} users x {args.days} days, {took:.0f} s; open rate of the "
          f"messages of {triggers}; 95% intervals\n")  # fmt: skip
    print("| policy | open rate [95% CI] of sent | conversions (all triggers) | decisions |")
    print("|---|---:|---:|---:|")
    print(f"| send time (default, max delay {settings.send_time.max_delay_s // 3600} h) | {c.open_a} | {c.conversions_a:,} | {c.decisions_a:,} |")
    print(f"| immediate | {c.open_b} | {c.conversions_b:,} | {c.decisions_b:,} |")
    d = c.open_diff
    print(f"\nopen rate difference: {d.estimate:+.1%} [{d.low:+.1%}, {d.high:+.1%}]" if d else "\nopen rate difference: not enough data")
    print("conversions by trigger (send time / immediate): "
          + ", ".join(f"{t} {a}/{b}" for t, (a, b) in c.by_trigger.items()))  # fmt: skip


if __name__ == "__main__":
    main()
