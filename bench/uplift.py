"""Calibration of the uplift intervals on the closed-loop simulator (``intentstream simulate``).

Runs the simulated world (config/simulation.toml) over several seeds and checks, per
trigger, how often the ``uplift_per_send`` interval covers the trigger's true effect on
the treated (target: >= 90 % over all (trigger, seed) pairs, about the nominal 95 %),
how wide the intervals are, and whether each cell planted to do nothing gets an interval
around 0. Also the simulation's speed: events/s of the closed loop against the offline
replay of the same clickstream (the open-loop engine alone, same settings).

    python -m bench uplift
    python -m bench.uplift --seeds 30 --users 3000 --days 28
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

from bench.common import simulation_args, Result, print_table
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.simulate.calibration import Check, checks, coverage
from intentstream.stream.simulate.loop import simulate
from intentstream.stream.simulate.truth import build_truth
from intentstream.stream.simulate.world import engine_settings, load_world


def _fmt(values: list[float], spec: str = "+.3f") -> str:
    return format(statistics.mean(values), spec) if values else "-"


def main(argv: list[str] | None = None) -> list[Result]:
    args = simulation_args("python -m bench.uplift", 12, 100, argv)
    world = load_world(args.world)
    settings = engine_settings(world)
    by_trigger: dict[str, list[Check]] = defaultdict(list)
    zero: list[Check] = []
    loop_rates, replay_rates = [], []
    events = decisions = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        started = time.perf_counter()
        res = simulate(world, settings, args.users, args.days, seed)
        loop_rates.append(len(res.clickstream) / (time.perf_counter() - started))
        started = time.perf_counter()
        for _ in OfflineRunner(settings).run(enumerate(res.clickstream, 1)):
            pass
        replay_rates.append(len(res.clickstream) / (time.perf_counter() - started))
        audit, outcomes = res.audit_records(), res.outcome_records()
        truth = build_truth(world, seed=seed, users=res.users, days=args.days, end_ms=res.end_ms, audit=audit, outcomes=outcomes, reactions=res.reactions)
        trig, z = checks(truth, outcomes)
        for c in trig:
            by_trigger[c.key["trigger"]].append(c)
        zero += z
        events += len(res.clickstream)
        decisions += truth["interference"]["decisions"]
        print(f"seed {seed}: {len(res.clickstream):,} events, {truth['interference']['decisions']:,} decisions, "
              f"covered {coverage(trig)[0]}/{coverage(trig)[1]}", flush=True)  # fmt: skip

    print(f"\n## Calibration: {args.seeds} seeds x {args.users:,} users x {args.days} days "
          f"({events:,} events, {decisions:,} decisions; {settings.outcomes.confidence:.0%} intervals)\n")  # fmt: skip
    print("| trigger | covered / judged | coverage | mean true effect | mean estimate | mean interval width | not enough data |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    all_checks = []
    for trigger, cs in sorted(by_trigger.items()):
        all_checks += cs
        cov, judged = coverage(cs)
        judged_cs = [c for c in cs if c.covered is not None]
        print(f"| {trigger} | {cov}/{judged} | {cov / judged if judged else 0:.0%} | {_fmt([c.truth for c in judged_cs])} | "
              f"{_fmt([c.estimate for c in judged_cs])} | {_fmt([c.width for c in judged_cs], '.3f')} | {len(cs) - judged} |")  # fmt: skip
    cov, judged = coverage(all_checks)
    print(f"| **all** | {cov}/{judged} | **{cov / judged if judged else 0:.1%}** | | | "
          f"{_fmt([c.width for c in all_checks if c.width is not None], '.3f')} | |")  # fmt: skip
    cells = defaultdict(list)
    for c in zero:
        cells["/".join(c.key[k] for k in ("trigger", "strategy", "channel"))].append(c)
    for cell, cs in sorted(cells.items()):
        zc, zj = coverage(cs)
        print(f"\nplanted to do nothing, {cell}: interval holds 0 in {zc}/{zj} seeds (mean estimate "
              f"{_fmt([c.estimate for c in cs if c.estimate is not None])}, mean width {_fmt([c.width for c in cs if c.width is not None], '.3f')})")  # fmt: skip
    results = [
        Result("offline replay of the simulated clickstream (baseline)", "events/s", replay_rates),
        Result("closed loop (intentstream simulate)", "events/s", loop_rates, "offline replay of the simulated clickstream (baseline)"),
    ]
    print_table("Simulation speed", results)
    return results


if __name__ == "__main__":
    main()
