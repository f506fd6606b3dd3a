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
* outcomes and per-trigger holdouts (issue 12): every decision carries its experiment
  and arm (``experiment``), each trigger has its own control group (``holdout-v2/<trigger>``,
  so which users are held out changed), ``actions.outcomes`` appears, and a user's next
  due moment includes the close of their attribution windows, so users are advanced in
  a different order within a step: the *set* of segments is unchanged.
* global caps, trigger priority, the churn cadence and send time (issue 13): at most 2
  messages a day and 5 a week per user across channels (``global_cap`` / ``priority``),
  churn reminders at 7/14/30 days of silence stretched to the user's rhythm (reactions
  to messages are not visits), delay-tolerant triggers held for the user's likely hour
  (``send_time``); this trace's three emails are gone (capped or moved), so
  ``actions.email`` is not written at all; users' due moments moved, so segments come
  in a different order: the *set* of segments is unchanged.
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
    "segments": "76f72acfd0179588730f20d6ba2249f7b3be36acc3e997f206bdeb3ba1415ef7",
    "actions.audit": "6d4e62bfd68b960236658855409945a5425dd4e8bd4d1655ac704d37677ef7d4",
    "actions.push": "055035a42a039dfaf231d5368cdf02ec6942e43ab511d2e2a988a8293d5a5b6f",
    "actions.in_app": "ae3b7c223812623d6cd7734d8b8f58f8cd1ae91f0ba15d8a9669239cdfcd0ddb",
    "actions.outcomes": "1053e7f370e902677d54d3499c733b56bc062f5575395b0af2f72a760e2dd1cf",
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
