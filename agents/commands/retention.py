"""Whether a replayed file outlives the target topic's time retention: the broker applies
``retention.ms`` to the record timestamps, which ``replay --to-kafka`` sets to the event
times, so the records of an old file can disappear at the next retention check."""

from __future__ import annotations

from intentstream.agents.kafka import admin_client
from intentstream.stream.contract.events import format_ts
from intentstream.stream.settings import Settings


def topic_retention_ms(settings: Settings, topic: str) -> int | None:
    """The topic's effective ``retention.ms`` (None if unknown, -1 for unlimited)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = admin_client(settings)
    try:
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=["retention.ms"])], config_filter="all"
        )
        entry = found.get("topic", {}).get(topic, {}).get("retention.ms") or {}
        return int(entry["value"]) if entry.get("value") is not None else None
    except Exception:  # advisory only: never fail a replay over it
        return None
    finally:
        admin.close()


def retention_warning(topic: str, oldest_ts_ms: int | None, retention_ms: int | None, now_ms: int) -> str | None:
    """A warning when replayed event times (the oldest: ``oldest_ts_ms``) are older than
    ``topic`` keeps records.

    >>> retention_warning("t", 0, 86_400_000, 2 * 86_400_000)[:40]
    'warning: the oldest event time (1970-01-'
    >>> retention_warning("t", 0, -1, 2 * 86_400_000) is None
    True
    """
    if oldest_ts_ms is None or retention_ms is None or retention_ms < 0:
        return None
    if oldest_ts_ms >= now_ms - retention_ms:
        return None
    return (
        f"warning: the oldest event time ({format_ts(oldest_ts_ms)}) is older than topic "
        f"{topic}'s retention.ms={retention_ms}; the broker deletes such records at its next "
        f"retention check. Replay historical files into a topic with retention.ms=-1 (or larger)."
    )
