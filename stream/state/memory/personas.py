"""In-memory :class:`~intentstream.stream.state.personas.PersonaStore` (offline runs, the
report from a file, tests)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class MemoryPersonaStore:
    """In-process :class:`~intentstream.stream.state.personas.PersonaStore`.

    Its attributes mirror the Redis keys: ``checkpoint`` (``P:{pers}:ckpt``), ``assignments``
    (``P:{pers}:users:<b>``: user -> cluster persona), ``labels`` (``P:{pers}:labels``) and
    ``writer_lease`` (``P:{pers}:writer``: the holder's token and the lease's expiry on the
    lease's clock, or None), which every
    :class:`~intentstream.stream.state.memory.lease.MemoryWriterLease` on this store shares.

    >>> store = MemoryPersonaStore()
    >>> store.set_assignments({"u1": 3})
    >>> store.get_assignment("u1"), store.get_assignment("nobody"), store.load_checkpoint()
    (3, None, None)
    """

    def __init__(self) -> None:
        self.checkpoint: bytes | None = None
        self.assignments: dict[str, int] = {}
        self.labels: dict[int, dict[str, str]] = {}
        self.writer_lease: tuple[str, float] | None = None

    def load_checkpoint(self) -> bytes | None:
        return self.checkpoint

    def save_checkpoint(self, checkpoint: bytes, labels: Mapping[int, Mapping[str, str]]) -> None:
        self.checkpoint = bytes(checkpoint)
        self.labels = {int(c): dict(v) for c, v in labels.items()}

    def set_assignments(self, assignments: Mapping[str, int]) -> None:
        self.assignments.update(assignments)

    def get_assignment(self, user_id: str) -> int | None:
        return self.assignments.get(user_id)

    def get_assignments(self, user_ids: Iterable[str]) -> list[int | None]:
        return [self.assignments.get(u) for u in user_ids]

    def get_labels(self) -> dict[int, dict[str, str]]:
        return {c: dict(v) for c, v in self.labels.items()}

    def delete_all(self) -> None:
        self.checkpoint = None
        self.assignments = {}
        self.labels = {}
