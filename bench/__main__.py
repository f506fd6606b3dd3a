"""Run every benchmark and print its table: ``python -m bench [NAME ...] [OPTIONS]``.

``OPTIONS`` (everything from the first word that starts with ``-``; a ``--`` before them
is allowed) go to each named benchmark's ``main``: ``python -m bench offline --cases
generated``, ``python -m bench worker --profile``.

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
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    named, options = argv[:first_option], argv[first_option:]
    if options[:1] == ["--"]:
        options = options[1:]
    if options and not named:
        print("options are for a benchmark: name it first (python -m bench offline --cases generated)", file=sys.stderr)
        return 2
    names = named or list(BENCHES)
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
        module.main(list(options))
        print(f"\n({name}: {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
