"""Every state interface of the engine, in one place. Each protocol has an in-memory
backend (:mod:`intentstream.stream.state.memory`) and a Redis backend
(:mod:`intentstream.stream.state.redis`, keys in :mod:`intentstream.stream.state.redis.keys`),
and one contract suite run against both (``tests/stream/state/``).

=====================================  ================================================
protocol (module)                      what it keeps
=====================================  ================================================
:class:`SessionStore` (``sessions``)   the sessionizer's per-partition state: users'
                                       states, partition meta, due index, outbox;
                                       one :class:`CommitBatch` applied atomically
:class:`LedgerStore` (``fatigue``)     the fatigue ledger's per-user history, with an
                                       atomic check-and-record of a :class:`LedgerRequest`
                                       under :class:`Limits`, answering a :class:`Verdict`
:class:`PersonaStore` (``personas``)   the cluster personas: model checkpoint, each
                                       user's cluster, the clusters' labels
:class:`WriterLease` (``lease``)       the personas single-writer lease; its holder
                                       writes through a store fenced by its token
=====================================  ================================================

Shared values: :class:`PartitionMeta`, :class:`OutboxEntry`, :class:`CommitBatch`;
:class:`StoreUnavailable` is what any backend raises when it cannot be reached.

>>> from intentstream.stream.state.memory import MemoryLedgerStore, MemoryPersonaStore, MemorySessionStore
>>> isinstance(MemorySessionStore(), SessionStore), isinstance(MemoryLedgerStore(), LedgerStore)
(True, True)
>>> isinstance(MemoryPersonaStore(), PersonaStore)
True
"""

from intentstream.stream.state.fatigue import LedgerRequest, LedgerStore, Limits, Verdict
from intentstream.stream.state.lease import LeaseLost, WriterLease
from intentstream.stream.state.personas import PersonaStore
from intentstream.stream.state.sessions import CommitBatch, OutboxEntry, PartitionMeta, SessionStore, StoreUnavailable

__all__ = [
    "CommitBatch",
    "LeaseLost",
    "LedgerRequest",
    "LedgerStore",
    "Limits",
    "OutboxEntry",
    "PartitionMeta",
    "PersonaStore",
    "SessionStore",
    "StoreUnavailable",
    "Verdict",
    "WriterLease",
]
