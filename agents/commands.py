"""CLI subcommands that talk to Kafka: ``topics`` and ``worker``."""

from __future__ import annotations

import argparse

from intentstream.stream.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topics", help="create the product's Kafka topics (explicit partition counts; idempotent)")
    p.set_defaults(func=run_topics)
    p = sub.add_parser("worker", help="run the Faust worker: clickstream -> sessions -> segments -> actions")
    p.add_argument("--loglevel", help="override [worker] log_level")
    p.set_defaults(func=run_worker)


def run_topics(args: argparse.Namespace) -> int:
    from intentstream.agents.admin import ensure_topics

    settings = load_settings(args.config)
    for name, outcome in sorted(ensure_topics(settings).items()):
        print(f"{name:<24} {outcome}")
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from intentstream.agents.worker import run

    return run(load_settings(args.config), loglevel=args.loglevel)
