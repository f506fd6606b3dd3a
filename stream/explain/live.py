"""One user's trace from the running system: :func:`trace_live` fills the same
:class:`~intentstream.stream.explain.trace.UserTrace` as
:func:`~intentstream.stream.explain.trace.trace_offline`, from Kafka and Redis.

* Kafka (one group-less consumer from :func:`intentstream.agents.kafka.make_consumer`,
  as ``tail`` and ``uplift --from-topic`` read): every output the engine publishes is
  keyed by user, and so is the clickstream, so only the partition Kafka's default
  partitioner gives the key is read
  (:func:`~intentstream.stream.engine.partitioning.partition_for`), up to its end as of
  now, keeping the records with the user's key — ``segments``, ``actions.audit`` and
  ``actions.outcomes`` from the beginning, the clickstream from ``since`` before the
  partition's watermark (its record timestamps are event times: ``offsets_for_times``).
* Redis (the client of :func:`~intentstream.stream.state.redis.client.make_client`): the
  user's engine record (pending trigger timers, held messages, open attribution windows),
  the partition's watermark and the fatigue ledger (deliveries per channel and across
  channels, cooldowns) — :class:`LiveState`, the counters as they stand at the watermark,
  judged by :func:`~intentstream.stream.state.fatigue.window_fits`.

Every failure to reach either is a :class:`LiveUnavailable` naming the address.

>>> parse_age("7d"), parse_age("36h"), parse_age("90m"), parse_age("2w") == 14 * DAY_MS
(604800000, 129600000, 5400000, True)
>>> parse_age("soon")
Traceback (most recent call last):
...
ValueError: not an age: 'soon' (a number and s, m, h, d or w: 7d, 36h)
>>> redacted("redis://:secret@cache:6379/0"), redacted("redis://127.0.0.1:6379")
('redis://cache:6379/0', 'redis://127.0.0.1:6379')
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from intentstream.stream import codec
from intentstream.stream.contract.events import MESSAGE_CHANNELS, Event, format_ts
from intentstream.stream.engine.partitioning import partition_for
from intentstream.stream.engine.user_state import UserState
from intentstream.stream.explain.checks import WindowCount, span
from intentstream.stream.explain.trace import UserTrace
from intentstream.stream.ingest.input_formats import parser_for
from intentstream.stream.settings import Settings
from intentstream.stream.state.fatigue import COUPON_CHANNEL, DAY_MS, HOUR_MS, Limits, window_fits, window_load
from intentstream.stream.state.redis import keys
from intentstream.stream.state.sessions import PartitionMeta
from intentstream.stream.triggers.rules import ALL_TRIGGERS, TIMER_TRIGGER

#: How long a live read may take before it gives up (a broker that answers but stalls).
READ_TIMEOUT_S = 60.0
#: How long to wait for the first broker (kafka-python 3's default is 30 s).
BOOTSTRAP_TIMEOUT_MS = 5000
_UNITS = {"s": 1000, "m": 60_000, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}


class LiveUnavailable(RuntimeError):
    """Kafka or Redis could not be read; the message names the address."""


def parse_age(text: str) -> int:
    """``7d``, ``36h``, ``90m``, ``30s``, ``2w`` in ms."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not m or int(m[1]) <= 0:
        raise ValueError(f"not an age: {text!r} (a number and s, m, h, d or w: 7d, 36h)")
    return int(m[1]) * _UNITS[m[2]]


def redacted(url: str) -> str:
    """The URL without its credentials (for messages)."""
    head, sep, rest = url.partition("://")
    return f"{head}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]


