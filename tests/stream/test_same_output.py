"""Behaviour pinned to bytes: a generated trace with late, duplicated and invalid
deliveries gives exactly these outputs through the offline runner.

Must not move under a refactor. A change that alters behaviour on purpose updates them
in the same commit and says why; ``scripts/same-output --ref REV`` shows which file and
which line differ between two revisions on larger traces. History:

* a036a48 (before the package layout): first pinned.
* the late-input policy (issue 11): trigger rules see events on arrival and deferred
  decisions are held until their send time, so the audit gains release/cancel records,
  actions.* lose the deferred ones (and gain their releases) and outputs within a step
  come in a different order; the *set* of segments was unchanged.
* the robust watermark (issue 17, ``[events] watermark_quorum = 2``): the watermark
  follows the 2nd most advanced user, not the newest event, so fewer events count as
  late (83 instead of 124 here) and a few segments and decisions differ accordingly.
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
    "segments": "16055413c0a17de905ab0e2d57d0135aeb21663f1b0e368ac37f94824b813366",
    "actions.audit": "1f01b3845c893b401ac6735e85559b724ad2e9de3f960bfd179e5453f4e0619d",
    "actions.push": "949245a6391c27a3d90a88d53203a190a24ed95c7e39e887d6d9592ea7d86cb4",
    "actions.email": "2e4940a24821c785823bb98567707ff94e441ce5e0aaa23a95f258541852927d",
    "actions.in_app": "dac5417460107a42e9103fe962b686668e0d5f6e1142e63febf87d589d36b784",
    "dead_letter": "97a707077df0c9e3ff34d895f2a1dbf697ff2d335c66114faf4390eec050f189",
}

SEGMENTS_SORTED = "3fe432f6aa972e23042c6d836f1217817b3732c4cbc0143a017dacfce6983d81"


def test_offline_outputs_of_a_messy_trace_are_byte_identical_to_the_pinned_ones() -> None:
    lines = list(generate_lines(TRACE))
    digests = {"clickstream": hashlib.sha256(b"".join(lines))}
    runner = OfflineRunner()
    runner.dead_letter, runner.source = io.BytesIO(), "trace"
    segments = []
    for topic, payload in runner.run(enumerate((line.rstrip(b"\n") for line in lines), 1)):
        digests.setdefault(topic, hashlib.sha256()).update(payload + b"\n")
        if topic == "segments":
            segments.append(payload)
    assert hashlib.sha256(b"\n".join(sorted(segments)) + b"\n").hexdigest() == SEGMENTS_SORTED
    digests["dead_letter"] = hashlib.sha256(runner.dead_letter.getvalue())
    assert {k: v.hexdigest() for k, v in digests.items()} == EXPECTED
    assert runner.counters["late"] == 83 and runner.counters["duplicates"] == 513 and runner.counters["decisions"] == 713
