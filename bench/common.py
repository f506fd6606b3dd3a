"""Shared helpers for benchmarks: repeat a case, report median and min-max, print a table."""

from __future__ import annotations

import argparse

import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass
class Result:
    case: str
    unit: str
    values: list[float]
    baseline: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.values)


def measure_rate(fn: Callable[[], int], repeats: int = 5) -> list[float]:
    """Run ``fn`` (returning how many items it processed) ``repeats`` times; items/s each."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - started))
    return rates


def machine() -> str:
    import os

    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def print_table(title: str, results: Sequence[Result]) -> None:
    """Medians with min-max; ratio against the named baseline measured in the same run."""
    by_case = {r.case: r for r in results}
    print(f"\n## {title}  ({machine()})\n")
    print("| case | median | min-max | unit | vs baseline |")
    print("|---|---:|---:|---|---:|")
    for r in results:
        ratio = ""
        if r.baseline and r.baseline in by_case:
            ratio = f"{r.median / by_case[r.baseline].median:.2f}x {r.baseline}"
        print(f"| {r.case} | {r.median:,.0f} | {min(r.values):,.0f}-{max(r.values):,.0f} | {r.unit} | {ratio} |")


def redis_client(url: str | None = None):
    """A redis-py client on ``url`` (default: the settings' ``[redis] url``), or None
    when it does not answer (the Redis cases are then skipped)."""
    import redis

    from intentstream.stream.settings import load_settings
    from intentstream.stream.state.redis.client import make_client

    client = make_client(load_settings().redis, url=url)
    try:
        client.ping()
    except redis.RedisError:
        client.close()
        return None
    return client


def simulation_args(prog: str, seeds: int, first_seed: int, argv: list[str] | None) -> argparse.Namespace:
    """The arguments of the simulator benchmarks: seeds, users, days, world file."""
    ap = argparse.ArgumentParser(prog=prog)
    ap.add_argument("--seeds", type=int, default=seeds, help="number of seeds (default %(default)s)")
    ap.add_argument("--first-seed", type=int, default=first_seed, help="first seed (default %(default)s)")
    ap.add_argument("--users", type=int, default=1500, help="simulated users per seed (default %(default)s)")
    ap.add_argument("--days", type=int, default=21, help="days of journeys per seed (default %(default)s)")
    ap.add_argument("--world", help="simulation override file (TOML)")
    return ap.parse_args(argv)
