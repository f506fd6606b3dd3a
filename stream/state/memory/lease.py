"""In-memory :class:`~intentstream.stream.state.lease.WriterLease`, with the fenced
persona store it hands out (tests; one process standing in for several writers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from intentstream.stream.state.lease import LeaseLost, new_token
from intentstream.stream.state.memory.personas import MemoryPersonaStore


class MemoryWriterLease:
    """The single-writer lease held in ``store.writer_lease`` (as the Redis lease lives
    beside the persona keys): every lease on the same store competes for one slot.

    ``clock`` returns seconds (default ``time.monotonic``); a test passes its own to
    expire a lease without sleeping.

    >>> now = [0.0]
    >>> store = MemoryPersonaStore()
    >>> a = MemoryWriterLease(store, 2.0, "a", clock=lambda: now[0])
    >>> b = MemoryWriterLease(store, 2.0, "b", clock=lambda: now[0])
    >>> ta = a.try_acquire()
    >>> b.try_acquire() is None, a.holder() == ta
    (True, True)
    >>> now[0] = 2.5  # a stopped renewing
    >>> tb = b.try_acquire()
    >>> a.fenced_store(ta).set_assignments({"u1": 1})
    Traceback (most recent call last):
    ...
    intentstream.stream.state.lease.LeaseLost: users' clusters refused: the lease is held by another writer
    """

    def __init__(self, store: MemoryPersonaStore, ttl_s: float, owner: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.owner = owner
        self.clock = clock

    def _expiry(self) -> float:
        return self.clock() + self.ttl_ms / 1000

    def holder(self) -> str | None:
        slot = self.store.writer_lease
        if slot is None or slot[1] <= self.clock():
            return None
        return slot[0]

    def try_acquire(self) -> str | None:
        if self.holder() is not None:
            return None
        token = new_token(self.owner)
        self.store.writer_lease = (token, self._expiry())
        return token

    def renew(self, token: str) -> bool:
        if self.holder() != token:
            return False
        self.store.writer_lease = (token, self._expiry())
        return True

    def release(self, token: str) -> bool:
        if self.holder() != token:
            return False
        self.store.writer_lease = None
        return True

    def fenced_store(self, token: str) -> FencedMemoryPersonaStore:
        return FencedMemoryPersonaStore(self, token)


class FencedMemoryPersonaStore:
    """The lease's store, whose writes succeed only while ``token`` holds ``lease``;
    otherwise :class:`~intentstream.stream.state.lease.LeaseLost`. Reads are the store's."""

    def __init__(self, lease: MemoryWriterLease, token: str) -> None:
        self.lease = lease
        self.token = token
        self.store = lease.store

    def _fence(self, what: str) -> None:
        if self.lease.holder() != self.token:
            raise LeaseLost(f"{what} refused: the lease is held by another writer")

    def save_checkpoint(self, checkpoint: bytes, labels: Mapping[int, Mapping[str, str]]) -> None:
        self._fence("checkpoint")
        self.store.save_checkpoint(checkpoint, labels)

    def set_assignments(self, assignments: Mapping[str, int]) -> None:
        if assignments:
            self._fence("users' clusters")
            self.store.set_assignments(assignments)

    def load_checkpoint(self) -> bytes | None:
        return self.store.load_checkpoint()

    def get_assignment(self, user_id: str) -> int | None:
        return self.store.get_assignment(user_id)

    def get_assignments(self, user_ids: Iterable[str]) -> list[int | None]:
        return self.store.get_assignments(user_ids)

    def get_labels(self) -> dict[int, dict[str, str]]:
        return self.store.get_labels()

    def delete_all(self) -> None:
        self.store.delete_all()
