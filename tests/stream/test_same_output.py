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
* the strategy policy (issue 13): 30 % of decisions explore another arm of their trigger
  (other strategies, channels and texts: ``actions.email`` and ``actions.sms`` appear),
  exploit picks the arm with the best conversion per send once it has data, every
  decision carries ``strategy.policy``; steps end where the watermark enters a new policy
  epoch, so segments come in a different order: the *set* of segments is unchanged. Also
  a fix: the active-hours profile missed hours on the same-day fast path, so a cached
  state and a reloaded one could differ (a restart changed a send time).
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
    "segments": "84ccbe6d5282566b1689ca96d025f2589f7d759c10624db0143068d8a7213c74",
    "actions.push": "2fb9f9f2fe6b5d397d7902de62ac94a015ab1aebb469d72f1e5b4f4d69d694a1",
    "actions.audit": "367f1e5d47211c251056489042d8fbd84cb4bb508c295dfad4480fa43024c7f2",
    "actions.email": "04731a1fb3ec6ee105783d5c0e120b6b08e234799016544a62ef1bba2744592a",
    "actions.in_app": "dcba730fc1da011c0800f92b4fa76e3c968ce95e45d36cfcd2bb955f8d2e2816",
    "actions.outcomes": "fa61228bafaf1b3611ca38a787fe15c29944a6948fd7aaebf0d523d5105a344c",
    "actions.sms": "374f036612b3994fd997f32102f1a56ebff56c4d72b2c893f4985774368c2041",
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
