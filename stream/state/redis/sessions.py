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

Redis Cluster (a ``RedisCluster`` client, ``[redis] url = "redis+cluster://..."``): user
keys hash to many slots, so one MULTI cannot span a step. The same class then commits
through a write-ahead journal in the partition's slot (the commit point), then the user
states, then due index and meta; readers lay a journal not yet finished over what they
read, and ``MGET`` becomes one ``MGET`` per slot. Write order, per-slot reads and what a
kill -9 between two slot writes leaves: :mod:`intentstream.stream.state.redis.journal`.
Everything else (outbox acks, the due index, the ledger's scripts) already stays within
one slot and runs unchanged.

TTLs: user state keys expire ``[sessions] user_ttl_days`` after their last write
(idle users vanish; a user silent longer comes back as a new user). Partition keys
do not expire. Times inside the state are event times; TTLs only collect garbage.

Connection failures and timeouts raise :class:`~intentstream.stream.state.StoreUnavailable`
(never swallowed): retry the whole step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar, cast

from intentstream.stream.settings import Settings, default_settings
from intentstream.stream.state.redis import keys
from intentstream.stream.state.redis.client import UNAVAILABLE, Client, is_cluster, make_client
from intentstream.stream.state.redis.journal import ClusterCommits, queue_partition_writes, queue_user_writes
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

    def __init__(self, client: Client, prefix: str, user_ttl_s: int | None = None, *, wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        self.client = client
        self.prefix = prefix
        self.user_ttl_ms = (_user_ttl_s(default_settings()) if user_ttl_s is None else user_ttl_s) * 1000
        # the journal protocol on a Redis Cluster (``wait_*``: [redis] wait_replicas, its
        # WAIT); None: one MULTI per step
        self.cluster = None
        if is_cluster(client):
            self.cluster = ClusterCommits(client, prefix, self.user_ttl_ms, wait_replicas=wait_replicas, wait_timeout_ms=wait_timeout_ms)

    @classmethod
    def from_settings(cls, settings: Settings, prefix: str | None = None) -> RedisSessionStore:
        r = settings.redis
        return cls(
            make_client(r), prefix if prefix is not None else r.key_prefix, _user_ttl_s(settings),
            wait_replicas=r.wait_replicas, wait_timeout_ms=r.wait_timeout_ms,
        )  # fmt: skip

    def ledger(self) -> RedisLedgerStore:
        return RedisLedgerStore(self.client, self.prefix)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    def load_partition(self, partition: int) -> PartitionMeta:
        if self.cluster is not None:
            return self._call(lambda: self.cluster.load_meta(partition))  # type: ignore[union-attr]
        return PartitionMeta.load(self._call(lambda: cast("bytes | None", self.client.get(keys.partition_meta(self.prefix, partition)))))

    def load_users(self, partition: int, user_ids: Iterable[str]) -> dict[str, bytes]:
        users = list(user_ids)
        if not users:
            return {}
        names = [keys.user_state(self.prefix, u) for u in users]
        cluster = self.cluster
        if cluster is None:
            values = self._call(lambda: cast("list[bytes | None]", self.client.mget(names)))
            return {u: v for u, v in zip(users, values) if v is not None}
        values = self._call(lambda: cast("list[bytes | None]", self.client.mget_nonatomic(names)))  # type: ignore[union-attr]  # one MGET per slot
        found = {u: v for u, v in zip(users, values) if v is not None}
        return self._call(lambda: cluster.overlay_users(partition, found, users))

    def due_users(self, partition: int, until_ms: int) -> list[str]:
        cluster = self.cluster
        if cluster is not None:
            overlaid = self._call(lambda: cluster.overlay_dues(partition, until_ms))
            if overlaid is not None:
                return overlaid
        key = keys.partition_due(self.prefix, partition)
        members = self._call(lambda: cast("list[bytes]", self.client.zrangebyscore(key, "-inf", until_ms)))
        return [m.decode() for m in members]

    def commit(self, partition: int, batch: CommitBatch) -> None:
        if self.cluster is not None:
            self._call(lambda: self.cluster.commit(partition, batch))  # type: ignore[union-attr]
            return
        pipe = self.client.pipeline(transaction=True)
        queue_user_writes(pipe, self.prefix, batch, self.user_ttl_ms)
        queue_partition_writes(pipe, self.prefix, partition, batch, outbox=True, rest=True)
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
