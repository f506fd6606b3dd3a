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
* policy epochs of 6 h instead of 1 h (fewer step cuts); a goal that arrived before its
  decision was made now cancels the held message (``goal_reached``); a reaction to a
  message is no longer a "*" goal (churn). Outcome records carry the policy's mode
  (``strategy.policy.mode``) for ``uplift --by trigger,mode``.
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
    "segments": "84f9248c8168468860f00cd08a4fc80fd296185d6f989fc935f4bb6faac0d393",
    "actions.audit": "2aaffff371eafe755d580065b0b2c9e5a456ec50acaa2f1aba8eb2a4b45771f8",
    "actions.push": "937f8bbc7eb2ec1fd17093ae77e14dc3d1fc09194353baeaca299006cd22f292",
    "actions.email": "db2c341e772ba9ae5cc067768fac8b396fdb15fb67618670b3465e8c8be51520",
    "actions.in_app": "d2373ca5907ba26be69f2226aa21962f6a9de67adc062a5e0f774edf49e300cf",
    "actions.outcomes": "a68a4396867aeb2321bb1af7e3bbe6abb03ed5a06729fcfb582a604d3c2a51e7",
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
