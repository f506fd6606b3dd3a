"""Redis key names of the persona state (stream/state/persona_redis.py), in one place.

One writer (the personas agent) owns these keys; trigger workers and the report read them.

>>> checkpoint_key("is"), users_key("is"), labels_key("is")
('is:pers:ckpt', 'is:pers:users', 'is:pers:labels')
"""

from __future__ import annotations


def checkpoint_key(prefix: str) -> str:
    """String: the latest model checkpoint (``PersonaModel.checkpoint()`` bytes)."""
    return f"{prefix}:pers:ckpt"


def users_key(prefix: str) -> str:
    """Hash: user_id -> cluster id (decimal) of the user's current persona."""
    return f"{prefix}:pers:users"


def labels_key(prefix: str) -> str:
    """Hash: cluster id -> JSON label (stage, urgency, activity keys; zh and en text) as of
    the latest checkpoint."""
    return f"{prefix}:pers:labels"


def writer_lease_key(prefix: str) -> str:
    """String with a TTL: the token of the personas writer that holds the single-writer lease
    (``agents/personas.py``); absent when no writer holds it.

    >>> writer_lease_key("is")
    'is:pers:writer'
    """
    return f"{prefix}:pers:writer"
