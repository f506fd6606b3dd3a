"""What only the Redis SessionStore has: key layout, TTLs, memory per user, errors as
exceptions, the client built from settings. The contract is test_sessions_contract.py."""

from __future__ import annotations

import pytest
import redis

from intentstream.stream.state.redis import keys
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig
from intentstream.stream.state import CommitBatch, PartitionMeta, StoreUnavailable
from intentstream.stream.settings import load_settings
from intentstream.stream.state.redis.sessions import RedisSessionStore


def test_connection_errors_raise_store_unavailable():
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    store = RedisSessionStore(client, prefix="x")
    with pytest.raises(StoreUnavailable):
        store.load_partition(0)
    with pytest.raises(StoreUnavailable):
        store.commit(0, CommitBatch(PartitionMeta(hi=1), {"u": b"s"}))


def test_from_settings_builds_the_client_from_the_redis_settings():
    env = {"INTENTSTREAM_REDIS__URL": "redis://127.0.0.1:1/3", "INTENTSTREAM_REDIS__SOCKET_TIMEOUT_S": "0.2",
           "INTENTSTREAM_REDIS__KEY_PREFIX": "pp", "INTENTSTREAM_REDIS__PASSWORD": "secret"}  # fmt: skip
    store = RedisSessionStore.from_settings(load_settings(env=env))
    kw = store.client.connection_pool.connection_kwargs
    assert (kw["port"], kw["db"], kw["password"], store.prefix) == (1, 3, "secret", "pp")
    assert kw["socket_timeout"] == kw["socket_connect_timeout"] == 0.2  # a Redis that is down fails fast
    with pytest.raises(StoreUnavailable):
        store.load_partition(0)
    store.client.close()


@pytest.fixture
def redis_store(redis_client):
    return RedisSessionStore(redis_client, prefix="t", user_ttl_s=7 * 86400)


@pytest.mark.integration
def test_keys_are_hash_tagged_and_user_keys_expire(redis_store):
    store, client, prefix = redis_store, redis_store.client, redis_store.prefix
    lines = list(generate_lines(GeneratorConfig(users=5, days=1, seed=2)))
    eng = PartitionEngine(store, 2)
    eng.process(list(enumerate(lines)))
    found = sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*"))
    users = [k for k in found if ":{u:" in k]
    # a user's session state, and the fatigue ledger's keys beside it (same hash tag)
    assert users and all(k.endswith(":ses") or ":fat:" in k for k in users)
    assert set(found) - set(users) <= {keys.partition_meta(prefix, 2), keys.partition_due(prefix, 2), keys.partition_outbox(prefix, 2)}
    ttl = client.pttl(next(k for k in users if k.endswith(":ses")))
    assert 6 * 86400_000 < ttl <= 7 * 86400_000
    assert all(client.pttl(k) > 0 for k in users)  # every per-user key expires
    assert client.pttl(keys.partition_meta(prefix, 2)) == -1  # partition keys do not expire


@pytest.mark.integration
def test_a_users_state_costs_under_2_5kb_of_redis_memory_and_1kb_on_average(redis_store):
    lines = list(generate_lines(GeneratorConfig(users=200, days=1, seed=3)))
    eng = PartitionEngine(redis_store, 0)
    usages = []
    for start in range(0, len(lines), 500):
        eng.process([(start + i, raw) for i, raw in enumerate(lines[start : start + 500])])
        usages += [redis_store.memory_usage(f"u{i:06d}") or 0 for i in range(0, 200, 10)]
    active = [u for u in usages if u]
    # a deferred message is held in its user's state with its whole rendered decision
    # (~1.2 KB with the strategy policy's fields): the heaviest user here holds one
    assert active and max(active) <= 2560 and sum(active) / len(active) <= 1024
