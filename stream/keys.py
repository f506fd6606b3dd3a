"""Redis key names of the session state, in one place.

``P`` is ``[redis] key_prefix``. A user's keys carry the hash tag ``{u:<user_id>}`` so
Redis Cluster keeps all of one user's keys in one slot (the fatigue ledger's keys,
stream/fatigue_keys.py, share it); a partition's keys carry ``{p:<partition>}``.

====================================  ========  ==================================================
key                                   type      what
====================================  ========  ==================================================
``P:{u:<user>}:ses``                  string    the user's session state and profile
                                                (:class:`stream.sessions.UserState`); TTL
                                                ``[sessions] user_ttl_days``, renewed on write
``P:{p:<n>}:meta``                    string    partition meta: highest input offset applied,
                                                watermark, next outbox sequence number
``P:{p:<n>}:due``                     zset      user -> next due event time (ms)
``P:{p:<n>}:outbox``                  hash      outbox id -> entry (seq, topic, key, payload)
``P:{p:<n>}:outoff``                  hash      "<topic>:<partition>" -> output end offset at
                                                the last outbox ack (outbox recovery)
====================================  ========  ==================================================

>>> user_state("is", "alice"), partition_meta("is", 3)
('is:{u:alice}:ses', 'is:{p:3}:meta')
"""

from __future__ import annotations


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
