"""``intentstream personas``: run the personas single writer standalone.

Consumes every partition of the ``segments`` topic into the persona model while it holds
the single-writer lease (``agents/personas.py``); otherwise waits as hot standby. Runs
until SIGTERM or SIGINT, then writes a final checkpoint, releases the lease and exits 0.
Exit status 2 when the stored checkpoint was made with other model settings (see
``docs/personas.md``: delete it deliberately to start over).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from intentstream.stream.cli.terminal import error
from intentstream.stream.settings import Settings, load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "personas",
        help="run the personas single writer: segments topic -> persona model -> Redis (lease; others wait as standby)",
    )
    p.add_argument("--owner", help="this writer's name in the lease (default: host:pid)")
    p.add_argument("--loglevel", help="override [worker] log_level")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    level = (args.loglevel or settings.worker.log_level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return asyncio.run(serve(settings, owner=args.owner))


async def serve(settings: Settings, owner: str | None = None) -> int:
    from intentstream.agents.personas import PersonaWriter
    from intentstream.stream.personas.checkpoint import CheckpointError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    writer = PersonaWriter(settings, owner=owner)
    try:
        await writer.run(stop)
    except CheckpointError as exc:
        return error("personas", exc)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    c = writer.counters
    print(
        f"personas writer {writer.owner}: {c['learned']} segments learned, {c['malformed']} malformed, "
        f"{c['checkpoints']} checkpoints, {c['terms']} lease terms, {c['lease_lost']} lost",
        file=sys.stderr,
    )
    return 0
