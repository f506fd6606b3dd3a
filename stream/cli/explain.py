"""``intentstream explain USER_ID --input CLICKSTREAM.jsonl [--config FILE] [--partitions N] [--format text|html] [--out FILE] [--json]``:
why did this user get this?

Runs the clickstream through the offline engine — the
:class:`~intentstream.stream.engine.offline.OfflineRunner` with the settings and
simulated partitions of ``replay --offline``, so the decisions are those the live worker
made — and prints the user's timeline in event-time order: their events, segments and
behaviour persona, the trigger timers, and every decision with each check that shaped
it and its outcome (:mod:`intentstream.stream.explain`). Text by default; ``--format
html`` a self-contained page; ``--json`` the machine form.

Exit status: 0; 1 when the input knows nothing of the user; 2 when the input cannot be
read (or is too far out of event-time order, see ``--sort``).
"""

from __future__ import annotations

import argparse
import sys

from intentstream.stream import codec
from intentstream.stream.cli import positive_int
from intentstream.stream.cli.offline_files import add_order_args, offline_runner, open_input
from intentstream.stream.explain.html import render_html
from intentstream.stream.explain.story import explain
from intentstream.stream.explain.text import render_text
from intentstream.stream.explain.trace import trace_offline
from intentstream.stream.settings import load_settings


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.explain_config or args.config)
    runner = offline_runner(args, settings, args.partitions)
    try:
        with open_input(args.input, args.sort) as lines:
            trace = trace_offline(lines, args.user_id, settings, runner, source=f"{args.input}, offline engine, {runner.partitions} partitions")
    except OSError as exc:
        print(f"explain: cannot read {args.input}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not trace.known:
        print(f"explain: no events or decisions for user {args.user_id!r} in {args.input}", file=sys.stderr)
        return 1
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
        description="Run a clickstream through the offline engine (as replay --offline) and print one user's "
        "timeline: events, segments, persona, trigger timers, and every decision with its checks "
        "(consent, cooldown, quiet hours, send time, channel and global caps, holdout, policy, fallback) and outcome.",
    )
    p.add_argument("user_id", help="the user to explain")
    p.add_argument("--input", required=True, metavar="CLICKSTREAM.jsonl", help="the clickstream (JSONL; - for standard input)")
    p.add_argument("--config", dest="explain_config", metavar="FILE", help="settings override file (TOML), as for replay --offline")
    p.add_argument("--partitions", type=positive_int, metavar="N", help="simulated partitions (default: [topics] partitions)")
    p.add_argument("--format", choices=("text", "html"), default="text", help="text (default) or a self-contained HTML page")
    p.add_argument("--json", action="store_true", help="the machine form (JSON) instead of --format")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    add_order_args(p)
    p.set_defaults(func=run)
