"""``intentstream backtest HISTORY.jsonl --candidate CAND.toml``: two policies, one history.

Runs the offline engine (:mod:`intentstream.stream.cli.offline_files`, the same runner as
``replay --offline``) over the history once per policy — two passes over the file, so
memory holds the decisions and the engine's per-user state, never the history — and prints what each policy decided and
the difference (:mod:`intentstream.stream.outcomes.backtest`): decisions by trigger ×
channel × final status, users affected, fatigue-cap, quiet-hours and holdout hits, the
users whose decisions differ with examples and, with ``--uplift TABLE.json`` (from
``intentstream uplift --format json``), each policy's expected incremental conversions.

A policy file is a settings override file in the ``--config`` format holding only the
keys that change (``[fatigue] channel_cap = 2``, ``[strategies] catalogue =
"other.toml"``; relative paths are read from the current directory, as with
``--config``). It is laid over the current settings — defaults, ``--config``, the
environment — and wins over all three: the file is the change being tested. Without
``--baseline`` the baseline is the current settings themselves.

A missing input, policy or table file is one line on stderr and exit status 2, as is a
bad policy file; input far out of event-time order stops it unless ``--sort`` or
``--allow-disorder``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from intentstream.stream import codec
from intentstream.stream.cli import non_negative_int, positive_int
from intentstream.stream.cli import tables
from intentstream.stream.cli.offline_files import add_order_args, offline_runner, open_input, summary
from intentstream.stream.cli.tables import Block, Table
from intentstream.stream.cli.terminal import error
from intentstream.stream.decisions.strategies import CatalogueError, catalogue_from_settings
from intentstream.stream.outcomes.backtest import COUNTS, EXAMPLES, FinalDecision, compare, final_decisions
from intentstream.stream.outcomes.uplift import UpliftTable
from intentstream.stream.settings import Settings, SettingsError, load_settings, overlay

FORMATS = ("text", "md", "json")

#: How each count is named in the text and Markdown reports.
COUNT_LABELS = {
    "decisions": "decisions",
    "sent": "sent (final)",
    "users": "users with a decision",
    "users_sent": "users sent a message",
    "fatigue_cap": "fatigue-cap hits (suppressed/fatigue_cap)",
    "quiet_hours": "quiet-hours hits (deferred/quiet_hours)",
    "holdout": "holdout decisions",
    "fallbacks": "re-routed to a fallback channel",
    "corrected": "corrected (goal reported late)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backtest",
        help="run two policies (settings override files) on the same history and compare their decisions",
        description="Replay a JSONL history through the offline engine under a baseline and a candidate "
        "policy and print the difference: decisions by trigger x channel x final status, caps, quiet hours, "
        "holdouts, the users whose decisions differ and, with --uplift, expected incremental conversions.",
    )
    p.add_argument("file", metavar="HISTORY.jsonl", help="JSONL clickstream (a file: it is read once per policy)")
    p.add_argument("--candidate", required=True, metavar="CAND.toml", help="the policy to test: a settings override file")
    p.add_argument("--baseline", metavar="BASE.toml", help="the policy to compare with (default: the current settings)")
    p.add_argument("--uplift", metavar="UPLIFT.json", help="an uplift table (intentstream uplift --format json): "
                   "estimate each policy's incremental conversions")  # fmt: skip
    p.add_argument("--examples", type=non_negative_int, default=EXAMPLES, metavar="N",
                   help="users whose decisions differ to show (default %(default)s)")  # fmt: skip
    p.add_argument("--format", choices=FORMATS, default=FORMATS[0], help="output format (default %(default)s)")
    p.add_argument("--out", metavar="FILE", help="write the report here (default: standard output)")
    p.add_argument("--partitions", type=positive_int, help="simulated Kafka partitions (default: [topics] partitions)")
    add_order_args(p)
    p.set_defaults(func=run)


def with_policy(settings: Settings, path: str | Path) -> Settings:
    """``settings`` with the override file ``path`` laid over it, merged and validated as
    :func:`~intentstream.stream.settings.load_settings` merges and validates its file
    (tables merge key by key; an unknown key is a
    :class:`~intentstream.stream.settings.SettingsError`).

    >>> from intentstream.stream.settings import default_settings
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
    ...     _ = fh.write("[fatigue]\\nchannel_cap = 1\\nholdout_shares = { churn_risk = 0.2 }\\n")
    >>> s = with_policy(default_settings(), fh.name); os.unlink(fh.name)
    >>> s.fatigue.channel_cap, s.fatigue.holdout_shares["churn_risk"], s.fatigue.window_s == default_settings().fatigue.window_s
    (1, 0.2, True)
    """
    return overlay(settings, path)


def replay(args: argparse.Namespace, settings: Settings, name: str) -> list[FinalDecision]:
    """One pass over the history under ``settings``: its decisions in their final state.
    The run's counts go to stderr, prefixed with ``name``."""
    runner = offline_runner(args, settings, args.partitions)
    runner.source = args.file
    audit_topic = settings.topics.audit
    started = time.perf_counter()
    with open_input(args.file, args.sort, progress="backtest: ") as lines:
        audit = [codec.loads(payload) for topic, payload in runner.run(lines) if topic == audit_topic]
    summary(runner, time.perf_counter() - started, prefix=f"{name}: ")
    return final_decisions(audit)


