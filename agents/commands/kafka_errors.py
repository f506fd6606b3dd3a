"""A Kafka failure in an operator command: one line on standard error and exit status 1,
not a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from intentstream.stream.cli.terminal import error
from intentstream.stream.settings import Settings


def with_kafka_errors(command: str, settings: Settings, fn: Callable[[], Any]) -> Any:
    """``fn()``, or exit status 1 with a one-line message when Kafka fails (no traceback)."""
    from kafka.errors import KafkaError

    try:
        return fn()
    except KafkaError as exc:
        return error(command, f"Kafka at {settings.kafka.bootstrap_servers}: {type(exc).__name__}: {exc}", status=1)
