"""Kafka administration the product needs: creating its topics explicitly, with the
partition counts from the settings. The product never relies on the broker's topic
auto-creation (the local stack turns it off).

Used by ``scripts/stack topics``, the worker at start-up, and the tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError, for_code

from intentstream.agents.kafka import admin_client
from intentstream.agents.topic_names import ACTION_CHANNELS
from intentstream.stream.settings import Settings

log = logging.getLogger(__name__)

CREATED = "created"
EXISTS = "exists"


def product_topics(settings: Settings) -> dict[str, int]:
    """Every topic the product reads or writes, with its partition count.

    >>> from intentstream.stream.settings import load_settings
    >>> sorted(product_topics(load_settings(env={})))[:4]
    ['actions.audit', 'actions.coupon', 'actions.email', 'actions.in_app']
    """
    t = settings.topics
    names = [
        t.clickstream,
        t.dead_letter,
        t.segments,
        *(t.actions_prefix + channel for channel in ACTION_CHANNELS),
        t.audit,
        t.outcomes,
        t.metrics,
        t.alerts,
    ]
    return {name: t.partitions for name in names}


def ensure_topics(
    settings: Settings,
    names_and_partitions: Mapping[str, int] | Iterable[tuple[str, int]] | Iterable[str] | None = None,
    *,
    replication_factor: int | None = None,
    configs: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    admin: KafkaAdminClient | None = None,
) -> dict[str, str]:
    """Create the topics that do not exist yet and wait until every one has a leader.

    ``names_and_partitions`` is a mapping or pairs of topic name to partition count, or
    bare names (which get ``settings.topics.partitions``); by default every topic of
    :func:`product_topics`. Returns ``{name: "created" | "exists"}``. An existing topic
    is left as it is; one with a different partition count is logged as a warning.
    """
    wanted = _normalise(settings, names_and_partitions)
    if not wanted:
        return {}
    rf = replication_factor if replication_factor is not None else settings.topics.replication_factor
    own_admin = admin is None
    admin = admin or admin_client(settings)
    try:
        request = {
            name: {"num_partitions": n, "replication_factor": rf, "configs": dict(configs or {})}
            for name, n in wanted.items()
        }
        response = admin.create_topics(request, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        result: dict[str, str] = {}
        for topic in response["topics"]:
            name, code = topic["name"], topic["error_code"]
            if code == 0:
                result[name] = CREATED
            elif code == TopicAlreadyExistsError.errno:
                result[name] = EXISTS
            else:
                err = for_code(code)
                raise err(f"creating topic {name!r}: {topic.get('error_message') or err.__name__}")
        admin.wait_for_topics(list(wanted), timeout_ms=int(timeout_s * 1000))
        existing = [name for name, status in result.items() if status == EXISTS]
        if existing:
            for desc in admin.describe_topics(existing):
                have = len(desc.get("partitions") or ())
                if have != wanted[desc["name"]]:
                    log.warning(
                        "topic %s exists with %d partitions, not the %d configured",
                        desc["name"], have, wanted[desc["name"]],
                    )
        return {name: result.get(name, EXISTS) for name in wanted}
    finally:
        if own_admin:
            admin.close()


def _normalise(settings: Settings, items: Any) -> dict[str, int]:
    if items is None:
        return product_topics(settings)
    pairs: Iterable[tuple[Any, Any]]
    if isinstance(items, Mapping):
        pairs = items.items()
    else:
        pairs = [(item, settings.topics.partitions) if isinstance(item, str) else tuple(item) for item in items]
    out: dict[str, int] = {}
    for name, partitions in pairs:
        if not name or int(partitions) < 1:
            raise ValueError(f"bad topic {name!r} with {partitions!r} partitions")
        out[str(name)] = int(partitions)
    return out
