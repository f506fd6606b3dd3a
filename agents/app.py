"""The Faust application: broker connection, product topics, worker HTTP.

Everything here is wiring. Decisions are made in ``stream``; agents only move bytes
between Kafka, Redis and the engine.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import faust

from intentstream.stream.settings import KafkaSettings, Settings

#: Channels that get an outbound topic ``<actions_prefix><channel>``.
ACTION_CHANNELS = ("push", "sms", "email", "in_app", "coupon")


@dataclass(frozen=True)
class Topics:
    """The product's Faust topics, all raw bytes: the engine owns (de)serialization."""

    clickstream: faust.TopicT
    dead_letter: faust.TopicT
    segments: faust.TopicT
    audit: faust.TopicT
    metrics: faust.TopicT
    alerts: faust.TopicT
    actions: dict[str, faust.TopicT]

    def by_name(self) -> dict[str, faust.TopicT]:
        named = [self.clickstream, self.dead_letter, self.segments, self.audit, self.metrics, self.alerts]
        named += list(self.actions.values())
        return {t.get_topic_name(): t for t in named}


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context for SSL / SASL_SSL, or None."""
    if kafka.security_protocol.upper() not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=kafka.ssl_cafile or None)
    if kafka.ssl_certfile:
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile or None)
    return context


def aiokafka_options(settings: Settings, client: str) -> dict[str, Any]:
    """Connection options (SASL/TLS as Faust's) for the aiokafka clients the worker runs
    beside Faust: the outbox producer, the persona writer's consumer, the ops producer."""
    k = settings.kafka
    opts: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in k.bootstrap_servers.split(",") if s.strip()],
        "security_protocol": k.security_protocol,
        "client_id": f"{settings.worker.app_id}-{client}",
    }
    context = ssl_context(k)
    if context is not None:
        opts["ssl_context"] = context
    if k.sasl_mechanism:
        opts.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username, sasl_plain_password=k.sasl_password)
    return opts


def broker_credentials(kafka: KafkaSettings) -> Any:
    """Faust credentials for SASL and/or TLS, or None for PLAINTEXT."""
    protocol = kafka.security_protocol.upper()
    context = ssl_context(kafka)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_app(settings: Settings) -> tuple[faust.App, Topics]:
    """A Faust app configured from settings, and the product's topics declared on it."""
    servers = ";".join(s.strip() for s in settings.kafka.bootstrap_servers.split(",") if s.strip())
    extra: dict[str, Any] = {"datadir": settings.worker.data_dir} if settings.worker.data_dir else {}
    app = faust.App(
        settings.worker.app_id,
        broker=f"kafka://{servers}",
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
        metrics=topic(t.metrics),
        alerts=topic(t.alerts),
        actions={ch: topic(f"{t.actions_prefix}{ch}") for ch in ACTION_CHANNELS},
    )
    return app, topics
