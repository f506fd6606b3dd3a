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

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from intentstream.stream import codec
from intentstream.stream.state.redis.client import make_client
from intentstream.stream.state.redis.keys import all_users_keys, checkpoint_key, labels_key, user_bucket, users_key


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
