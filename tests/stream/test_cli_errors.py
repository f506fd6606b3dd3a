"""User mistakes, whatever the command: one line on standard error,
``intentstream COMMAND: MESSAGE``, exit status 2, no traceback (stream/cli/terminal.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from intentstream.stream.cli import main

BAD_TOML = "[sessions\n"
MISTAKES = [
    # a missing file
    (["segments", "missing.jsonl", "--out", "s.jsonl"], "segments", "missing.jsonl: No such file or directory"),
    (["replay", "missing.jsonl", "--offline", "--out", "d.jsonl"], "replay", "missing.jsonl"),
    (["report", "--input", "missing.jsonl"], "report", "missing.jsonl"),
    (["explain", "u1", "--input", "missing.jsonl"], "explain", "cannot read missing.jsonl"),
    (["uplift", "missing.jsonl"], "uplift", "missing.jsonl"),
    (["backtest", "missing.jsonl", "--candidate", "c.toml"], "backtest", "missing.jsonl: no such file"),
    (["validate", "missing.jsonl"], "validate", "missing.jsonl"),
    # an unknown format, or options that do not go together
    (["import", "in.csv", "--format", "parquet", "--out", "o.jsonl"], "import", "unknown format 'parquet'"),
    (["uplift", "in.csv", "--format", "yaml"], "uplift", "invalid choice: 'yaml'"),
    (["explain", "u1", "--input", "in.csv", "--format", "pdf"], "explain", "invalid choice: 'pdf'"),
    (["replay", "in.csv", "--to-kafka", "--out", "d.jsonl"], "replay", "--out only applies with --offline"),
    (["generate", "--users", "0", "--days", "1", "--seed", "1", "--out", "g.jsonl"], "generate", "must be >= 1"),
    # a bad mapping file, bad settings
    (["import", "in.csv", "--format", "csv", "--mapping", "bad.toml", "--out", "o.jsonl"], "import", "not valid TOML"),
    (["--config", "bad.toml", "segments", "in.csv", "--out", "s.jsonl"], "segments", "settings: "),
    (["--config", "missing.toml", "report", "--input", "in.csv"], "report", "missing.toml"),
    (["simulate", "--users", "2", "--days", "1", "--seed", "1", "--out-dir", "sim", "--world", "bad.toml"], "simulate", ""),
    (["backtest", "in.csv", "--candidate", "bad.toml"], "backtest", ""),
    # no command at all
    ([], "", "the following arguments are required: COMMAND"),
]


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return int(exc.code or 0)


@pytest.mark.parametrize("argv,command,message", MISTAKES, ids=[" ".join(m[0][:3]) for m in MISTAKES])
def test_user_mistakes_are_one_prefixed_line_and_exit_status_2(tmp_path, monkeypatch, capsys, argv, command, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("user_id,ts,type\n")
    (tmp_path / "bad.toml").write_text(BAD_TOML)
    assert run(argv) == 2
    out, err = capsys.readouterr()
    prefix = f"intentstream {command}: " if command else "intentstream: "
    assert err.startswith(prefix) and message in err, err
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    assert out == ""


def test_a_bad_settings_variable_through_the_entry_point(tmp_path):
    env = {"INTENTSTREAM_SESSIONS__NO_SUCH_KNOB": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "intentstream.stream.cli", "segments", "x.jsonl", "--out", "s.jsonl"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("intentstream segments: ") and proc.stderr.count("\n") == 1, proc.stderr
