"""Redis :class:`~intentstream.stream.state.sessions.SessionStore` (redis-py). Keys: :mod:`intentstream.stream.state.redis.keys`.

Round trips per engine step: ``ZRANGEBYSCORE`` on the due index, one ``MGET`` of the
user states the engine does not hold in its cache, and one ``MULTI … EXEC`` commit:

1. ``SET P:{u:<user>}:ses <state> PX <user_ttl>`` for every changed user (the state
   carries the highest input offset applied to it);
2. ``ZADD``/``ZREM P:{p:<n>}:due`` for changed due times;
3. ``HSET P:{p:<n>}:outbox <id> <entry>`` for new outbox entries;
4. ``SET P:{p:<n>}:meta`` (highest input offset, watermark, outbox sequence) last.

On a standalone Redis (or a primary with its replicas) the transaction is all or
nothing, so a kill -9 anywhere leaves either the old or the new state. ``EXEC`` is
atomic on the server; if the client dies or the reply is lost, the outcome is unknown
to the caller, which is why the engine reloads meta after any error and relies on
offsets.

Redis Cluster: user keys hash to many slots, so one MULTI cannot span them (and MGET
neither). What still holds with per-slot writes in the order 3, 1, 2, 4 above
(outbox first, meta last): each user's state is written atomically with its own
``hi`` offset, so a redelivered event is skipped per user even if the partition meta
was not written; outbox entries are keyed by deterministic id, so re-adding one is
idempotent; due entries are rewritten for every user read from the store, so a lost
``ZADD`` heals on the user's next event or flush. Not covered there: outbox sequence
numbers of a step whose meta was lost are handed out again, so the agent must publish
and ack the outbox it finds on restart before the next step (it does: recovery first).
This module implements the standalone flavour (one transaction); a cluster flavour
needs only that write order and per-slot GETs instead of MGET.

TTLs: user state keys expire ``[sessions] user_ttl_days`` after their last write
(idle users vanish; a user silent longer comes back as a new user). Partition keys
do not expire. Times inside the state are event times; TTLs only collect garbage.

Connection failures and timeouts raise :class:`~intentstream.stream.state.StoreUnavailable`
(never swallowed): retry the whole step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar, cast

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from intentstream.stream.settings import Settings, default_settings
from intentstream.stream.state.redis import keys
from intentstream.stream.state.redis.client import make_client
from intentstream.stream.state.redis.fatigue import RedisLedgerStore
from intentstream.stream.state.sessions import CommitBatch, OutboxEntry, PartitionMeta, StoreUnavailable

T = TypeVar("T")
# The client's replies are bytes (``make_client`` leaves ``decode_responses`` off); redis-py
# types a reply as ``bytes | str`` whatever the client, hence the casts of the readers below.


def _user_ttl_s(settings: Settings) -> int:
    return settings.sessions.user_ttl_days * 86400


class RedisSessionStore:
    """Session state in Redis; ``prefix`` namespaces every key (tests use unique ones).
    ``user_ttl_s`` None: ``[sessions] user_ttl_days`` of
    :func:`~intentstream.stream.settings.default_settings`."""

    holds_states = False  # commits carry serialised states

    def __init__(self, client: redis.Redis, prefix: str, user_ttl_s: int | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.user_ttl_ms = (_user_ttl_s(default_settings()) if user_ttl_s is None else user_ttl_s) * 1000

    @classmethod
    def from_settings(cls, settings: Settings, prefix: str | None = None) -> RedisSessionStore:
        r = settings.redis
        return cls(make_client(r), prefix if prefix is not None else r.key_prefix, _user_ttl_s(settings))

    def ledger(self) -> RedisLedgerStore:
        return RedisLedgerStore(self.client, self.prefix)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    def load_partition(self, partition: int) -> PartitionMeta:
        return PartitionMeta.load(self._call(lambda: cast("bytes | None", self.client.get(keys.partition_meta(self.prefix, partition)))))

    def load_users(self, partition: int, user_ids: Iterable[str]) -> dict[str, bytes]:
        users = list(user_ids)
        if not users:
            return {}
        values = self._call(lambda: cast("list[bytes | None]", self.client.mget([keys.user_state(self.prefix, u) for u in users])))
        return {u: v for u, v in zip(users, values) if v is not None}

    def due_users(self, partition: int, until_ms: int) -> list[str]:
        key = keys.partition_due(self.prefix, partition)
        members = self._call(lambda: cast("list[bytes]", self.client.zrangebyscore(key, "-inf", until_ms)))
        return [m.decode() for m in members]

    def commit(self, partition: int, batch: CommitBatch) -> None:
        prefix, ttl = self.prefix, self.user_ttl_ms
        pipe = self.client.pipeline(transaction=True)
        for user, data in batch.users.items():
            pipe.set(keys.user_state(prefix, user), data, px=ttl)
        due_key = keys.partition_due(prefix, partition)
        add = {u: d for u, d in batch.dues.items() if d is not None}
        remove = [u for u, d in batch.dues.items() if d is None]
        if add:
            pipe.zadd(due_key, add)
        if remove:
            pipe.zrem(due_key, *remove)
        if batch.outbox:
            pipe.hset(keys.partition_outbox(prefix, partition), mapping={e.id: e.dump() for e in batch.outbox})
        pipe.set(keys.partition_meta(prefix, partition), batch.meta.dump())
        self._call(pipe.execute)

    def outbox(self, partition: int) -> list[OutboxEntry]:
        raw = self._call(lambda: cast("dict[bytes, bytes]", self.client.hgetall(keys.partition_outbox(self.prefix, partition))))
        return sorted((OutboxEntry.load(v) for v in raw.values()), key=lambda e: e.seq)

    def ack_outbox(self, partition: int, ids: Iterable[str], output_offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        ids = list(ids)
        if not ids and not output_offsets:
            return
        pipe = self.client.pipeline(transaction=True)
        if ids:
            pipe.hdel(keys.partition_outbox(self.prefix, partition), *ids)
        if output_offsets:
            pipe.hset(keys.partition_output_offsets(self.prefix, partition), mapping={f"{t}:{p}": off for (t, p), off in output_offsets.items()})
        self._call(pipe.execute)

    def output_offsets(self, partition: int) -> dict[tuple[str, int], int]:
        raw = self._call(lambda: cast("dict[bytes, bytes]", self.client.hgetall(keys.partition_output_offsets(self.prefix, partition))))
        out = {}
        for k, v in raw.items():
            topic, _, p = k.decode().rpartition(":")
            out[(topic, int(p))] = int(v)
        return out

    # -- introspection for tests and benchmarks --

    def user_bytes(self, user_id: str) -> bytes | None:
        return self._call(lambda: cast("bytes | None", self.client.get(keys.user_state(self.prefix, user_id))))

    def memory_usage(self, user_id: str) -> int | None:
        """``MEMORY USAGE`` of the user's state key (bytes, with Redis's overhead)."""
        return self._call(lambda: self.client.memory_usage(keys.user_state(self.prefix, user_id), samples=0))
