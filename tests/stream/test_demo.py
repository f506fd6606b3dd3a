from __future__ import annotations

from intentstream.stream import codec
from intentstream.stream.cli import main


def test_demo_runs_the_whole_engine_offline_and_prints_what_happened(tmp_path, capsys):
    assert main(["demo", "--users", "80", "--days", "9", "--seed", "3", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for step in ("1. generated", "2. engine", "3.", "4.", "5. planted journeys", "6. outcomes", "UPLIFT pp (ITT)", "7. the strategy policy learning", "*payment_support_contact", "8. persona report", "## Cluster"):
        assert step in out
    decisions = [codec.loads(line) for line in (tmp_path / "decisions.jsonl").read_bytes().splitlines()]
    assert decisions and {d["status"] for d in decisions} <= {"sent", "deferred", "suppressed", "holdout", "cancelled"}
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")
    outcomes = [codec.loads(line) for line in (tmp_path / "outcomes.jsonl").read_bytes().splitlines()]
    assert outcomes and {o["action_id"] for o in outcomes} <= {d["action_id"] for d in decisions}
    assert (tmp_path / "dead-letter.jsonl").read_bytes()  # the demo plants a few malformed lines
    # a second run with the same seed writes the same decisions, byte for byte
    first = (tmp_path / "decisions.jsonl").read_bytes()
    assert main(["demo", "--users", "80", "--days", "9", "--seed", "3", "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "decisions.jsonl").read_bytes() == first
