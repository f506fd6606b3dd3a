"""In-memory backends of the state protocols: the embedded default (offline runner, demo,
tests). Each keeps the same bytes and answers as its Redis twin and passes the same
contract suite (``tests/stream/state/``)."""

from intentstream.stream.state.memory.fatigue import MemoryLedgerStore
from intentstream.stream.state.memory.lease import FencedMemoryPersonaStore, MemoryWriterLease
from intentstream.stream.state.memory.personas import MemoryPersonaStore
from intentstream.stream.state.memory.sessions import MemorySessionStore, OfflineSessionStore

__all__ = ["FencedMemoryPersonaStore", "MemoryLedgerStore", "MemoryPersonaStore", "MemorySessionStore", "MemoryWriterLease", "OfflineSessionStore"]