def run(args: argparse.Namespace) -> int:
    if args.file == "-" or not Path(args.file).is_file():
        why = "must be a file (it is read once per policy)" if args.file == "-" else "no such file"
        return error("backtest", f"{args.file}: {why}")
    try:
        current = load_settings(args.config)
        base = with_policy(current, args.baseline) if args.baseline else current
        cand = with_policy(current, args.candidate)
        table = load_table(args.uplift) if args.uplift else None
        for settings in (base, cand):  # a bad catalogue fails now, not after the first pass
            catalogue_from_settings(settings)
    except (SettingsError, CatalogueError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        return error("backtest", exc)
    labels = {
        "baseline": args.baseline or ("current settings" + (f" ({args.config})" if args.config else "")),
        "candidate": args.candidate,
    }
    baseline, candidate = replay(args, base, "baseline"), replay(args, cand, "candidate")
    result = compare(baseline, candidate, table=table, examples=args.examples, labels=labels)
    result["history"] = args.file
    if args.format == "json":
        text = codec.dumps(result).decode()
    elif args.format == "md":
        text = render_markdown(result)
    elif not args.out or args.out == "-":  # rich tables on a terminal, else render_text's bytes
        tables.write(text_blocks(result))
        return 0
    else:
        text = render_text(result)
    if args.out and args.out != "-":
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return 0


def load_table(path: str) -> UpliftTable:
    """The :class:`~intentstream.stream.outcomes.uplift.UpliftTable` saved at ``path``
    (ValueError naming the file when it is not one)."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return UpliftTable.from_dict(codec.loads(data))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not an uplift table (intentstream uplift --format json): {exc!r}") from exc


# --------------------------------------------------------------------------- rendering


def _n(value: float) -> str:
    return f"{value:+d}" if isinstance(value, int) else f"{value:+.2f}"


def _decision(d: Mapping[str, Any]) -> str:
    status = d["status"] + (f"/{d['reason']}" if d["reason"] else "")
    return f"{d['decided_at']} {d['trigger']} {d['channel']} {status}"


def _uplift_lines(u: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(label, baseline, candidate, difference) rows of the expected-conversion table."""
    b, c, d = u["baseline"], u["candidate"], u["difference"]
    return [
        ("expected incremental conversions", f"{b['estimate']:.2f}", f"{c['estimate']:.2f}", _n(d["estimate"])),
        ("crude bound, low", f"{b['low']:.2f}", f"{c['low']:.2f}", _n(d["low"])),
        ("crude bound, high", f"{b['high']:.2f}", f"{c['high']:.2f}", _n(d["high"])),
        ("sends estimated", str(b["sends_estimated"]), str(c["sends_estimated"]), _n(c["sends_estimated"] - b["sends_estimated"])),
        ("sends not estimated (no row with enough data)", str(b["sends_not_estimated"]), str(c["sends_not_estimated"]),
         _n(d["sends_not_estimated"])),
    ]  # fmt: skip


def render_text(r: Mapping[str, Any]) -> str:
    """The report as plain text (fixed-width tables)."""
    return "\n".join(tables.plain(text_blocks(r)))


def text_blocks(r: Mapping[str, Any]) -> list[Block]:
    """The text report's lines and tables (rich tables on a terminal, else :func:`render_text`)."""
    pb, pc, diff = r["policies"]["baseline"], r["policies"]["candidate"], r["difference"]
    policies = ("baseline", "candidate", "difference")
    out: list[Block] = [f"backtest of {r['history']}", f"  baseline:  {pb['source']}", f"  candidate: {pc['source']}", ""]
    counts = [(COUNT_LABELS[k], str(pb["counts"][k]), str(pc["counts"][k]), _n(diff["counts"][k])) for k in COUNTS]
    out.append(Table(("", *policies), counts, widths=(44, 9, 9, 10), right=(1, 2, 3)))
    if diff["reasons"]:
        reasons = [(reason, str(pb["reasons"].get(reason, 0)), str(pc["reasons"].get(reason, 0)), _n(d)) for reason, d in diff["reasons"].items()]
        out += ["", Table(("final reason", *policies), reasons, widths=(42, 9, 9, 10), right=(1, 2, 3), indent=2, header=False, title="final reasons")]
    rows = [(row["trigger"], row["channel"], row["status"], str(row["baseline"]), str(row["candidate"]), _n(row["difference"])) for row in diff["rows"]]
    out += ["", Table(("trigger", "channel", "status", *policies), rows, widths=(24, 8, 10, 9, 9, 10), right=(3, 4, 5), indent=2,
                      title="decisions by trigger x channel x final status")]  # fmt: skip
    out += ["", f"users whose decisions differ: {r['users_differ']}"]
    for ex in r["examples"]:
        out.append(f"  {ex['user_id']}")
        for name in ("baseline", "candidate"):
            out.append(f"    {name}:")
            out += [f"      {_decision(d)}" for d in ex[name]] or ["      (no decision)"]
    if r["uplift"]:
        out += ["", Table(("", *policies), _uplift_lines(r["uplift"]), widths=(48, 9, 9, 10), right=(1, 2, 3), indent=2,
                          title=f"expected incremental conversions ({r['uplift']['baseline']['label']})")]  # fmt: skip
    out += ["", "what a backtest can and cannot tell"]
    out += [f"  - {c}" for c in r["caveats"]]
    return out


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|")


def render_markdown(r: Mapping[str, Any]) -> str:
    """The report as Markdown."""
    pb, pc, diff = r["policies"]["baseline"], r["policies"]["candidate"], r["difference"]
    out = [f"# Backtest of `{_md(r['history'])}`", "", f"- baseline: `{_md(pb['source'])}`",
           f"- candidate: `{_md(pc['source'])}`", "", "| | baseline | candidate | difference |", "|---|---:|---:|---:|"]  # fmt: skip
    for k in COUNTS:
        out.append(f"| {COUNT_LABELS[k]} | {pb['counts'][k]} | {pc['counts'][k]} | {_n(diff['counts'][k])} |")
    if diff["reasons"]:
        out += ["", "## Final reasons", "", "| reason | baseline | candidate | difference |", "|---|---:|---:|---:|"]
        for reason, d in diff["reasons"].items():
            out.append(f"| {reason} | {pb['reasons'].get(reason, 0)} | {pc['reasons'].get(reason, 0)} | {_n(d)} |")
    out += ["", "## Decisions by trigger × channel × final status", "",
            "| trigger | channel | status | baseline | candidate | difference |", "|---|---|---|---:|---:|---:|"]  # fmt: skip
    for row in diff["rows"]:
        out.append(f"| {row['trigger']} | {row['channel']} | {row['status']} | {row['baseline']} | {row['candidate']} | {_n(row['difference'])} |")
    out += ["", "## Users whose decisions differ", "", f"{r['users_differ']} users."]
    for ex in r["examples"]:
        out += ["", f"**{_md(ex['user_id'])}**", ""]
        for name in ("baseline", "candidate"):
            out.append(f"- {name}: " + ("; ".join(f"`{_decision(d)}`" for d in ex[name]) or "no decision"))
    if r["uplift"]:
        out += ["", "## Expected incremental conversions", "", f"*{r['uplift']['baseline']['label']}*", "",
                "| | baseline | candidate | difference |", "|---|---:|---:|---:|"]  # fmt: skip
        out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _uplift_lines(r["uplift"])]
    out += ["", "## What a backtest can and cannot tell", ""]
    out += [f"- {c}" for c in r["caveats"]]
    return "\n".join(out)
