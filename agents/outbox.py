"""Publishing the engine's outputs exactly once in effect.

The engine never sends anything itself: every output (a closed segment, a dead-letter
record, a decision) is written to a per-partition *outbox* in the same atomic Redis
write as the state that produced it. This module moves the outbox to Kafka:

1. send every pending item, each to an explicit partition (Kafka's murmur2 of its key,
   so it lands where a keyed send would) and with its deterministic id in the
   ``intentstream-id`` header; wait for every acknowledgement (acks=all);
2. ack the items in Redis together with the output offsets just written.

A kill -9 between 1 and 2 leaves items that are on Kafka *and* in the outbox. So after a
restart, before the first flush of a partition, :func:`already_published` reads each
output partition the outbox targets from the offset recorded at the last ack to its end
and drops the items whose id is already there. Only this partition's owner writes
these ids, and the previous owner is gone, so the check is exact.

On a replicated cluster it reads up to the high watermark: a send the dead owner left on
the leader but not yet on every in-sync replica is invisible to it, and would go out
again if it became visible later. That needs a follower that is alive but has not copied
it for the whole takeover (the group's session timeout, 10 s, and more) while still
counted in sync (``replica.lag.time.max.ms``, 30 s by default); a dead follower leaves the
ISR once the controllers fence it (6-9 s). Transactions would close this gap (a new owner's
``init_transactions`` aborts what the old one left); the fault tests do not reach it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, Iterable, Mapping

from kafka import KafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

ID_HEADER = "intentstream-id"


def already_published(
    kafka_options: Mapping[str, Any],
    items: Iterable[tuple[str, str, int]],
    since: Mapping[tuple[str, int], int],
    timeout_s: float = 30.0,
) -> set[str]:
    """Ids among ``items`` ((id, topic, partition)) already on their output partition.

    ``since`` maps (topic, partition) to the first offset that may hold them (the end
    offset recorded at the last successful flush; 0 when nothing was ever recorded).
    """
    wanted: dict[tuple[str, int], set[str]] = defaultdict(set)
    for item_id, topic, partition in items:
        wanted[(topic, partition)].add(item_id)
    if not wanted:
        return set()
    found: set[str] = set()
    consumer = KafkaConsumer(
        **kafka_options,
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
    )
    try:
        tps = [TopicPartition(t, p) for t, p in wanted]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        pending = set()
        for tp in tps:
            start = since.get((tp.topic, tp.partition), 0)
            if start < ends[tp]:
                consumer.seek(tp, start)
                pending.add(tp)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox recovery could not read {sorted(map(str, pending))} in {timeout_s}s")
            batches = consumer.poll(timeout_ms=500, max_records=2000)
            for tp, records in batches.items():
                ids = wanted[(tp.topic, tp.partition)]
                for rec in records:
                    for name, value in rec.headers or ():
                        if name == ID_HEADER and value.decode() in ids:
                            found.add(value.decode())
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
            for tp in list(pending):
                if consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        consumer.close()
    if found:
        log.info("outbox recovery: %d item(s) were already published before the restart", len(found))
    return found