@dataclass(frozen=True)
class LiveState:
    """The user's state in Redis now. ``at``: the partition's watermark (the engine's
    event time; None when the partition has none yet), where the counters are taken;
    ``partition`` and ``applied`` (the highest clickstream offset applied to the user, -1:
    none); ``timers``: (trigger, due, stale) of the pending trigger timers; ``held``:
    (action_id, trigger, channel, send time) of the messages held for later;
    ``watching``: attribution windows still open; ``counts``: per channel (and
    coupon), then across channels; ``cooldowns``: (trigger, started, ends)."""

    found: bool
    partition: int
    at: int | None
    applied: int
    timers: tuple[tuple[str, int, bool], ...]
    held: tuple[tuple[str, str, str | None, int], ...]
    watching: int
    counts: tuple[WindowCount, ...]
    cooldowns: tuple[tuple[str, int, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found, "partition": self.partition, "at": None if self.at is None else format_ts(self.at),
            "applied_offset": self.applied,
            "timers": [{"trigger": t, "due": format_ts(d), "stale": s} for t, d, s in self.timers],
            "held": [{"action_id": a, "trigger": t, "channel": c, "send_at": format_ts(s)} for a, t, c, s in self.held],
            "attribution_windows_open": self.watching,
            "caps": [c.to_dict() for c in self.counts],
            "cooldowns": [{"trigger": t, "since": format_ts(s), "until": format_ts(u)} for t, s, u in self.cooldowns],
        }  # fmt: skip


def _why(exc: Exception) -> str:
    """``Name: message``, the name once."""
    name, text = type(exc).__name__, str(exc).replace("\n", " ")
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _scores(reply: Any) -> list[int]:
    return [int(score) for _, score in reply or ()]


def read_state(client: Any, settings: Settings, user_id: str, partition: int, now_ms: int | None = None) -> LiveState:
    """The user's :class:`LiveState` (one pipelined round trip); ``now_ms``: where the
    counters are taken when the partition has no watermark (default: the wall clock)."""
    prefix = settings.redis.key_prefix
    channels = [*sorted(MESSAGE_CHANNELS), COUPON_CHANNEL]
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.user_state(prefix, user_id))
    pipe.get(keys.partition_meta(prefix, partition))
    for ch in channels:
        pipe.zrange(keys.channel_key(prefix, user_id, ch), 0, -1, withscores=True)
    pipe.zrange(keys.messages_key(prefix, user_id), 0, -1, withscores=True)
    for trigger in ALL_TRIGGERS:
        pipe.get(keys.cooldown_key(prefix, user_id, trigger))
    reply = pipe.execute()
    raw_state, raw_meta = reply[0], reply[1]
    by_channel = {ch: _scores(r) for ch, r in zip(channels, reply[2 : 2 + len(channels)])}
    messages = _scores(reply[2 + len(channels)])
    cooldown_at = dict(zip(ALL_TRIGGERS, reply[3 + len(channels) :]))
    wm = PartitionMeta.load(raw_meta).wm
    at = wm if wm > 0 else None
    t = at if at is not None else int(time.time() * 1000) if now_ms is None else now_ms
    limits = Limits.from_settings(settings.fatigue)
    st = UserState.load(user_id, raw_state) if raw_state else UserState(user_id)
    counts = []
    for ch in channels:
        cap, times = (limits.coupon_cap if ch == COUPON_CHANNEL else limits.channel_cap), by_channel[ch]
        counts.append(WindowCount(ch, window_load(times, t, limits.window_ms), cap, limits.window_ms, window_fits(times, t, limits.window_ms, cap)))
    counts += [WindowCount("all channels", window_load(messages, t, w), cap, w, window_fits(messages, t, w, cap)) for w, cap in limits.global_caps]
    cooldowns = sorted((tr, int(v), int(v) + limits.cooldown_ms) for tr, v in cooldown_at.items() if v is not None)
    return LiveState(
        found=raw_state is not None,
        partition=partition,
        at=at,
        applied=st.hi,
        timers=tuple(sorted(((TIMER_TRIGGER.get(k, k), tm.due_ms, tm.stale) for k, tm in st.trig.timers.items()), key=lambda x: (x[1], x[0]))),
        held=tuple(sorted(((d.action_id, d.trigger, d.channel, d.delivery_at) for d in st.acts.held.values()), key=lambda x: (x[3], x[0]))),
        watching=len(st.outs.entries),
        counts=tuple(counts),
        cooldowns=tuple((tr, s, u) for tr, s, u in cooldowns if u > t),
    )


def _partition_of(consumer: Any, topic: str, key: bytes) -> Any:
    from kafka import TopicPartition

    from intentstream.agents.commands.topic_reading import TopicNotFound

    found = sorted(consumer.partitions_for_topic(topic) or ())
    if not found:
        raise TopicNotFound(f"topic {topic!r} does not exist (or is not readable)")
    return TopicPartition(topic, partition_for(key, len(found)))


