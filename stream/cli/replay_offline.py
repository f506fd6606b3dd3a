"""``intentstream replay FILE --offline --out DECISIONS.jsonl [--outcomes OUTCOMES.jsonl]``:
what a policy would have sent, and what each decision achieved.

The whole engine in-process on event time, with the in-memory store: the same
:class:`~intentstream.stream.engine.offline.OfflineRunner` (simulated partitions, end-of-file watermark) as
``intentstream segments``, so the decisions equal the live worker's for the same input
and settings. Every decision — sent, deferred, suppressed, holdout — is written in the
output contract, one JSON object per line, in the order the engines made them;
``--outcomes`` writes the outcome records (``actions.outcomes``) of every decision
whose attribution window closed before the end of the input.
Malformed lines are counted on stderr (and written to ``--dead-letter FILE``), never
fatal; the exit status is 0 when the file was read through. Same input and config,
byte-identical output. Input far out of event-time order stops it (status 2) unless
``--sort`` or ``--allow-disorder`` (:mod:`intentstream.stream.cli.offline_files`).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from intentstream.stream import codec
from intentstream.stream.cli.offline_files import drive, offline_runner, summary
from intentstream.stream.cli.tables import Block, Table
from intentstream.stream.cli.terminal import error, os_message
from intentstream.stream.outcomes.record import is_measured
from intentstream.stream.settings import load_settings


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    runner = offline_runner(args, settings, args.partitions)
    by_outcome: Counter[tuple[str, str, str]] = Counter()
    started = time.perf_counter()
    outcomes: Counter[tuple[str, str]] = Counter()

    def tally(topic: str, payload: bytes) -> None:
        o = codec.loads(payload)
        arm = o["experiment"]["arm"] if is_measured(o) else "unmeasured"
        outcomes[(o["trigger"], arm)] += 1
        outcomes[(o["trigger"], arm + ":converted")] += o["converted"]

    also = {settings.topics.outcomes: args.outcomes} if getattr(args, "outcomes", None) else None
    try:
        seen: set[str] = set()
        for payload in drive(args, runner, settings.topics.audit, also=also, seen=tally):
            d = codec.loads(payload)
            if "correction" in d:  # see README, "The decision contract": corrections
                by_outcome[(d["trigger"], "correction", d["correction"]["reason"])] += 1
            elif d["action_id"] in seen:  # a deferred decision released or cancelled
                by_outcome[(d["trigger"], "released" if d["status"] == "sent" else d["status"], d["reason"] or "-")] += 1
            else:
                seen.add(d["action_id"])
                by_outcome[(d["trigger"], d["status"], d["reason"] or "-")] += 1
    except FileNotFoundError as exc:
        return error("replay", os_message(exc))
    more: list[Block] = []
    if by_outcome:
        rows: list[tuple[str, ...]] = [(trigger, status, reason, str(n)) for (trigger, status, reason), n in sorted(by_outcome.items())]
        more.append(Table(("trigger", "status", "reason", "count"), rows, widths=(24, 11, 12, 7), right=(3,), indent=2))
    if outcomes:
        arms = ("treatment", "holdout", "unmeasured")
        rows = [(t, *(f"{outcomes[(t, a + ':converted')]}/{outcomes[(t, a)]}" for a in arms)) for t in sorted({t for t, _ in outcomes})]
        more.append(Table(("trigger", *arms), rows, right=(1, 2, 3), indent=2, sep="  ",
                          title="  outcomes of the decisions whose window closed (converted/records)"))  # fmt: skip
    summary(runner, time.perf_counter() - started, more=more)
    return 0
