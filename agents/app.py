"""The Faust application: broker connection (from :mod:`intentstream.agents.kafka`),
product topics, worker HTTP.

Everything here is wiring. Decisions are made in ``stream``; agents only move bytes
between Kafka, Redis and the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from intentstream.agents.kafka import broker_credentials, faust_broker_url
from intentstream.agents.topic_names import ACTION_CHANNELS
from intentstream.stream.settings import Settings


@dataclass(frozen=True)
class Topics:
    """The product's Faust topics, all raw bytes: the engine owns (de)serialization."""

    clickstream: faust.TopicT
    dead_letter: faust.TopicT
    segments: faust.TopicT
    audit: faust.TopicT
    outcomes: faust.TopicT
    metrics: faust.TopicT
    alerts: faust.TopicT
    actions: dict[str, faust.TopicT]

    def by_name(self) -> dict[str, faust.TopicT]:
        named = [self.clickstream, self.dead_letter, self.segments, self.audit, self.outcomes, self.metrics, self.alerts]
        named += list(self.actions.values())
        return {t.get_topic_name(): t for t in named}


def create_app(settings: Settings) -> tuple[faust.App, Topics]:
    """A Faust app configured from settings, and the product's topics declared on it."""
    extra: dict[str, Any] = {"datadir": settings.worker.data_dir} if settings.worker.data_dir else {}
    app = faust.App(
        settings.worker.app_id,
        broker=faust_broker_url(settings.kafka),
        broker_credentials=broker_credentials(settings.kafka),
        store="memory://",  # live state is in Redis, not in Faust tables
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=settings.worker.web_enabled,
        web_port=settings.worker.web_port,
        web_bind=settings.worker.web_bind,
        web_host=settings.worker.web_bind,
        broker_commit_interval=settings.worker.commit_interval_s,
        **extra,
        broker_session_timeout=settings.worker.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.worker.session_timeout_s / 3),
    )
    t = settings.topics

    def topic(name: str) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=t.partitions,
            internal=False,  # created by intentstream.agents.admin.ensure_topics, never auto-created
        )

    topics = Topics(
        clickstream=topic(t.clickstream),
        dead_letter=topic(t.dead_letter),
        segments=topic(t.segments),
        audit=topic(t.audit),
        outcomes=topic(t.outcomes),
        metrics=topic(t.metrics),
        alerts=topic(t.alerts),
        actions={ch: topic(f"{t.actions_prefix}{ch}") for ch in ACTION_CHANNELS},
    )
    return app, topics
