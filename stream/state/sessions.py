"""The sessionizer's state interface: :class:`SessionStore` and the values it speaks.

:class:`SessionStore` keeps the sessionizer's state of one Kafka partition of the
clickstream: per-user states (opaque bytes, see :class:`intentstream.stream.sessions.sessionizer.UserState`),
the partition's :class:`PartitionMeta`, its due index (user -> next due event time) and
its outbox. :meth:`SessionStore.commit` writes one :class:`CommitBatch` atomically —
state, due index, outbox entries and meta together, or nothing. Backends:
:class:`intentstream.stream.state.memory.sessions.MemorySessionStore` and
:class:`intentstream.stream.state.redis.sessions.RedisSessionStore`; both pass one
contract suite (``tests/stream/state/test_sessions_contract.py``).

>>> from intentstream.stream.state.memory import MemorySessionStore
>>> store = MemorySessionStore()
>>> entry = OutboxEntry(seq=0, id="s1:0", topic="segments", key=b"u1", value=b"{}")
>>> store.commit(0, CommitBatch(PartitionMeta(hi=9, wm=5, ob=1), {"u1": b"state"}, {"u1": 42}, [entry]))
>>> store.load_partition(0), store.load_users(0, ["u1", "u2"]), store.due_users(0, 100)
(PartitionMeta(hi=9, wm=5, ob=1, lead=(), ahead=()), {'u1': b'state'}, ['u1'])
>>> [e.id for e in store.outbox(0)]
['s1:0']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from intentstream.stream import codec
from intentstream.stream.state.fatigue import LedgerStore


class StoreUnavailable(ConnectionError):
    """The state backend could not be reached or timed out; the batch was not applied
    (or its outcome is unknown). Retry the same batch: offsets make it idempotent."""


@dataclass(frozen=True)
class PartitionMeta:
    """Per-partition progress: ``hi`` highest input offset applied (-1: none), ``wm``
    watermark (epoch ms, 0: none), ``ob`` next outbox sequence number, ``lead`` the most
    advanced users as ``(newest event time, user)`` and ``ahead`` the users seen
    implausibly far ahead (see ``engine.progress.Leaders``)."""

    hi: int = -1
    wm: int = 0
    ob: int = 0
    lead: tuple[tuple[int, str], ...] = ()
    ahead: tuple[tuple[int, str], ...] = ()
    #: the strategy policy's arm tally (``ArmTally.dump()``; None: nothing learned yet),
    #: committed with the step whose outcome records it folds
    pol: list | None = field(default=None, repr=False)

    def dump(self) -> bytes:
        head: list = [self.hi, self.wm, self.ob]
        if self.lead or self.ahead or self.pol:
            head.append([list(x) for x in self.lead])
        if self.ahead or self.pol:
            head.append([list(x) for x in self.ahead])
        if self.pol:
            head.append(self.pol)
        return codec.dumps(head)

    @classmethod
    def load(cls, data: bytes | None) -> PartitionMeta:
        if not data:
            return cls()
        a = codec.loads(data)
        lead = tuple((t, u) for t, u in a[3]) if len(a) > 3 else ()
        ahead = tuple((t, u) for t, u in a[4]) if len(a) > 4 else ()
        return cls(a[0], a[1], a[2], lead, ahead, a[5] if len(a) > 5 else None)


@dataclass(frozen=True)
class OutboxEntry:
    """One output waiting to be published: ``id`` is deterministic (the segment id, or
    ``dlq:<partition>:<offset>``) and travels in the Kafka header, ``seq`` orders entries
    within the partition's outbox, ``key`` is the Kafka key (None: no key)."""

    seq: int
    id: str
    topic: str
    key: bytes | None
    value: bytes

    def dump(self) -> bytes:
        head = codec.dumps([self.seq, self.id, self.topic, self.key.decode("utf-8", "surrogateescape") if self.key is not None else None])
        return head + b"\n" + self.value

    @classmethod
    def load(cls, data: bytes) -> OutboxEntry:
        head, _, value = data.partition(b"\n")
        seq, id_, topic, key = codec.loads(head)
        return cls(seq, id_, topic, key.encode("utf-8", "surrogateescape") if key is not None else None, value)


@dataclass
class CommitBatch:
    """Everything one engine step writes: applied atomically by :meth:`SessionStore.commit`.

    ``users``: serialized states to write (the state objects themselves for a store that
    ``holds_states``); ``dues``: next due time per user (None: remove from the due
    index); ``outbox``: entries to append; ``meta``: the new meta."""

    meta: PartitionMeta
    users: dict[str, Any] = field(default_factory=dict)
    dues: dict[str, int | None] = field(default_factory=dict)
    outbox: list[OutboxEntry] = field(default_factory=list)


@runtime_checkable
class SessionStore(Protocol):
    """Sessionizer state of the clickstream's partitions (see the module docstring)."""

    #: whether commits hand over the engine's state objects instead of their bytes
    #: (``OfflineSessionStore``: a one-shot run; then ``freeze`` serialises one)
    holds_states: bool

    def load_partition(self, partition: int) -> PartitionMeta:
        """The partition's meta; ``PartitionMeta()`` if nothing was ever committed."""
        ...

    def load_users(self, partition: int, user_ids: Iterable[str]) -> dict[str, bytes]:
        """Stored states of those users that have one (absent users are left out)."""
        ...

    def due_users(self, partition: int, until_ms: int) -> list[str]:
        """Users of the partition whose next due time is <= ``until_ms``, by (due, user)."""
        ...

    def commit(self, partition: int, batch: CommitBatch) -> None:
        """Apply ``batch`` atomically (all of it or nothing)."""
        ...

    def outbox(self, partition: int) -> list[OutboxEntry]:
        """Entries not yet acknowledged, in ``seq`` order."""
        ...

    def ack_outbox(self, partition: int, ids: Iterable[str], output_offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """Drop published entries; record the output partitions' end offsets with them
        (where outbox recovery starts reading after a restart). Unknown ids are ignored."""
        ...

    def output_offsets(self, partition: int) -> dict[tuple[str, int], int]:
        """The output offsets recorded by the last :meth:`ack_outbox` calls."""
        ...

    def ledger(self) -> LedgerStore:
        """The fatigue ledger's store kept beside this state (same backend, same lifetime):
        decisions already recorded survive a restart exactly as session state does."""
        ...
