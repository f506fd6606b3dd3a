"""Redis :class:`~intentstream.stream.state.lease.WriterLease`: the key ``P:{pers}:writer``
and the fenced persona store (Lua scripts).

* ``SET P:{pers}:writer <token> NX PX ttl`` takes the lease; :meth:`RedisWriterLease.renew`
  is a compare-and-set script (``PEXPIRE`` only if the value is still the token),
  :meth:`RedisWriterLease.release` a compare-and-delete script.
* :class:`FencedRedisPersonaStore` writes the same keys, with the same encodings, as
  :class:`~intentstream.stream.state.redis.personas.RedisPersonaStore`, but each write is
  one Lua script that first checks the lease still holds its token; otherwise
  :class:`~intentstream.stream.state.lease.LeaseLost`.

Blocking calls (redis-py); the writer runs them in a thread. Redis Cluster: the fenced
scripts touch the lease, checkpoint, labels and users keys together; they share the hash
tag ``{pers}`` (:mod:`~intentstream.stream.state.redis.keys`), so one slot, and the same
code runs on a standalone Redis and a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from intentstream.stream.state.lease import LeaseLost, new_token
from intentstream.stream.state.redis.keys import users_key, writer_lease_key
from intentstream.stream.state.redis.personas import RedisPersonaStore, assignment_batches, label_fields

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# KEYS: lease, checkpoint, labels. ARGV: token, checkpoint bytes, label field, value, ...
_SAVE_CHECKPOINT = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[2], ARGV[2])
redis.call('del', KEYS[3])
if #ARGV > 2 then redis.call('hset', KEYS[3], unpack(ARGV, 3)) end
return 1
"""
# KEYS: lease, users buckets. ARGV: token, then for each bucket in KEYS order: n, then n
# (user, cluster) pairs.
_SET_ASSIGNMENTS = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
local i = 2
for k = 2, #KEYS do
  local n = tonumber(ARGV[i])
  redis.call('hset', KEYS[k], unpack(ARGV, i + 1, i + 2 * n))
  i = i + 1 + 2 * n
end
return 1
"""


class RedisWriterLease:
    """The single-writer lease of the persona keys under ``key_prefix``: a Redis string
    holding the holder's token, with a TTL."""

    def __init__(self, client: Any, key_prefix: str, ttl_s: float, owner: str) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.key = writer_lease_key(key_prefix)
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.owner = owner
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def try_acquire(self) -> str | None:
        token = new_token(self.owner)
        return token if self.client.set(self.key, token, nx=True, px=self.ttl_ms) else None

    def renew(self, token: str) -> bool:
        return bool(self._renew(keys=[self.key], args=[token, self.ttl_ms]))

    def release(self, token: str) -> bool:
        return bool(self._release(keys=[self.key], args=[token]))

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    def fenced_store(self, token: str) -> FencedRedisPersonaStore:
        return FencedRedisPersonaStore(self.client, self.key_prefix, self.key, token)


class FencedRedisPersonaStore(RedisPersonaStore):
    """:class:`RedisPersonaStore` whose writes succeed only while ``token`` holds the lease
    (one Lua script per write: check the lease, then write); otherwise
    :class:`~intentstream.stream.state.lease.LeaseLost`. Readers and the key layout are
    unchanged."""

    def __init__(self, client: Any, key_prefix: str, lease_key: str, token: str, *, batch: int = 1000) -> None:
        super().__init__(client, key_prefix, batch=batch)
        self.lease_key = lease_key
        self.token = token
        self._save = client.register_script(_SAVE_CHECKPOINT)
        self._assign = client.register_script(_SET_ASSIGNMENTS)

    def save_checkpoint(self, checkpoint: bytes, labels: Mapping[int, Mapping[str, str]]) -> None:
        args: list[Any] = [self.token, checkpoint]
        for field, value in label_fields(labels).items():
            args += [field, value]
        if not self._save(keys=[self.lease_key, self.ckpt_key, self.labels_key], args=args):
            raise LeaseLost("checkpoint refused: the lease is held by another writer")

    def set_assignments(self, assignments: Mapping[str, int]) -> None:
        for batch in assignment_batches(assignments, self.batch):
            keys = [self.lease_key]
            args: list[Any] = [self.token]
            for bucket, fields in batch.items():
                keys.append(users_key(self.key_prefix, bucket))
                args.append(len(fields))
                for user, cluster in fields.items():
                    args += [user, cluster]
            if not self._assign(keys=keys, args=args):
                raise LeaseLost("users' clusters refused: the lease is held by another writer")
