"""``backend``: the one fixture every state contract suite in this folder runs over.

It is parametrized over the in-memory backends, a real Redis (marked ``integration``;
the stack's ``redis_client``: a database of its own, flushed before and after the test)
and a real Redis Cluster (marked ``integration`` and ``cluster``; ``redis_cluster_client``,
3 primaries + 3 replicas, flushed before and after). Each ``backend.<protocol>()`` call returns a fresh, empty
store of that kind, so a test may compare two stores of one backend; a contract test
takes ``backend`` and never asks which one it got.

``make_candidates``: random fatigue-ledger candidates that put every rule in play.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from intentstream.stream.contract.events import parse_ts
from intentstream.stream.decisions.fatigue import Candidate
from intentstream.stream.state import LedgerStore, SessionStore
from intentstream.stream.state.fatigue import HOUR_MS
from intentstream.stream.state.memory import MemoryLedgerStore, MemorySessionStore


class MemoryBackend:
    name = "memory"

    def sessions(self) -> SessionStore:
        return MemorySessionStore()

    def ledger(self) -> LedgerStore:
        return MemoryLedgerStore()


@dataclass
class RedisBackend:
    """Stores on one client; each store gets a key prefix of its own."""

    client: Any
    name = "redis"
    _prefixes: itertools.count = field(default_factory=itertools.count)

    def prefix(self) -> str:
        return f"t{next(self._prefixes)}"

    def sessions(self) -> SessionStore:
        from intentstream.stream.state.redis.sessions import RedisSessionStore

        return RedisSessionStore(self.client, self.prefix(), user_ttl_s=3600)

    def ledger(self) -> LedgerStore:
        from intentstream.stream.state.redis.fatigue import RedisLedgerStore

        return RedisLedgerStore(self.client, self.prefix(), pipeline_size=7)  # small: batches span pipelines


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("redis-cluster", marks=[pytest.mark.integration, pytest.mark.cluster]),
    ]
)
def backend(request: pytest.FixtureRequest) -> MemoryBackend | RedisBackend:
    if request.param == "memory":
        return MemoryBackend()
    if request.param == "redis-cluster":  # the same stores: the client decides (stream/state/redis/client.py)
        return RedisBackend(request.getfixturevalue("redis_cluster_client"))
    return RedisBackend(request.getfixturevalue("redis_client"))


def random_candidates(n: int, seed: int = 1, users: int = 6) -> list[Candidate]:
    """``n`` candidates in time order on few users, with every rule in play."""
    rng = random.Random(seed)
    zones = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Shanghai"]
    channels = ["push", "sms", "email", "in_app"]
    out = []
    t = parse_ts("2026-03-01T00:00:00Z")
    for i in range(n):
        t += rng.randrange(0, 8 * HOUR_MS)
        rng.shuffle(channels)
        out.append(
            Candidate(
                action_id=f"a{i}",
                user_id=f"u{rng.randrange(users)}",
                trigger=rng.choice(["cart_abandoned", "churn_risk", "kyc_stalled", "payment_stalled"]),
                decided_at=t,
                channels=tuple(channels[: rng.randrange(1, 4)]),
                tz=rng.choice(zones),
                opt_outs=frozenset(rng.sample(channels, rng.choice([0, 0, 0, 1, 2]))),
                coupon=rng.random() < 0.5,
            )
        )
    return out


@pytest.fixture
def make_candidates() -> Callable[..., list[Candidate]]:
    return random_candidates
