"""``intentstream topics``: create the product's Kafka topics with the partition counts
from the settings (idempotent; :func:`intentstream.agents.admin.ensure_topics`)."""

from __future__ import annotations

import argparse

from intentstream.stream.settings import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topics", help="create the product's Kafka topics (explicit partition counts; idempotent)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentstream.agents.admin import ensure_topics

    settings = load_settings(args.config)
    for name, outcome in sorted(ensure_topics(settings).items()):
        print(f"{name:<24} {outcome}")
    return 0
