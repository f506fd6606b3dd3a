"""Redis :class:`~intentstream.stream.state.personas.PersonaStore`: the personas agent's checkpoint and the
users' cluster personas that trigger workers read.

Key layout (``stream/state/redis/keys.py``; ``P`` = ``[redis] key_prefix``):

``P:{pers}:ckpt``       string, the latest ``PersonaModel.checkpoint()`` (model + statistics)
``P:{pers}:users:<b>``  hash, user_id -> cluster id of the user's cluster persona (decimal
                        text), for the users of bucket ``b = keys.user_bucket(user_id)``
``P:{pers}:labels``     hash, cluster id -> JSON ``{"stage", "urgency", "activity", "zh", "en"}``

One hash tag, so the same code runs on a Redis Cluster: the transaction and the fenced
scripts below touch several of these keys in one slot. Reads of many users are one
pipelined ``HMGET`` per bucket they fall in.

Single writer: only the personas agent writes (River models cannot be merged, so one
process learns; see :mod:`intentstream.stream.personas.service`). A checkpoint and its labels are written in
one MULTI/EXEC transaction, so readers never see labels of another model state. Users'
clusters are written in pipelined HSET batches as they change, possibly ahead of the
checkpoint; after a restart the agent replays the segments after the checkpoint and
writes the same values again (learning is deterministic). The writer itself writes
through :class:`intentstream.stream.state.redis.lease.FencedRedisPersonaStore` (the same
keys and encodings, each write a Lua script fenced by the single-writer lease).

Trust: the checkpoint holds a pickle; this store is the product's own Redis, written only
by the personas agent. Do not point it at a Redis others can write to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from intentstream.stream import codec
from intentstream.stream.state.redis.client import is_cluster, make_client
from intentstream.stream.state.redis.keys import (
    all_users_keys, checkpoint_key, labels_key, legacy_persona_keys, user_bucket, users_key,
)  # fmt: skip

log = logging.getLogger("intentstream.personas")


def label_fields(labels: Mapping[int, Mapping[str, str]]) -> dict[str, bytes]:
    """The labels hash's fields: cluster id (decimal text) -> JSON label, by cluster id."""
    return {str(c): codec.dumps(dict(v)) for c, v in sorted(labels.items())}


def assignment_batches(assignments: Mapping[str, int], size: int) -> Iterator[dict[int, dict[str, str]]]:
    """The users hashes' fields (bucket -> user -> cluster id as decimal text), at most
    ``size`` users a batch.

    >>> list(assignment_batches({"alice": 1, "bob": 2, "carol": 3}, 2))
    [{64: {'bob': '2'}, 71: {'alice': '1'}}, {195: {'carol': '3'}}]
    """
    items = sorted(assignments.items(), key=lambda uc: user_bucket(uc[0]))
    for i in range(0, len(items), size):
        batch: dict[int, dict[str, str]] = {}
        for u, c in items[i : i + size]:
            batch.setdefault(user_bucket(u), {})[u] = str(c)
        yield batch


