"""Redis key names of the fatigue ledger (stream/state/fatigue_redis.py), in one place.

Every key of one user carries the hash tag ``{u:<user_id>}``, so all of a user's keys
live in one Redis Cluster slot and one Lua script may touch them together.

>>> channel_key("is", "alice", "push")
'is:{u:alice}:fat:ch:push'
>>> record_key("is", "alice", "3f2a"), cooldown_key("is", "alice", "cart_abandoned")
('is:{u:alice}:fat:act:3f2a', 'is:{u:alice}:fat:cd:cart_abandoned')
"""

from __future__ import annotations

COUPON_CHANNEL = "coupon"


def user_base(prefix: str, user_id: str) -> str:
    """``<prefix>:{u:<user_id>}:fat`` — the common head of one user's ledger keys."""
    return f"{prefix}:{{u:{user_id}}}:fat"


def channel_key(prefix: str, user_id: str, channel: str) -> str:
    """Sorted set of deliveries on one channel: score = send time (ms), member = action_id.

    The coupon cap uses the same shape under channel ``coupon``."""
    return f"{user_base(prefix, user_id)}:ch:{channel}"


def cooldown_key(prefix: str, user_id: str, trigger: str) -> str:
    """String: event time (ms) of the latest decision that started the trigger's cooldown."""
    return f"{user_base(prefix, user_id)}:cd:{trigger}"


def record_key(prefix: str, user_id: str, action_id: str) -> str:
    """Hash: the recorded outcome of one action_id (idempotency)."""
    return f"{user_base(prefix, user_id)}:act:{action_id}"
