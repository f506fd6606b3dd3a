"""Reading a topic without a consumer group (``tail``, ``stats``): assign its partitions,
start some records before their ends, and tell when the ends captured at the start are
reached. The consumer comes from :func:`intentstream.agents.kafka.make_consumer`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class TopicNotFound(LookupError):
    """The topic, or the partition asked for, does not exist (or is not readable)."""


def assign_partitions(consumer: Any, topic: str, partition: int | None = None) -> list[Any]:
    """Assign the topic's partitions (or one of them) to the consumer; their TopicPartitions."""
    from kafka import TopicPartition

    found = sorted(consumer.partitions_for_topic(topic) or ())
    if not found:
        raise TopicNotFound(f"topic {topic!r} does not exist (or is not readable)")
    if partition is not None:
        if partition not in found:
            raise TopicNotFound(f"topic {topic!r} has no partition {partition} (it has 0-{found[-1]})")
        found = [partition]
    tps = [TopicPartition(topic, p) for p in found]
    consumer.assign(tps)
    return tps


def seek_last(consumer: Any, tps: list[Any], last: int | None) -> dict[Any, int]:
    """Seek each partition ``last`` records before its end (None: the beginning).

    Returns the end offsets captured now: where a non-following read stops."""
    begin = consumer.beginning_offsets(tps)
    end = consumer.end_offsets(tps)
    for tp in tps:
        start = begin[tp] if last is None else max(begin[tp], end[tp] - last)
        consumer.seek(tp, start)
    return end


def reached(consumer: Any, end: Mapping[Any, int]) -> bool:
    """True once every partition's position is at or past its captured end offset."""
    return all(consumer.position(tp) >= offset for tp, offset in end.items())
