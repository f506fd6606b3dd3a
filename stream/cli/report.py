"""``intentstream report``: the persona report, one section per cluster, zh or en, md or html.

From the live model (the personas agent's checkpoint in Redis) by default, or offline
from ``--input`` (a clickstream, read like ``segments`` reads it: ``--sort``,
``--allow-disorder``) or ``--segments`` (closed segments); see
:mod:`intentstream.stream.report`. The same model gives byte-identical output.
``--outcomes OUTCOMES.jsonl`` (outcome records, e.g. ``replay --offline --outcomes``)
adds a "triggers & uplift" part to every cluster: its users' decisions, sends,
conversion rates and uplift per trigger (:mod:`intentstream.stream.report.triggers`);
without it the report is unchanged.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack

from intentstream.stream.cli.offline_files import add_order_args, offline_runner, open_input
from intentstream.stream.cli.terminal import error, os_message
from intentstream.stream.cli.uplift import OutcomeReader
from intentstream.stream.report.html import render_html
from intentstream.stream.report.markdown import render_markdown
from intentstream.stream.report.model import build_report
from intentstream.stream.report.sources import learn, live_model, read_segments, segments_from_clickstream
from intentstream.stream.report.text import LANGS
from intentstream.stream.report.triggers import cluster_uplift
from intentstream.stream.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="persona report per cluster with strategies (zh/en, markdown/html)",
        description="Persona report: one section per cluster with key features and strategies. "
        "From the live model (Redis checkpoint) by default, or offline from --input/--segments.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", metavar="FILE.jsonl", help="clickstream: sessionize and learn it offline")
    src.add_argument("--segments", metavar="SEG.jsonl", help="closed segments (intentstream segments output): learn them")
    p.add_argument("--lang", choices=LANGS, default="zh", help="report language (default zh)")
    p.add_argument("--format", choices=("md", "html"), default="md", help="markdown or self-contained HTML (default md)")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--outcomes", metavar="OUTCOMES.jsonl",
                   help="outcome records (replay --offline --outcomes): add each cluster's triggers and their uplift")  # fmt: skip
    p.add_argument(
        "--min-users", type=int, metavar="K",
        help="fold clusters with fewer users into 'other / small clusters' "
        "(default: max([personas] report_min_users, report_min_user_share x users))",
    )  # fmt: skip
    add_order_args(p.add_argument_group("with --input"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.sort or args.allow_disorder) and not args.input:
        return error("report", "--sort and --allow-disorder only apply with --input")
    settings = load_settings(args.config)
    started = time.perf_counter()
    with ExitStack() as stack:
        try:
            # opened first: a missing outcomes file fails before the model is learned
            outcome_lines = stack.enter_context(open_input(args.outcomes, sort=False)) if args.outcomes else None
            if args.input:
                with open_input(args.input, args.sort, progress="report: ") as lines:
                    model = learn(segments_from_clickstream(lines, settings, offline_runner(args, settings)), settings.personas)
            elif args.segments:
                with open_input(args.segments, sort=False) as lines:
                    model = learn(read_segments(lines), settings.personas)
            else:
                model = live_model(settings)
        except (OSError, ValueError, LookupError) as exc:
            return error("report", os_message(exc) if isinstance(exc, OSError) else exc)
        uplift = None
        if outcome_lines is not None:
            reader = OutcomeReader()
            uplift = cluster_uplift(model, reader.records(outcome_lines), settings.outcomes)
            reader.summary("report")
    learned = time.perf_counter()
    rep = build_report(model, lang=args.lang, min_users=args.min_users, uplift=uplift, settings=settings.report)
    text = render_html(rep) if args.format == "html" else render_markdown(rep)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    print(
        f"report: {len(rep.clusters)} clusters (+{len(rep.small)} small) for {rep.users} users, "
        f"{model.segments_seen} segments; model {learned - started:.2f}s, report {time.perf_counter() - learned:.3f}s",
        file=sys.stderr,
    )
    return 0
