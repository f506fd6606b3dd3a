"""``intentstream explain USER_ID (--input CLICKSTREAM.jsonl [--partitions N] | --live [--since AGE]) [--config FILE] [--format text|html] [--out FILE] [--json]``:
why did this user get this?

Runs the clickstream through the offline engine — the
:class:`~intentstream.stream.engine.offline.OfflineRunner` with the settings and
simulated partitions of ``replay --offline``, so the decisions are those the live worker
made — and prints the user's timeline in event-time order: their events, segments and
behaviour persona, the trigger timers, and every decision with each check that shaped
it and its outcome (:mod:`intentstream.stream.explain`). Text by default; ``--format
html`` a self-contained page; ``--json`` the machine form.

``--live`` answers from the running system instead (:mod:`intentstream.stream.explain.live`):
the user's records on the ``segments``, ``actions.audit`` and ``actions.outcomes`` topics
and their clickstream events of the last ``--since`` (default 30d, before the partition's
watermark), read from the one partition the user's key goes to; and the user's state in
Redis (pending timers, held messages, cap counters, cooldowns), printed last as "now".

Exit status: 0; 1 when the input (or Kafka and Redis) knows nothing of the user; 2 when
the input cannot be read (or is too far out of event-time order, see ``--sort``), or
Kafka or Redis cannot be reached.
"""

from __future__ import annotations

import argparse
import sys

from intentstream.stream import codec
from intentstream.stream.cli import positive_int
from intentstream.stream.cli.offline_files import add_order_args, offline_runner, open_input
from intentstream.stream.cli.terminal import error
from intentstream.stream.explain.html import render_html
from intentstream.stream.explain.story import explain
from intentstream.stream.explain.text import render_text
from intentstream.stream.explain.trace import UserTrace, trace_offline
from intentstream.stream.settings import Settings, load_settings


def _age(text: str) -> int:
    from intentstream.stream.explain.live import parse_age

    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _trace(args: argparse.Namespace, settings: Settings) -> UserTrace | int:
    """The user's trace, or the exit status after a one-line message."""
    if args.live:
        from intentstream.stream.explain.live import LiveUnavailable, trace_live

        try:
            trace = trace_live(settings, args.user_id, args.since)
        except LiveUnavailable as exc:
            return error("explain", exc)
        where = "Kafka or Redis"
    else:
        runner = offline_runner(args, settings, args.partitions)
        try:
            with open_input(args.input, args.sort) as lines:
                trace = trace_offline(lines, args.user_id, settings, runner, source=f"{args.input}, offline engine, {runner.partitions} partitions")
        except OSError as exc:
            return error("explain", f"cannot read {args.input}: {exc.strerror or exc}")
        where = args.input
    if not trace.known:
        return error("explain", f"no events or decisions for user {args.user_id!r} in {where}", status=1)
    return trace


def run(args: argparse.Namespace) -> int:
    if bool(args.input) == bool(args.live):
        return error("explain", "give --input CLICKSTREAM.jsonl or --live (one of them)")
    settings = load_settings(args.explain_config or args.config)
    trace = _trace(args, settings)
    if isinstance(trace, int):
        return trace
    ex = explain(trace, settings)
    if args.json:
        body = codec.dumps(ex.to_dict()) + b"\n"
    else:
        body = (render_html(ex) if args.format == "html" else render_text(ex)).encode()
    if args.out in (None, "-"):
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    else:
        with open(args.out, "wb") as fh:
            fh.write(body)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="why did this user get this? one user's events, timers and decisions with every check",
        description="Run a clickstream through the offline engine (as replay --offline), or read the running system "
        "(--live: Kafka and Redis), and print one user's timeline: events, segments, persona, trigger timers, and every "
        "decision with its checks (consent, cooldown, quiet hours, send time, channel and global caps, holdout, policy, "
        "fallback) and outcome; live, also the user's state now (pending timers, held messages, cap counters, cooldowns).",
    )
    p.add_argument("user_id", help="the user to explain")
    p.add_argument("--input", metavar="CLICKSTREAM.jsonl", help="the clickstream (JSONL; - for standard input)")
    p.add_argument("--live", action="store_true",
                   help="read the user's records from the audit, outcomes, segments and clickstream topics and their state from Redis")  # fmt: skip
    p.add_argument("--since", type=_age, default="30d", metavar="AGE",
                   help="with --live: clickstream events of this age before the partition's watermark (7d, 36h; default 30d)")  # fmt: skip
    p.add_argument("--config", dest="explain_config", metavar="FILE", help="settings override file (TOML), as for replay --offline")
    p.add_argument("--partitions", type=positive_int, metavar="N", help="simulated partitions (default: [topics] partitions)")
    p.add_argument("--format", choices=("text", "html"), default="text", help="text (default) or a self-contained HTML page")
    p.add_argument("--json", action="store_true", help="the machine form (JSON) instead of --format")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    add_order_args(p)
    p.set_defaults(func=run)
