"""The WriterLease contract, run over every backend (``backend`` in conftest.py: memory,
and Redis as an integration test).

``leases``: a factory of leases that compete for one lease slot (memory: one store; Redis:
one key prefix), and a clock to let time pass: a hand-driven one for memory, real time
for Redis, whose TTL runs on the server.
"""

from __future__ import annotations

import time

import pytest

from intentstream.stream.state.lease import LeaseLost, WriterLease
from intentstream.stream.state.memory.lease import MemoryWriterLease
from intentstream.stream.state.memory.personas import MemoryPersonaStore
from intentstream.stream.state.personas import PersonaStore

TTL_S = 0.4


class MemoryLeases:
    def __init__(self) -> None:
        self.store = MemoryPersonaStore()
        self.now = 1000.0

    def lease(self, owner: str) -> WriterLease:
        return MemoryWriterLease(self.store, TTL_S, owner, clock=lambda: self.now)

    def wait(self, seconds: float) -> None:
        self.now += seconds


class RedisLeases:
    def __init__(self, client, prefix: str) -> None:
        from intentstream.stream.state.redis.personas import RedisPersonaStore

        self.client = client
        self.prefix = prefix
        self.store = RedisPersonaStore(client, prefix)

    def lease(self, owner: str) -> WriterLease:
        from intentstream.stream.state.redis.lease import RedisWriterLease

        return RedisWriterLease(self.client, self.prefix, TTL_S, owner)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def leases(backend) -> MemoryLeases | RedisLeases:
    if backend.name == "memory":
        return MemoryLeases()
    return RedisLeases(backend.client, backend.prefix())


def test_is_a_writer_lease(leases):
    lease = leases.lease("a")
    assert isinstance(lease, WriterLease)
    assert lease.owner == "a" and lease.ttl_ms == TTL_S * 1000
    assert isinstance(lease.fenced_store("a:token"), PersonaStore)


def test_one_holder_at_a_time(leases):
    a, b = leases.lease("a"), leases.lease("b")
    assert a.holder() is None
    ta = a.try_acquire()
    assert ta and ta.startswith("a:")
    assert b.try_acquire() is None and a.try_acquire() is None  # not even again for its holder
    assert a.holder() == b.holder() == ta


def test_only_the_holder_renews_or_releases(leases):
    a, b = leases.lease("a"), leases.lease("b")
    ta = a.try_acquire()
    assert a.renew(ta)
    assert not b.renew("b:forged") and not b.release("b:forged")
    assert a.holder() == ta
    assert a.release(ta) and a.holder() is None
    assert not a.release(ta) and not a.renew(ta)  # a released token is spent
    tb = b.try_acquire()  # a release frees the lease at once
    assert tb and tb.startswith("b:") and b.holder() == tb


def test_every_term_has_a_new_token(leases):
    a = leases.lease("a")
    first = a.try_acquire()
    assert a.release(first)
    second = a.try_acquire()
    assert second and second != first
    assert not a.renew(first)


def test_a_lease_not_renewed_expires_and_renewing_extends_it(leases):
    a, b = leases.lease("a"), leases.lease("b")
    ta = a.try_acquire()
    leases.wait(TTL_S * 0.6)
    assert a.renew(ta)
    leases.wait(TTL_S * 0.6)  # past the first TTL, within the renewed one
    assert b.try_acquire() is None and a.holder() == ta
    leases.wait(TTL_S * 0.6)  # a stopped renewing (a pause, a partition)
    assert a.holder() is None
    assert not a.renew(ta)
    tb = b.try_acquire()
    assert tb and a.holder() == tb
    assert not a.release(ta) and b.holder() == tb


def test_the_fenced_store_writes_only_while_its_token_holds_the_lease(leases):
    a, b = leases.lease("a"), leases.lease("b")
    ta = a.try_acquire()
    fenced_a = a.fenced_store(ta)
    labels = {0: {"stage": "exploring", "zh": "x", "en": "x"}}
    fenced_a.set_assignments({"u1": 1})
    fenced_a.save_checkpoint(b"ckpt-1", labels)
    plain = leases.store  # what readers see: the same keys, the same encodings
    assert plain.load_checkpoint() == b"ckpt-1" and plain.get_labels() == labels and plain.get_assignment("u1") == 1

    leases.wait(TTL_S * 1.5)  # a's lease expires without a noticing
    tb = b.try_acquire()
    assert tb
    with pytest.raises(LeaseLost):
        fenced_a.set_assignments({"u1": 2})
    with pytest.raises(LeaseLost):
        fenced_a.save_checkpoint(b"ckpt-stale", {})
    assert plain.load_checkpoint() == b"ckpt-1" and plain.get_labels() == labels and plain.get_assignment("u1") == 1
    assert fenced_a.load_checkpoint() == b"ckpt-1" and fenced_a.get_assignments(["u1"]) == [1]  # reads are not fenced

    fenced_b = b.fenced_store(tb)
    fenced_b.set_assignments({"u1": 3})
    fenced_b.save_checkpoint(b"ckpt-2", {})
    assert plain.load_checkpoint() == b"ckpt-2" and plain.get_labels() == {} and plain.get_assignment("u1") == 3
    assert b.release(tb)
    with pytest.raises(LeaseLost):
        fenced_b.save_checkpoint(b"after-release", {})
