"""Policies compared on the closed-loop simulator: send-time optimisation against
immediate sending (``[send_time] triggers = []``), on the same seeds and users.

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

from bench.common import simulation_args, machine
from intentstream.stream.simulate.compare import compare_policies
from intentstream.stream.simulate.world import engine_settings, load_world

IMMEDIATE = {"send_time": {"triggers": []}}


def main(argv: list[str] | None = None) -> None:
    args = simulation_args("python -m bench.policy", 3, 1, argv)
    world = load_world(args.world)
    settings = engine_settings(world)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
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
