"""The circuit breakers' I/O: the storm breaker's state in Redis (shared by every worker
and surviving a restart), the worker's :class:`Breaker` around the pure rules of
:mod:`intentstream.stream.ops.breaker`, and what ``intentstream resume`` does.

State (``P:breaker``, :func:`intentstream.stream.state.redis.keys.breaker_key`): a hash
with ``state`` = ``open`` while ``actions.*`` publishing is paused, ``since`` (epoch ms),
``reason`` (the rule), ``detail`` and ``worker`` (who tripped it), and ``discard:<n>``
markers. Every worker reads it each ``[worker] idle_tick_s``; a worker that trips the
breaker sets it at once (a Lua script: the first trip wins, later ones keep its
``since``).

* **release** (``resume``, or ``[breaker] auto_release_after_s`` after ``since``): the
  ``state`` fields are deleted; each worker then publishes the held entries of its
  partitions from their outboxes, in outbox order (still under the rate limits), and acks
  them — the ordinary exactly-once path of :mod:`intentstream.agents.outbox`.
* **discard** (``resume --discard``): the command records, per partition, the highest
  outbox seq of the held ``actions.*`` entries it showed (``discard:<n>``) and closes the
  breaker. The partition's owner replaces each such entry, in one MULTI, by an audit
  entry with the same seq — the decision with ``"status": "discarded", "reason":
  "discarded_by_operator"`` and id ``<action_id>:audit:discarded`` — which is then
  published like any audit record (outbox recovery included), and clears the marker.
  Entries the breakers hold add nothing to the audit: they are there already, as decided.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from intentstream.stream import codec
from intentstream.stream.ops.breaker import BreakerState, Gate, StormDetector, Trip
from intentstream.stream.settings import Settings
from intentstream.stream.state import OutboxEntry
from intentstream.stream.state.redis import keys

log = logging.getLogger("intentstream.breaker")

STATE_FIELDS = ("state", "since", "reason", "detail", "worker")
DISCARD_PREFIX = "discard:"
DISCARDED_REASON = "discarded_by_operator"

_TRIP = """
if redis.call('hget', KEYS[1], 'state') == 'open' then return 0 end
redis.call('hset', KEYS[1], 'state', 'open', 'since', ARGV[1], 'reason', ARGV[2], 'detail', ARGV[3], 'worker', ARGV[4])
return 1
"""
_RELEASE_IF_SINCE = """
if redis.call('hget', KEYS[1], 'since') ~= ARGV[1] then return 0 end
redis.call('hdel', KEYS[1], 'state', 'since', 'reason', 'detail', 'worker')
return 1
"""
_CLEAR_IF = """
if redis.call('hget', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('hdel', KEYS[1], ARGV[1])
"""


def channel_of_topic(settings: Settings) -> Callable[[str], str | None]:
    """``actions.<channel>`` -> channel; the audit and outcomes topics and every other topic -> None."""
    prefix, records = settings.topics.actions_prefix, {settings.topics.audit, settings.topics.outcomes}

    def channel(topic: str) -> str | None:
        return topic[len(prefix) :] if topic not in records and topic.startswith(prefix) else None

    return channel


def read_state(client: Any, prefix: str) -> dict[str, str]:
    """The breaker hash, decoded (empty: closed, nothing to discard)."""
    raw = client.hgetall(keys.breaker_key(prefix))
    return {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v for k, v in raw.items()}


def release(client: Any, prefix: str, discard_upto: Mapping[int, int] | None = None) -> None:
    """Close the breaker (the operator's ``resume``); with ``discard_upto``, mark the held
    entries up to that outbox seq of each partition to be discarded first."""
    pipe = client.pipeline(transaction=True)
    key = keys.breaker_key(prefix)
    if discard_upto:
        pipe.hset(key, mapping={f"{DISCARD_PREFIX}{p}": seq for p, seq in discard_upto.items()})
    pipe.hdel(key, *STATE_FIELDS)
    pipe.execute()


def discarded_entry(entry: OutboxEntry, audit_topic: str) -> OutboxEntry:
    """The audit entry that replaces a discarded held action (same seq and key)."""
    record = codec.loads(entry.value)
    record["status"], record["reason"] = "discarded", DISCARDED_REASON
    return OutboxEntry(entry.seq, f"{record['action_id']}:audit:discarded", audit_topic, entry.key, codec.dumps(record))


def held_by_partition(store: Any, partitions: Iterable[int], channel: Callable[[str], str | None]) -> dict[int, list[OutboxEntry]]:
    """The ``actions.*`` entries waiting in each partition's outbox, in outbox order."""
    return {p: [e for e in store.outbox(p) if channel(e.topic)] for p in partitions}


class Breaker:
    """One worker's breakers (see the module docstring). ``client``/``prefix``: the Redis
    of the session store (None: a store without Redis, state kept in memory only)."""

    def __init__(
        self,
        settings: Settings,
        client: Any,
        prefix: str,
        worker: str,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.cfg = settings.breaker
        self.client, self.prefix, self.worker = client, prefix, worker
        self.clock, self.wall = clock, wall
        self.channel = channel_of_topic(settings)
        self.gate: Gate[OutboxEntry] = Gate(self.cfg, lambda e: self.channel(e.topic))
        self.detector = StormDetector(self.cfg)
        self.rule = self.detail = ""
        self.since_ms: int | None = None
        self.discards: dict[int, int] = {}
        self.alarm: Callable[[], Any] | None = None  # called when this worker trips it
        self.counters: Counter[str] = Counter()

    # -- the pure parts, on the worker's clock --

    def observe(self, sends: int, decisions: int, events: int, late: int) -> Trip | None:
        """What the engine steps of one batch produced; a Trip when the storm rule breaks
        while the breaker is closed."""
        trip = self.detector.observe(self.clock(), sends=sends, decisions=decisions, events=events, late=late)
        return None if self.gate.open else trip

    def split(self, p: int, entries: list[OutboxEntry], full: bool) -> tuple[list[OutboxEntry], list[OutboxEntry]]:
        return self.gate.split(p, entries, now=self.clock(), full=full)

    def state(self) -> BreakerState:
        return self.gate.state(self.rule, self.detail, self.since_ms)

    def _set(self, state: Mapping[str, str]) -> None:
        was_open = self.gate.open
        self.gate.open = state.get("state") == "open"
        if self.gate.open:
            self.rule, self.detail = state.get("reason", ""), state.get("detail", "")
            self.since_ms = int(state.get("since") or 0) or None
        else:
            self.rule = self.detail = ""
            self.since_ms = None
            if was_open:  # released: the counts that tripped it must not trip it again
                self.detector.reset(self.clock())
                self.counters["releases"] += 1
                log.warning("breaker released: actions.* publishing resumes")
        self.discards = {int(k[len(DISCARD_PREFIX) :]): int(v) for k, v in state.items() if k.startswith(DISCARD_PREFIX)}

    # -- Redis (blocking: run in a thread) --

    def trip(self, trip: Trip) -> bool:
        """Open the breaker for every worker; True if this call opened it."""
        now_ms = int(self.wall() * 1000)
        state = {"state": "open", "since": str(now_ms), "reason": trip.rule, "detail": trip.message, "worker": self.worker}
        opened = True
        if self.client is not None:
            key = keys.breaker_key(self.prefix)
            opened = bool(self.client.eval(_TRIP, 1, key, now_ms, trip.rule, trip.message, self.worker))
            state = read_state(self.client, self.prefix)
        self._set(state)
        if opened:
            self.counters["trips"] += 1
            log.warning("breaker tripped (%s): %s; actions.* publishing paused until `intentstream resume`", trip.rule, trip.message)
        return opened

    def refresh(self) -> None:
        """Read the shared state; release it when the review window has passed."""
        if self.client is None:
            return
        state = read_state(self.client, self.prefix)
        window = self.cfg.auto_release_after_s
        since = state.get("since")
        if state.get("state") == "open" and window > 0 and since and self.wall() * 1000 - int(since) >= window * 1000:
            if self.client.eval(_RELEASE_IF_SINCE, 1, keys.breaker_key(self.prefix), since):
                log.warning("breaker: review window of %.0fs passed, releasing the held actions", window)
            state = read_state(self.client, self.prefix)
        self._set(state)

    def discard(self, p: int, pending: list[OutboxEntry]) -> int:
        """Apply partition ``p``'s discard marker to its outbox ``pending``; the number of
        held actions replaced by ``discarded`` audit entries."""
        upto = self.discards.get(p)
        if upto is None or self.client is None:
            return 0
        doomed = [e for e in pending if self.channel(e.topic) and e.seq <= upto]
        key = keys.partition_outbox(self.prefix, p)
        pipe = self.client.pipeline(transaction=True)
        for e in doomed:
            new = discarded_entry(e, self.settings.topics.audit)
            pipe.hdel(key, e.id)
            pipe.hset(key, new.id, new.dump())
        if doomed:
            pipe.execute()
        self.client.eval(_CLEAR_IF, 1, keys.breaker_key(self.prefix), f"{DISCARD_PREFIX}{p}", str(upto))
        self.discards.pop(p, None)
        self.counters["discarded"] += len(doomed)
        if doomed:
            log.warning("breaker: partition %d: %d held action(s) discarded by the operator", p, len(doomed))
        return len(doomed)
