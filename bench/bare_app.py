"""The baseline of the worker benchmark: a bare Faust agent that only consumes and parses.

Same Faust app as ``intentstream worker`` (:func:`intentstream.agents.app.create_app`: broker, topic
declarations, partitions, offset reset, commit interval, web server), same batching
(``take_events([worker] batch_size, within=[worker] batch_within_s)``), and each message
goes through :func:`intentstream.stream.contract.events.parse_event` — but no engine, no Redis, no outbox, no
personas writer. Configured by the same settings and environment overrides.

    INTENTSTREAM_TOPICS__CLICKSTREAM=... INTENTSTREAM_WORKER__APP_ID=... python -m bench.bare_app
"""

from __future__ import annotations

import faust

from intentstream.agents.app import create_app
from intentstream.stream.contract.events import Event, parse_event
from intentstream.stream.settings import load_settings


def build() -> faust.App:
    settings = load_settings()
    app, topics = create_app(settings)
    counts = {"events": 0, "invalid": 0}

    @app.agent(topics.clickstream, name="bare")
    async def bare(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.worker.batch_size, within=settings.worker.batch_within_s):
            for ev in events:
                if type(parse_event(ev.message.value)) is Event:
                    counts["events"] += 1
                else:
                    counts["invalid"] += 1

    return app


def main() -> int:
    settings = load_settings()
    app = build()
    worker = faust.Worker(app, loglevel=settings.worker.log_level, override_logging=True)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    main()
