"""The personas' keys of the old layout (``P:pers:*``, before the ``{pers}`` hash tag) move to
today's keys on a real Redis: model, labels and every user's persona kept, safe to repeat,
safe after a kill between its two steps."""

from __future__ import annotations

import pytest

from intentstream.stream.state.redis.keys import checkpoint_key, labels_key, legacy_persona_keys, user_bucket, users_key
from intentstream.stream.state.redis.personas import RedisPersonaStore, migrate_legacy_personas

pytestmark = pytest.mark.integration
PREFIX = "mig"
USERS = {f"user-{i}": i % 7 for i in range(2500)} | {"ünï-cödé": 3}


def old_layout(client) -> None:
    ckpt, labels, users = legacy_persona_keys(PREFIX)
    client.set(ckpt, b"\x80pickled model")
    client.hset(labels, mapping={"0": b'{"stage":"exploring"}', "3": b'{"stage":"buying"}'})
    client.hset(users, mapping={u: str(c) for u, c in USERS.items()})


def assert_moved(client) -> None:
    store = RedisPersonaStore(client, PREFIX)
    assert store.load_checkpoint() == b"\x80pickled model"
    assert store.get_labels() == {0: {"stage": "exploring"}, 3: {"stage": "buying"}}
    assert store.get_assignments(list(USERS)) == list(USERS.values())
    assert not any(client.exists(k) for k in legacy_persona_keys(PREFIX))


def test_the_old_layout_moves_whole_and_a_second_run_does_nothing(redis_client):
    old_layout(redis_client)
    assert migrate_legacy_personas(redis_client, PREFIX, batch=100) == len(USERS)
    assert_moved(redis_client)
    assert redis_client.hlen(users_key(PREFIX, user_bucket("ünï-cödé"))) >= 1
    assert migrate_legacy_personas(redis_client, PREFIX) is None
    assert_moved(redis_client)


def test_a_kill_after_the_users_were_copied_is_finished_by_the_next_run(redis_client, monkeypatch):
    old_layout(redis_client)

    class Killed(BaseException):
        pass

    real_pipeline = redis_client.pipeline

    def pipeline(transaction=True):  # the MULTI/EXEC of step (2) never runs: a kill -9 before it
        if transaction:
            raise Killed
        return real_pipeline(transaction=False)

    monkeypatch.setattr(redis_client, "pipeline", pipeline)
    with pytest.raises(Killed):
        migrate_legacy_personas(redis_client, PREFIX)
    monkeypatch.undo()
    assert not redis_client.exists(checkpoint_key(PREFIX)) and redis_client.exists(legacy_persona_keys(PREFIX)[0])
    assert migrate_legacy_personas(redis_client, PREFIX) == len(USERS)
    assert_moved(redis_client)


def test_old_keys_beside_a_new_checkpoint_are_left_alone(redis_client, caplog):
    old_layout(redis_client)
    redis_client.set(checkpoint_key(PREFIX), b"newer model")
    assert migrate_legacy_personas(redis_client, PREFIX) is None
    assert redis_client.get(checkpoint_key(PREFIX)) == b"newer model" and not redis_client.exists(labels_key(PREFIX))
    assert all(redis_client.exists(k) for k in legacy_persona_keys(PREFIX))
    assert "old layout" in caplog.text


def test_nothing_to_move(redis_client):
    assert migrate_legacy_personas(redis_client, PREFIX) is None
    assert redis_client.dbsize() == 0
