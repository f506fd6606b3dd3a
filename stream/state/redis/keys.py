"""Every Redis key name the product uses, in one place.

``P`` is ``[redis] key_prefix``. A user's keys carry the hash tag ``{u:<user_id>}``, so
Redis Cluster keeps all of one user's keys (session state and fatigue ledger) in one
slot and one Lua script may touch them together; a partition's keys carry
``{p:<partition>}`` (the step journal of a Redis Cluster among them, so one MULTI may
write them together). The persona keys belong to the personas single writer; trigger
workers and the report read them. They share the hash tag ``{pers}``: the writer's fenced
scripts check the lease and write in one step, which Redis Cluster allows within one
slot. Their users' clusters are split over :data:`PERSONA_USER_BUCKETS` hashes by a stable
hash of the user id (:func:`user_bucket`), so no key holds every user: each bucket holds
about users / 256 fields (40k at ten million users, a few MB).

====================================  ========  ==================================================
key                                   type      what
====================================  ========  ==================================================
``P:{u:<user>}:ses``                  string    the user's session state and profile
                                                (:class:`~intentstream.stream.sessions.sessionizer.UserState`);
                                                TTL ``[sessions] user_ttl_days``, renewed on write
``P:{p:<n>}:meta``                    string    partition meta: highest input offset applied,
                                                watermark, next outbox sequence number
``P:{p:<n>}:due``                     zset      user -> next due event time (ms)
``P:{p:<n>}:outbox``                  hash      outbox id -> entry (seq, topic, key, payload)
``P:{p:<n>}:outoff``                  hash      "<topic>:<partition>" -> output end offset at
                                                the last outbox ack (outbox recovery)
``P:{p:<n>}:journal``                 hash      Redis Cluster only: the step being committed
                                                (meta, user states, due times) until all of
                                                it is written (stream/state/redis/journal.py)
``P:{u:<user>}:fat:ch:<channel>``     zset      fatigue ledger: deliveries on one channel,
                                                score = send time (ms), member = action_id
                                                (the coupon cap uses channel ``coupon``)
``P:{u:<user>}:fat:msg``              zset      fatigue ledger: deliveries on every message
                                                channel together (the global caps), same form
``P:{u:<user>}:fat:cd:<trigger>``     string    event time (ms) of the latest decision that
                                                started the trigger's cooldown
``P:{u:<user>}:fat:act:<action_id>``  hash      the recorded outcome of one action (idempotency)
``P:breaker``                         hash      the storm breaker, shared by every worker:
                                                ``state`` ("open" while actions.* publishing is
                                                paused), ``since`` (ms), ``reason``, ``detail``,
                                                ``worker``; ``discard:<n>`` = the highest outbox
                                                seq of partition n whose held actions an operator
                                                discarded (the owner converts them, then clears it)
``P:{pers}:ckpt``                     string    the latest persona model checkpoint
``P:{pers}:users:<b>``                hash      user_id -> cluster id of the user's persona,
                                                for the users of bucket b (:func:`user_bucket`)
``P:{pers}:labels``                   hash      cluster id -> JSON label as of the checkpoint
``P:{pers}:writer``                   string    token of the personas writer holding the
                                                single-writer lease (TTL); absent when free
``P:pers:ckpt``, ``P:pers:labels``,  string,   the personas of the layout before the ``{pers}``
``P:pers:users``                      hash      tag: read once and deleted by the writer's
                                                migration (stream/state/redis/personas.py)
====================================  ========  ==================================================

>>> user_state("is", "alice"), partition_meta("is", 3)
('is:{u:alice}:ses', 'is:{p:3}:meta')
>>> channel_key("is", "alice", "push"), cooldown_key("is", "alice", "cart_abandoned")
('is:{u:alice}:fat:ch:push', 'is:{u:alice}:fat:cd:cart_abandoned')
>>> record_key("is", "alice", "3f2a"), checkpoint_key("is"), writer_lease_key("is")
('is:{u:alice}:fat:act:3f2a', 'is:{pers}:ckpt', 'is:{pers}:writer')
>>> user_bucket("alice"), users_key("is", user_bucket("alice"))
(71, 'is:{pers}:users:71')
"""

from __future__ import annotations

import zlib

#: How many hashes the personas' user -> cluster map is split into. Part of the key
#: layout: changing it moves users between buckets (start the personas over).
PERSONA_USER_BUCKETS = 256


# -- sessions: per user and per partition --


def user_state(prefix: str, user_id: str) -> str:
    return f"{prefix}:{{u:{user_id}}}:ses"


def _partition(prefix: str, partition: int) -> str:
    return f"{prefix}:{{p:{partition}}}"


def partition_meta(prefix: str, partition: int) -> str:
    return f"{_partition(prefix, partition)}:meta"


def partition_due(prefix: str, partition: int) -> str:
    return f"{_partition(prefix, partition)}:due"


def partition_outbox(prefix: str, partition: int) -> str:
    return f"{_partition(prefix, partition)}:outbox"


def partition_output_offsets(prefix: str, partition: int) -> str:
    return f"{_partition(prefix, partition)}:outoff"


def partition_journal(prefix: str, partition: int) -> str:
    return f"{_partition(prefix, partition)}:journal"


# -- fatigue ledger: per user, beside the user's session state --


def ledger_base(prefix: str, user_id: str) -> str:
    """``<prefix>:{u:<user_id>}:fat`` — the common head of one user's ledger keys."""
    return f"{prefix}:{{u:{user_id}}}:fat"


def channel_key(prefix: str, user_id: str, channel: str) -> str:
    return f"{ledger_base(prefix, user_id)}:ch:{channel}"


def messages_key(prefix: str, user_id: str) -> str:
    return f"{ledger_base(prefix, user_id)}:msg"


def cooldown_key(prefix: str, user_id: str, trigger: str) -> str:
    return f"{ledger_base(prefix, user_id)}:cd:{trigger}"


def record_key(prefix: str, user_id: str, action_id: str) -> str:
    return f"{ledger_base(prefix, user_id)}:act:{action_id}"


# -- circuit breaker: one per deployment --


def breaker_key(prefix: str) -> str:
    return f"{prefix}:breaker"


# -- personas: one writer --


def _personas(prefix: str) -> str:
    return f"{prefix}:{{pers}}"


def checkpoint_key(prefix: str) -> str:
    return f"{_personas(prefix)}:ckpt"


def user_bucket(user_id: str) -> int:
    """The bucket of a user's persona assignment: CRC-32 of the id (stable across
    processes and versions, unlike ``hash``) modulo :data:`PERSONA_USER_BUCKETS`."""
    return zlib.crc32(user_id.encode("utf-8", "surrogatepass")) % PERSONA_USER_BUCKETS


def users_key(prefix: str, bucket: int) -> str:
    return f"{_personas(prefix)}:users:{bucket}"


def all_users_keys(prefix: str) -> list[str]:
    return [users_key(prefix, b) for b in range(PERSONA_USER_BUCKETS)]


def labels_key(prefix: str) -> str:
    return f"{_personas(prefix)}:labels"


def writer_lease_key(prefix: str) -> str:
    return f"{_personas(prefix)}:writer"


def legacy_persona_keys(prefix: str) -> tuple[str, str, str]:
    """The personas' keys before they shared the ``{pers}`` hash tag (until 2026-12-02):
    checkpoint, labels and the single users hash. Read once, by the migration in
    :func:`intentstream.stream.state.redis.personas.migrate_legacy_personas`."""
    return f"{prefix}:pers:ckpt", f"{prefix}:pers:labels", f"{prefix}:pers:users"
