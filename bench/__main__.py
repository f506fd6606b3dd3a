"""Run every benchmark and print its table: ``python -m bench [NAME ...] [-- ARGS]``.

Each module ``bench/<name>.py`` has ``main(argv)`` that measures its cases several times
against a baseline measured in the same run, and prints a table of medians with min-max.
Cases that need Kafka or Redis start the local stack (``scripts/stack up``) first.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path

#: In the order they run; the ones that need the local stack say so.
BENCHES = {
    "parse": False,
    "sessions": True,
    "fatigue": True,
    "personas": False,
    "replay": True,
    "worker": True,
    "cluster": True,
    "uplift": False,
    "policy": False,
    "offline": False,
}


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] or list(BENCHES)
    unknown = set(names) - set(BENCHES)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parent.parent
    if any(BENCHES[n] for n in names):
        subprocess.run([sys.executable, str(root / "scripts" / "stack"), "up", "-q"], check=True)
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"\n(bench.{name} is not there yet)")
                continue
            raise
        started = time.perf_counter()
        module.main([])
        print(f"\n({name}: {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
