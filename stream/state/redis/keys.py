"""Every Redis key name the product uses, in one place.

``P`` is ``[redis] key_prefix``. A user's keys carry the hash tag ``{u:<user_id>}``, so
Redis Cluster keeps all of one user's keys (session state and fatigue ledger) in one
slot and one Lua script may touch them together; a partition's keys carry
``{p:<partition>}``. The persona keys belong to the personas single writer; trigger
workers and the report read them.

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
``P:pers:ckpt``                       string    the latest persona model checkpoint
``P:pers:users``                      hash      user_id -> cluster id of the user's persona
``P:pers:labels``                     hash      cluster id -> JSON label as of the checkpoint
``P:pers:writer``                     string    token of the personas writer holding the
                                                single-writer lease (TTL); absent when free
====================================  ========  ==================================================

>>> user_state("is", "alice"), partition_meta("is", 3)
('is:{u:alice}:ses', 'is:{p:3}:meta')
>>> channel_key("is", "alice", "push"), cooldown_key("is", "alice", "cart_abandoned")
('is:{u:alice}:fat:ch:push', 'is:{u:alice}:fat:cd:cart_abandoned')
>>> record_key("is", "alice", "3f2a"), checkpoint_key("is"), writer_lease_key("is")
('is:{u:alice}:fat:act:3f2a', 'is:pers:ckpt', 'is:pers:writer')
"""

from __future__ import annotations


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


def checkpoint_key(prefix: str) -> str:
    return f"{prefix}:pers:ckpt"


def users_key(prefix: str) -> str:
    return f"{prefix}:pers:users"


def labels_key(prefix: str) -> str:
    return f"{prefix}:pers:labels"


def writer_lease_key(prefix: str) -> str:
    return f"{prefix}:pers:writer"
