"""In-memory :class:`~intentstream.stream.state.sessions.SessionStore`: the embedded default (offline runner,
demo, tests). Keeps the same bytes as Redis would, so it behaves exactly like it; a
commit is applied in one go, so a "crash" (an exception before ``commit``) leaves the
previous state intact.

>>> store = MemorySessionStore()
>>> store.commit(3, CommitBatch(PartitionMeta(hi=1), dues={"b": 20, "a": 20, "c": 10}))
>>> store.due_users(3, 20), store.due_users(3, 15), store.due_users(0, 99)
(['c', 'a', 'b'], ['c'], [])
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Any

from intentstream.stream.state.memory.fatigue import MemoryLedgerStore
from intentstream.stream.state.sessions import CommitBatch, OutboxEntry, PartitionMeta


class DueIndex:
    """user -> due time, answering "who is due by T" without scanning every user: users
    are bucketed by due minute; buckets are visited in order up to T."""

    def __init__(self) -> None:
        self._due: dict[str, int] = {}
        self._buckets: dict[int, set[str]] = {}
        self._keys: list[int] = []  # sorted bucket keys

    def __len__(self) -> int:
        return len(self._due)

    def set(self, user: str, due: int | None) -> None:
        old = self._due.get(user)
        if due == old:
            return
        if old is not None:
            k = old // 60000
            b = self._buckets[k]
            b.discard(user)
            if not b:
                del self._buckets[k]
                del self._keys[bisect.bisect_left(self._keys, k)]
        if due is None:
            del self._due[user]
            return
        self._due[user] = due
        k = due // 60000
        bucket = self._buckets.get(k)
        if bucket is None:
            bucket = self._buckets[k] = set()
            bisect.insort(self._keys, k)
        bucket.add(user)

    def until(self, until_ms: int) -> list[str]:
        due, found = self._due, []
        last = until_ms // 60000
        for k in self._keys:
            if k > last:
                break
            for u in self._buckets[k]:
                d = due[u]
                if d <= until_ms:
                    found.append((d, u))
        found.sort()
        return [u for _, u in found]


class MemorySessionStore:
    """Dict-backed store; one instance may serve every partition."""

    #: commits carry serialised states (see :class:`OfflineSessionStore` for the other way)
    holds_states = False

    def __init__(self) -> None:
        self._meta: dict[int, PartitionMeta] = {}
        self._users: dict[str, bytes] = {}
        self._due: dict[int, DueIndex] = {}
        self._outbox: dict[int, dict[str, OutboxEntry]] = {}
        self._offsets: dict[int, dict[tuple[str, int], int]] = {}
        self._ledger: MemoryLedgerStore | None = None

    def ledger(self) -> MemoryLedgerStore:
        if self._ledger is None:
            self._ledger = MemoryLedgerStore()
        return self._ledger

    def load_partition(self, partition: int) -> PartitionMeta:
        return self._meta.get(partition, PartitionMeta())

    def load_users(self, partition: int, user_ids: Iterable[str]) -> dict[str, bytes]:
        users = self._users
        return {u: users[u] for u in user_ids if u in users}

    def due_users(self, partition: int, until_ms: int) -> list[str]:
        index = self._due.get(partition)
        return index.until(until_ms) if index else []

    def commit(self, partition: int, batch: CommitBatch) -> None:
        self._users.update(batch.users)
        index = self._due.setdefault(partition, DueIndex())
        for user, due in batch.dues.items():
            index.set(user, due)
        box = self._outbox.setdefault(partition, {})
        for entry in batch.outbox:
            box[entry.id] = entry
        self._meta[partition] = batch.meta

    def outbox(self, partition: int) -> list[OutboxEntry]:
        return sorted(self._outbox.get(partition, {}).values(), key=lambda e: e.seq)

    def ack_outbox(self, partition: int, ids: Iterable[str], output_offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        box = self._outbox.get(partition, {})
        for i in ids:
            box.pop(i, None)
        if output_offsets:
            self._offsets.setdefault(partition, {}).update(output_offsets)

    def output_offsets(self, partition: int) -> dict[tuple[str, int], int]:
        return dict(self._offsets.get(partition, {}))

    # -- introspection for tests and benchmarks --

    def user_bytes(self, user_id: str) -> bytes | None:
        return self._users.get(user_id)

    def user_count(self) -> int:
        return len(self._users)


class OfflineSessionStore(MemorySessionStore):
    """The in-memory store of a one-shot offline run (``OfflineRunner``): a commit hands
    over the engine's state objects themselves, serialised only when read back or when the
    engine drops them from its cache (:meth:`freeze`) — the engine keeps committed states
    decoded anyway, so serialising every touched user at every step bought nothing here.

    Only for runs that are not resumed after a failure: a step that raises may leave
    objects it changed in the store (the Redis store and :class:`MemorySessionStore`
    never do). Outputs are byte-identical to :class:`MemorySessionStore`'s.
    """

    holds_states = True

    def load_users(self, partition: int, user_ids: Iterable[str]) -> dict[str, bytes]:
        users = self._users
        return {u: _stored(users[u]) for u in user_ids if u in users}

    def freeze(self, user_id: str) -> None:
        """Serialise a user's state object (the engine no longer holds it)."""
        v = self._users.get(user_id)
        if v is not None:
            self._users[user_id] = _stored(v)

    def user_bytes(self, user_id: str) -> bytes | None:
        v = self._users.get(user_id)
        return None if v is None else _stored(v)


def _stored(v: Any) -> bytes:
    return v if type(v) is bytes else v.dump_pruned()
