"""``intentstream worker``: run the Faust worker (:mod:`intentstream.agents.worker`):
clickstream -> sessions -> segments -> actions, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse

from intentstream.stream.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run the Faust worker: clickstream -> sessions -> segments -> actions")
    p.add_argument("--loglevel", help="override [worker] log_level")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentstream.agents.worker import run as run_worker

    return run_worker(load_settings(args.config), loglevel=args.loglevel)
