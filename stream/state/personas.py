"""The persona model's state interface: :class:`PersonaStore`.

A store keeps what the personas single writer publishes: the latest model checkpoint
(:mod:`intentstream.stream.personas.checkpoint`) with the cluster labels as of that
checkpoint, written together, and each user's cluster persona (the cluster id the
writer assigned them; not the behaviour persona of a segment). Trigger workers and the
report only read it. Backends:
:class:`intentstream.stream.state.memory.personas.MemoryPersonaStore` and
:class:`intentstream.stream.state.redis.personas.RedisPersonaStore`; both pass one
contract suite (``tests/stream/state/test_personas_contract.py``). A store whose writes
are fenced by the single-writer lease comes from
:meth:`intentstream.stream.state.lease.WriterLease.fenced_store`.

>>> from intentstream.stream.state.memory.personas import MemoryPersonaStore
>>> isinstance(MemoryPersonaStore(), PersonaStore)
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

__all__ = ["PersonaStore"]


@runtime_checkable
class PersonaStore(Protocol):
    """Where the single writer keeps its checkpoint and publishes users' cluster personas."""

    def load_checkpoint(self) -> bytes | None:
        """The latest checkpoint, or None before the first one."""
        ...

    def save_checkpoint(self, checkpoint: bytes, labels: Mapping[int, Mapping[str, str]]) -> None:
        """Replace the checkpoint and the cluster labels, together (readers never see the
        labels of another checkpoint). ``labels``: cluster id -> label fields."""
        ...

    def set_assignments(self, assignments: Mapping[str, int]) -> None:
        """Record users' cluster personas (user id -> cluster id); others are kept."""
        ...

    def get_assignment(self, user_id: str) -> int | None:
        """The user's cluster persona, or None for a user never assigned."""
        ...

    def get_assignments(self, user_ids: Iterable[str]) -> list[int | None]:
        """:meth:`get_assignment` of each user, in order."""
        ...

    def get_labels(self) -> dict[int, dict[str, str]]:
        """The cluster labels saved with the latest checkpoint."""
        ...

    def delete_all(self) -> None:
        """Forget the checkpoint, the labels and every assignment (start over deliberately)."""
        ...
