"""Event contract parse rate: ``intentstream.stream.contract.events.parse_event`` against bare ``orjson.loads``
on the same generated lines, measured in the same run.

    python -m bench.parse [--users 2000]
"""

from __future__ import annotations

import argparse

import orjson

from bench.common import Result, measure_rate, print_table
from intentstream.stream import codec
from intentstream.stream.contract.events import parse_event
from intentstream.stream.synth.clickstream import generate_events
from intentstream.stream.synth.config import GeneratorConfig


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    lines = [codec.dumps(e) for e in generate_events(GeneratorConfig(users=args.users, days=7, seed=1))]

    def bare() -> int:
        for raw in lines:
            orjson.loads(raw)
        return len(lines)

    def contract() -> int:
        for raw in lines:
            parse_event(raw)
        return len(lines)

    results = [
        Result("orjson.loads only (baseline)", "events/s", measure_rate(bare, args.repeats)),
        Result("parse_event (validate + Event)", "events/s", measure_rate(contract, args.repeats), "orjson.loads only (baseline)"),
    ]
    print_table(f"Event parsing, {len(lines):,} generated events", results)
    return results


if __name__ == "__main__":
    main()
