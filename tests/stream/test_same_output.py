"""Behaviour pinned to bytes: a generated trace with late, duplicated and invalid
deliveries gives exactly these outputs through the offline runner.

The digests were taken before the package layout changed (revision a036a48) and must
not move under a refactor. A change that alters behaviour on purpose updates them in
the same commit and says why; ``scripts/same-output --ref REV`` shows which file and
which line differ between two revisions on larger traces.
"""

from __future__ import annotations

import hashlib
import io

from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

TRACE = GeneratorConfig(users=300, days=7, seed=3, late_share=0.05, duplicate_share=0.03, invalid_share=0.02)

EXPECTED = {
    "clickstream": "203b4c80d69f3618ceed0a61c78edf8e159a72e834089655cf6b84516724e886",
    "segments": "1534adef5cfdf97f60256a5383d1ccf4319a212f6cf15ff7f3858bf3f9075180",
    "actions.audit": "6eded411fe498591fde21f1d146e2f099dce28e2ee439bf09c676767039644d8",
    "actions.push": "4ae7432d73ecf22d6e091e81b29aac2ce8e70b0b9ee00a3a69d41fcdf4d11d0b",
    "actions.email": "2e4940a24821c785823bb98567707ff94e441ce5e0aaa23a95f258541852927d",
    "actions.in_app": "f302cfab205f060c17c0d171e369faceb8a2d01b7c1243b4fa634c4405248e06",
    "dead_letter": "97a707077df0c9e3ff34d895f2a1dbf697ff2d335c66114faf4390eec050f189",
}


def test_offline_outputs_of_a_messy_trace_are_byte_identical_to_the_pinned_ones() -> None:
    lines = list(generate_lines(TRACE))
    digests = {"clickstream": hashlib.sha256(b"".join(lines))}
    runner = OfflineRunner()
    runner.dead_letter, runner.source = io.BytesIO(), "trace"
    for topic, payload in runner.run(enumerate((line.rstrip(b"\n") for line in lines), 1)):
        digests.setdefault(topic, hashlib.sha256()).update(payload + b"\n")
    digests["dead_letter"] = hashlib.sha256(runner.dead_letter.getvalue())
    assert {k: v.hexdigest() for k, v in digests.items()} == EXPECTED
    assert runner.counters["late"] == 124 and runner.counters["duplicates"] == 513 and runner.counters["decisions"] == 719