class RedisPersonaStore:
    """:class:`~intentstream.stream.state.personas.PersonaStore` on a ``redis.Redis`` client (bytes or str replies)."""

    def __init__(self, client: Any, key_prefix: str, *, batch: int = 1000) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.batch = batch
        self.ckpt_key = checkpoint_key(key_prefix)
        self.labels_key = labels_key(key_prefix)

    @classmethod
    def from_settings(cls, settings: Any) -> RedisPersonaStore:  # settings: intentstream.stream.settings.Settings
        return cls(make_client(settings.redis), settings.redis.key_prefix)

    def close(self) -> None:
        self.client.close()

    # -- writer ---------------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: bytes, labels: Mapping[int, Mapping[str, str]]) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.ckpt_key, checkpoint)
        pipe.delete(self.labels_key)
        if labels:
            pipe.hset(self.labels_key, mapping=label_fields(labels))
        pipe.execute()

    def set_assignments(self, assignments: Mapping[str, int]) -> None:
        if not assignments:
            return
        pipe = self.client.pipeline(transaction=False)
        for batch in assignment_batches(assignments, self.batch):
            for bucket, fields in batch.items():
                pipe.hset(users_key(self.key_prefix, bucket), mapping=fields)
        pipe.execute()

    def delete_all(self) -> None:
        """Forget the model and every assignment (start over deliberately)."""
        self.client.delete(self.ckpt_key, self.labels_key, *all_users_keys(self.key_prefix))

    # -- readers --------------------------------------------------------------------------

    def load_checkpoint(self) -> bytes | None:
        data = self.client.get(self.ckpt_key)
        if data is None:
            return None
        return data if isinstance(data, bytes) else data.encode("latin-1")

    def get_assignment(self, user_id: str) -> int | None:
        value = self.client.hget(users_key(self.key_prefix, user_bucket(user_id)), user_id)
        return None if value is None else int(value)

    def get_assignments(self, user_ids: Iterable[str]) -> list[int | None]:
        ids = list(user_ids)
        if not ids:
            return []
        by_bucket: dict[int, list[str]] = {}
        for u in ids:
            by_bucket.setdefault(user_bucket(u), []).append(u)
        pipe = self.client.pipeline(transaction=False)
        for bucket, users in by_bucket.items():
            pipe.hmget(users_key(self.key_prefix, bucket), users)
        found: dict[str, int] = {}
        for users, values in zip(by_bucket.values(), pipe.execute()):
            found.update((u, int(v)) for u, v in zip(users, values) if v is not None)
        return [found.get(u) for u in ids]

    def get_labels(self) -> dict[int, dict[str, str]]:
        raw = self.client.hgetall(self.labels_key)
        return {int(c): codec.loads(v) for c, v in raw.items()}


def migrate_legacy_personas(client: Any, prefix: str, *, batch: int = 1000) -> int | None:
    """Move the personas written before the ``{pers}`` key layout (``P:pers:ckpt``,
    ``P:pers:labels``, the single ``P:pers:users`` hash) to today's keys, so an upgraded
    deployment keeps its model, its labels and every user's persona instead of learning
    again from whatever the ``segments`` topic still holds. The writer calls it once per
    term, holding the lease, before it restores the checkpoint.

    Safe at every line: (1) the users are copied into their buckets (HSCAN in batches,
    HSET: the same values however often it runs); (2) one MULTI/EXEC sets the new
    checkpoint and labels and deletes the three old keys. A kill between the two repeats
    (1), then does (2); after (2) nothing is left to do. Skipped when the new checkpoint
    exists already (the old keys are then left alone, with a warning: something of the
    old version wrote after the migration) and on a Redis Cluster (the old layout never
    ran there). Returns how many users moved, or None when there was nothing to move."""
    ckpt, labels, users = legacy_persona_keys(prefix)
    if is_cluster(client) or not client.exists(ckpt):
        return None
    if client.exists(checkpoint_key(prefix)):
        log.warning("personas: keys of the old layout (%s, %s, %s) beside today's checkpoint: left alone", ckpt, labels, users)
        return None
    moved = 0
    cursor = 0
    while True:
        cursor, fields = client.hscan(users, cursor, count=batch)
        if fields:
            pipe = client.pipeline(transaction=False)
            for bucket, chunk in _by_bucket(fields).items():
                pipe.hset(users_key(prefix, bucket), mapping=chunk)
            pipe.execute()
            moved += len(fields)
        if int(cursor) == 0:
            break
    checkpoint, old_labels = client.get(ckpt), client.hgetall(labels)
    pipe = client.pipeline(transaction=True)
    pipe.set(checkpoint_key(prefix), checkpoint)
    pipe.delete(labels_key(prefix))
    if old_labels:
        pipe.hset(labels_key(prefix), mapping=old_labels)
    pipe.delete(ckpt, labels, users)
    pipe.execute()
    log.info("personas: moved the model, %d labels and %d users' personas from the old key layout", len(old_labels), moved)
    return moved


def _by_bucket(fields: Mapping[Any, Any]) -> dict[int, dict[Any, Any]]:
    out: dict[int, dict[Any, Any]] = {}
    for user, cluster in fields.items():
        out.setdefault(user_bucket(user.decode("utf-8", "surrogatepass") if isinstance(user, bytes) else user), {})[user] = cluster
    return out
