"""The single-writer lease's interface: :class:`WriterLease` and :class:`LeaseLost`.

River models cannot be merged, so one personas writer learns at a time; a lease decides
which. It is one slot holding the holder's token, with a time to live:
:meth:`~WriterLease.try_acquire` takes it when free; the holder extends it with
:meth:`~WriterLease.renew` (compare-and-set: only while its token is there) and gives it
up with :meth:`~WriterLease.release` on a graceful stop (compare-and-delete), so a
standby can take over at once; after a crash it frees itself when the TTL runs out.

**Fencing.** :meth:`~WriterLease.fenced_store` is a
:class:`~intentstream.stream.state.personas.PersonaStore` whose every write first checks,
atomically with the write, that the token still holds the lease, and otherwise raises
:class:`LeaseLost`. A holder that lost the lease without noticing (a long pause, a
network partition) can never overwrite its successor's state: safety does not depend on
clocks or on renewing in time.

Backends: :class:`intentstream.stream.state.memory.lease.MemoryWriterLease` (a hand-driven
clock for tests) and :class:`intentstream.stream.state.redis.lease.RedisWriterLease` (a
key and Lua scripts); both pass one contract suite
(``tests/stream/state/test_lease_contract.py``).

>>> from intentstream.stream.state.memory.lease import MemoryWriterLease
>>> from intentstream.stream.state.memory.personas import MemoryPersonaStore
>>> isinstance(MemoryWriterLease(MemoryPersonaStore(), 15.0, "w1"), WriterLease)
True
>>> new_token("w1")[:3]
'w1:'
"""

from __future__ import annotations

import uuid
from typing import Protocol, runtime_checkable

from intentstream.stream.state.personas import PersonaStore

__all__ = ["LeaseLost", "WriterLease", "new_token"]


class LeaseLost(RuntimeError):
    """This writer no longer holds the single-writer lease; its writes were refused."""


def new_token(owner: str) -> str:
    """A fresh token for ``owner``: ``<owner>:<12 hex digits>``, unique per term."""
    return f"{owner}:{uuid.uuid4().hex[:12]}"


@runtime_checkable
class WriterLease(Protocol):
    """One writer's handle on the single-writer lease (see the module docstring).

    ``owner`` names the writer in its tokens; ``ttl_ms`` is the lease's time to live.
    """

    owner: str
    ttl_ms: int

    def try_acquire(self) -> str | None:
        """A new token if the lease was free (now ours for ``ttl_ms``), else None."""
        ...

    def renew(self, token: str) -> bool:
        """Extend the lease to ``ttl_ms`` from now if ``token`` still holds it."""
        ...

    def release(self, token: str) -> bool:
        """Give the lease up if ``token`` holds it (a standby can take it at once)."""
        ...

    def holder(self) -> str | None:
        """The token holding the lease, or None when it is free."""
        ...

    def fenced_store(self, token: str) -> PersonaStore:
        """A persona store whose writes succeed only while ``token`` holds the lease,
        else raise :class:`LeaseLost`; reads are not fenced."""
        ...
