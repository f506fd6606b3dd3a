"""``python -m bench``: names first, then options for the named benchmark."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def bench(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [("policy", "--help"), ("policy", "--", "--help")], ids=["options", "after a separator"])
def test_options_reach_the_named_benchmark(argv):
    out = bench(*argv)  # argparse's help of bench/policy.py: it got the option, and ran nothing
    assert out.returncode == 0 and "usage: python -m bench.policy" in out.stdout, out.stderr


@pytest.mark.parametrize(("argv", "message"), [(("--cases", "x"), "name it first"), (("nope",), "unknown benchmark(s): nope")])
def test_what_cannot_run_is_refused(argv, message):
    out = bench(*argv)
    assert out.returncode == 2 and message in out.stderr
