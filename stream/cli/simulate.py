"""``intentstream simulate``: the engine in a closed loop with simulated users who react to
the messages they get (:mod:`intentstream.stream.simulate`).

Writes, into ``--out-dir``: ``clickstream.jsonl`` (every event the users produced,
their reactions included, in event-time order), ``decisions.jsonl`` (the
``actions.audit`` records), ``outcomes.jsonl`` (the ``actions.outcomes`` records),
``alerts.jsonl`` (the engine's own ``ops.alerts`` records: the ROI guard) and
``truth.json`` (the planted world and the true effects on the treated); prints a summary
with each trigger's measured uplift per send beside its true value. The same arguments
give byte-identical files.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from intentstream.stream import codec
from intentstream.stream.cli import positive_int, tables
from intentstream.stream.cli.progress import Progress
from intentstream.stream.cli.tables import Block, Table
from intentstream.stream.cli.terminal import error
from intentstream.stream.settings import SettingsError
from intentstream.stream.simulate.calibration import Check, checks
from intentstream.stream.simulate.loop import SimulationResult, simulate
from intentstream.stream.simulate.truth import build_truth
from intentstream.stream.simulate.world import DAY_MS, WorldError, engine_settings, load_world

FILES = ("clickstream.jsonl", "decisions.jsonl", "outcomes.jsonl", "alerts.jsonl", "truth.json")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="run the engine in a closed loop with simulated users who react to its messages; write the planted truth",
        description="Run the engine in-process against simulated users who live planted journeys and react to the "
        "messages they receive (config/simulation.toml); write the clickstream, the decisions, the outcomes and "
        "the planted truth. The same arguments give byte-identical files.",
    )
    p.add_argument("--users", type=positive_int, required=True, help="number of simulated users")
    p.add_argument("--days", type=positive_int, required=True, help="days of planned journeys (after day 0, the history)")
    p.add_argument("--seed", type=int, required=True, help="random seed (every draw is a hash of it)")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="where the four files go (created if missing)")
    # SUPPRESS: without the option here, `intentstream --config FILE simulate ...` still counts
    p.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE", help="engine settings override file (TOML), as `intentstream --config`")
    p.add_argument("--world", metavar="FILE", help="simulation override file (TOML, only the keys it changes) over config/simulation.toml")
    p.add_argument("--partitions", type=positive_int, help="simulated partitions (default: [topics] partitions)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        world = load_world(args.world)
        settings = engine_settings(world, args.config)
    except (WorldError, SettingsError) as exc:
        return error("simulate", exc)
    started = time.perf_counter()
    # simulated days done, of the history day and the planned ones (reactions may run on)
    shown = Progress(sys.stderr, label="simulate: ", unit="days", total=args.days + 1)
    first_ms = world.start_ms - DAY_MS
    res = simulate(world, settings, args.users, args.days, args.seed, args.partitions,
                   on_step=lambda ms: shown.update(min((ms - first_ms) // DAY_MS, args.days + 1)))  # fmt: skip
    shown.finish()
    elapsed = time.perf_counter() - started
    outcomes = res.outcome_records()
    truth = build_truth(
        world, seed=args.seed, users=res.users, days=args.days, end_ms=res.end_ms,
        audit=res.audit_records(), outcomes=outcomes, reactions=res.reactions,
    )  # fmt: skip
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "clickstream.jsonl").write_bytes(b"".join(res.clickstream))
    (out / "decisions.jsonl").write_bytes(b"".join(res.decisions))
    (out / "outcomes.jsonl").write_bytes(b"".join(res.outcomes))
    (out / "alerts.jsonl").write_bytes(b"".join(res.alerts))
    (out / "truth.json").write_bytes(codec.dumps_line(truth))
    trig, zero = checks(truth, outcomes, min_per_arm=settings.outcomes.min_per_arm, confidence=settings.outcomes.confidence)
    tables.write(summary(res, truth, trig, zero, elapsed, settings.outcomes.confidence, out))
    return 0


def _interval(c: Check) -> str:
    if c.estimate is None or c.low is None or c.high is None:
        return "not enough data"
    return f"{c.estimate:+.3f} [{c.low:+.3f}, {c.high:+.3f}]"


def summary(
    res: SimulationResult, truth: Mapping[str, Any], trig: list[Check], zero: list[Check], elapsed: float, confidence: float, out: Path
) -> list[Block]:
    """The printed summary: volumes, interference, reactions, and measured against true
    uplift (a table: rich on a terminal, fixed-width text elsewhere)."""
    c, r, i = res.counters, res.reactions, truth["interference"]
    events = len(res.clickstream)
    lines: list[Block] = [
        f"simulated {truth['users']} users x {truth['days']} days (seed {truth['seed']}): {events:,} events "
        f"({c['planned_events']:,} planned, {c['reaction_events']:,} reactions) in {elapsed:.1f} s ({events / max(elapsed, 1e-9):,.0f} events/s)",
        f"{i['decisions']:,} decisions, {len(res.outcomes):,} outcomes ({truth['decisions_without_outcome']} decisions without one); "
        f"late events {c['late']}, dead-lettered {c['invalid']}",
        f"interference: {i['other_trigger_during_world']} decisions of another trigger than the user's journey during the "
        f"world, {i['other_trigger_after_world']} after it (everyone goes silent when the world ends: churn_risk)",
        f"reactions: {r['opens']:,} opens, {r['clicks']:,} clicks, {r['dismissals']:,} dismissals, {r['conversions']:,} conversions "
        f"({r['conversion_clamped']} conversions and {r['feedback_clamped']} feedback events clamped to the loop's clock, "
        f"{r['conversion_outside_window']} outside their window)",
        "",
    ]
    rows = [
        (ch.key["trigger"], str(ch.treatment), str(ch.holdout), str(ch.sent), "-" if ch.truth is None else f"{ch.truth:+.3f}", "", _interval(ch), COVERS[ch.covered])
        for ch in trig
    ]  # fmt: skip
    # the empty column: two blanks before the interval, as the plain text always had
    heads = ("trigger", "treatment", "holdout", "sent", "true effect", "", f"uplift per send [{confidence:.0%} interval]", "covers")
    lines.append(Table(heads, rows, widths=(24, 9, 7, 6, 11, 0, 31, None), right=(1, 2, 3, 4), rstrip=True))
    for ch in zero:
        cell = "/".join(ch.key[k] for k in ("trigger", "strategy", "channel"))
        lines.append(f"planted to do nothing: {cell}: {_interval(ch)}, covers 0: {COVERS[ch.covered]}")
    lines += ["", "wrote " + ", ".join(str(out / f) for f in FILES)]
    return lines


COVERS = {True: "yes", False: "NO", None: "-"}