def read_topics(
    settings: Settings, user_id: str, since_ms: int | None, on_partition: Any = None, timeout_s: float = READ_TIMEOUT_S,
) -> tuple[dict[str, list[bytes]], int]:  # fmt: skip
    """The values of the user's records (by key) on ``segments``, ``actions.audit``,
    ``actions.outcomes`` and the clickstream, in offset order; and the clickstream
    partition. ``since_ms`` (None: the beginning) bounds the clickstream, or is computed
    by ``on_partition(partition)`` when given."""
    from kafka import KafkaConsumer

    from intentstream.agents.commands.topic_reading import reached
    from intentstream.agents.kafka import make_consumer

    key = user_id.encode()
    tp_names = settings.topics
    fast = {"bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS} if "bootstrap_timeout_ms" in KafkaConsumer.DEFAULT_CONFIG else {}
    consumer = make_consumer(settings, **fast)
    try:
        wanted = [tp_names.segments, tp_names.audit, tp_names.outcomes, tp_names.clickstream]
        tps = {name: _partition_of(consumer, name, key) for name in wanted}
        click = tps[tp_names.clickstream]
        if on_partition is not None:
            since_ms = on_partition(click.partition)
        consumer.assign(list(tps.values()))
        end = consumer.end_offsets(list(tps.values()))
        begin = consumer.beginning_offsets(list(tps.values()))
        for tp in tps.values():
            consumer.seek(tp, begin[tp])
        if since_ms is not None:
            found = consumer.offsets_for_times({click: since_ms}).get(click)
            consumer.seek(click, found.offset if found is not None else end[click])
        out: dict[str, list[bytes]] = {name: [] for name in wanted}
        deadline = time.monotonic() + timeout_s
        while not reached(consumer, end):
            if time.monotonic() > deadline:
                raise LiveUnavailable(f"Kafka at {settings.kafka.bootstrap_servers}: no end of the user's partitions within {timeout_s:g} s")
            for tp, records in consumer.poll(timeout_ms=500).items():
                out[tp.topic].extend(r.value for r in records if r.offset < end[tp] and r.key == key and r.value is not None)
        return out, click.partition
    finally:
        consumer.close()


def trace_live(settings: Settings, user_id: str, since: int = 30 * DAY_MS, redis_client: Any = None) -> UserTrace:
    """The user's trace from Kafka and Redis (see the module docstring); ``since``: how far
    back before the partition's watermark the clickstream is read."""
    import redis
    from kafka.errors import KafkaError

    from intentstream.agents.commands.topic_reading import TopicNotFound
    from intentstream.stream.state.redis.client import make_client

    client = redis_client if redis_client is not None else make_client(settings.redis)
    where = f"Redis at {redacted(settings.redis.url)}"
    state: dict[int, LiveState] = {}

    def at_partition(p: int) -> int:
        try:
            state[p] = read_state(client, settings, user_id, p)
        except redis.RedisError as exc:
            raise LiveUnavailable(f"{where}: {_why(exc)}") from exc
        at = state[p].at
        return (at if at is not None else int(time.time() * 1000)) - since

    try:
        values, partition = read_topics(settings, user_id, None, on_partition=at_partition)
    except (KafkaError, TopicNotFound) as exc:
        raise LiveUnavailable(f"Kafka at {settings.kafka.bootstrap_servers}: {_why(exc)}") from exc
    finally:
        if redis_client is None:
            client.close()
    live = state[partition]
    topics = settings.topics
    begin = live.at - since if live.at is not None else None
    trace = UserTrace(
        user_id,
        source=f"live: Kafka {settings.kafka.bootstrap_servers} partition {partition}, events "
        + (f"since {format_ts(begin)}" if begin is not None else f"of the last {span(since)}")
        + f"; {where.removeprefix('Redis at ')} as of {'-' if live.at is None else format_ts(live.at)}",
        live=live,
    )  # fmt: skip
    parse = parser_for(settings.events.input_format)
    for raw in values[topics.clickstream]:
        ev = parse(raw)
        if type(ev) is Event and ev.user_id == user_id:
            trace.events.append(ev)
    for name in (topics.segments, topics.audit, topics.outcomes):
        for raw in values[name]:
            rec = codec.loads(raw)
            if isinstance(rec, dict) and rec.get("user_id") == user_id:
                trace.add_output(name, rec, settings)
    return trace
