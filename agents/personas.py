"""The personas single writer: the ``segments`` topic -> :class:`~intentstream.stream.personas.model.PersonaService`
-> Redis, learned by exactly one process at a time.

River models cannot be merged, so one process learns (``docs/personas.md``). Any number
of :class:`PersonaWriter` may run — ``intentstream personas`` processes, or one inside
each worker (:func:`start_in_worker`) — and a Redis **lease** decides which one:

* ``SET P:pers:writer <token> NX PX lease_ttl_s`` takes it; the holder renews it every
  ``lease_renew_s`` with a compare-and-set script (``PEXPIRE`` only if the value is still
  its token); the others retry every ``acquire_interval_s`` as hot standby and take over
  within about ``lease_ttl_s`` of a crash. A graceful stop checkpoints, then deletes the
  lease (compare-and-delete), so a standby takes over at once.
* **Fencing.** Every write of the holder — users' clusters, checkpoint + labels — is a Lua
  script that first checks the lease still holds its token, so a holder that lost the
  lease without noticing (a long pause, a network partition) can never overwrite its
  successor's state; its next write raises :class:`LeaseLost` and it goes back to
  standby. Safety does not depend on clocks or on renewing in time.

**Exactly once in effect.** On gaining the lease the writer restores the last checkpoint
(``PersonaService.start``), whose ``meta["offsets"]`` holds, per partition of the topic,
the offset of the next record not yet learned, and seeks there (partitions without one:
the beginning). It checkpoints every ``[personas] checkpoint_every_segments`` segments or
``checkpoint_every_s`` seconds and on a graceful stop, always with the offsets of exactly
what the checkpointed model has learned. After a crash the successor restores the model
as of the checkpoint and re-learns the records after it: each record is learned once by
the model that survives. Users' clusters written ahead of the checkpoint are written
again with the same values by the replay, because the replay learns the same records in
the same order.

**Order across partitions** (:class:`PartitionMerger`). Kafka orders records only within
a partition; in which order a consumer *sees* records of different partitions depends on
fetch timing, which differs between a live run and a replay. The writer therefore does not
learn in arrival order: it learns the partitions' records merged by (record timestamp,
partition, offset), each partition in offset order, taking the smallest head only once no
partition can still deliver a smaller one — every partition either has a record buffered,
or was read to its end (position = high watermark) at a time at least ``merge_grace_s``
after the candidate's timestamp. That order is a function of the records alone, so a
replay from a checkpoint continues it exactly (the merge state is just the per-partition
positions, which the checkpoint holds). The one assumption: a record becomes visible to
the writer less than ``merge_grace_s`` after its timestamp (the worker's outbox producer
stamps records at send time, ``linger_ms=5``, ``acks=all``; the writer's fetch long-poll
adds up to 0.1 s). A record delayed longer (a producer's clock behind the writer's by more than
the grace, a send retried for seconds) is learned when it arrives, so that stretch of a
live run may differ from a replay; both orders are valid, and only the model's last
few-hundred-segment influence differs — learning is a running mean. The price is up to
``merge_grace_s`` of latency while a partition is idle.

Malformed records (tombstones, not JSON, not an object, a missing or mistyped segment
field) are counted by reason and skipped; their offsets still advance. Redis outages: the
writer waits and retries with backoff (``retry_max_s``), never skipping a segment.

Redis Cluster: the fenced scripts touch the lease, checkpoint, labels and users keys
together, so they must share a hash slot; the product uses a single Redis (primary +
replicas), where this holds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, fields
from typing import Any, NamedTuple, TypeVar

from aiokafka.errors import KafkaError

from intentstream.stream import codec
from intentstream.stream.state.redis.keys import writer_lease_key
from intentstream.stream.personas.model import CheckpointError, PersonaService
from intentstream.stream.sessions.segments import IntentSegment
from intentstream.stream.settings import PersonaWriterSettings, Settings
from intentstream.stream.state.redis.personas import RedisPersonaStore

log = logging.getLogger("intentstream.personas")
T = TypeVar("T")

__all__ = [
    "LeaseLost",
    "MalformedSegment",
    "PartitionMerger",
    "PersonaWriter",
    "RedisLease",
    "SegmentRecord",
    "FencedPersonaStore",
    "parse_segment",
    "start_in_worker",
]


# --------------------------------------------------------------------------- records


class MalformedSegment(ValueError):
    """A ``segments`` record that is not a closed intent segment; ``reason`` is a short code:
    ``empty``, ``not_json``, ``not_object``, ``missing_field``, ``bad_field_type`` (the
    writer also counts ``learn_failed``: a valid record the model raised on, logged)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _check_str(v: Any) -> bool:
    return isinstance(v, str)


def _check_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_float(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_counts(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _check_float(n) for k, n in v.items())


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": _check_str, "int": _check_int, "float": _check_float, "dict[str, int]": _check_counts,
}  # fmt: skip
#: (field, required, type check) for every field of IntentSegment, from the dataclass itself.
_SEGMENT_FIELDS: tuple[tuple[str, bool, Callable[[Any], bool]], ...] = tuple(
    (f.name, f.default is MISSING and f.default_factory is MISSING, _CHECKS.get(str(f.type), lambda v: True))
    for f in fields(IntentSegment)
)


def parse_segment(value: bytes | None) -> dict[str, Any]:
    """A ``segments`` record value (``IntentSegment.to_dict()`` JSON) as a dict the model can
    learn, or :class:`MalformedSegment`. Every field :class:`~intentstream.stream.sessions.segments.IntentSegment`
    declares is type-checked (required ones must be present; ``user_id`` non-empty).

    >>> seg = parse_segment(b'{"user_id":"u1","session_id":"s","segment_id":"s:0","seq":0,'
    ...     b'"start_ms":1,"end_ms":2,"duration_min":0.5,"interactions":3,"intent":"coupon",'
    ...     b'"intent_strength":0.7,"urgency":"medium","main_activity":"coupon_oriented",'
    ...     b'"kyc_status":"not_started","transaction_status":"none","behaviour_stage":"exploring",'
    ...     b'"lifecycle_stage":"introduction","type_counts":{"coupon_view":3}}')
    >>> seg["user_id"], seg["interactions"]
    ('u1', 3)
    >>> for bad in (None, b"{", b"[1]", b'{"user_id":"u1"}', codec.dumps({**seg, "amount": "9"})):
    ...     try:
    ...         parse_segment(bad)
    ...     except MalformedSegment as exc:
    ...         print(exc.reason)
    empty
    not_json
    not_object
    missing_field
    bad_field_type
    """
    if not value:
        raise MalformedSegment("empty")
    try:
        d = codec.loads(value)
    except codec.JSONDecodeError as exc:
        raise MalformedSegment("not_json", str(exc)[:80]) from None
    if not isinstance(d, dict):
        raise MalformedSegment("not_object", type(d).__name__)
    for name, required, check in _SEGMENT_FIELDS:
        v = d.get(name)
        if v is None:
            if required:
                raise MalformedSegment("missing_field", name)
            continue
        if not check(v):
            raise MalformedSegment("bad_field_type", name)
    if not d["user_id"]:
        raise MalformedSegment("bad_field_type", "user_id")
    return d


class SegmentRecord(NamedTuple):
    """One fetched record of the ``segments`` topic (timestamp in epoch ms)."""

    partition: int
    offset: int
    timestamp: int
    value: bytes | None


class PartitionMerger:
    """Per-partition buffers of fetched records, released in a deterministic order.

    :meth:`release` repeatedly takes the head with the smallest (timestamp, partition,
    offset), but only while no partition could still deliver a smaller one: every
    partition has a buffered record, or its ``horizon`` (the wall-clock ms at which it was
    last seen read to its end; None = unknown, not at its end) is more than ``grace_ms``
    past the candidate's timestamp. Within a partition, offset order always holds. The
    released sequence depends only on the records, not on how they were fetched:

    >>> recs = {0: [(0, 10), (1, 30)], 1: [(0, 20), (1, 25)]}  # partition: [(offset, ts)]
    >>> def run(chunks):
    ...     m, out = PartitionMerger([0, 1]), []
    ...     for p, recs_ in chunks:
    ...         m.add(SegmentRecord(p, o, ts, None) for o, ts in recs_)
    ...         out += m.release({0: None, 1: None}, grace_ms=0)
    ...     out += m.release({0: 10**6, 1: 10**6}, grace_ms=0)  # both read to their end
    ...     return [(r.partition, r.offset) for r in out]
    >>> run([(0, recs[0]), (1, recs[1])]) == run([(1, recs[1][:1]), (0, recs[0]), (1, recs[1][1:])])
    True
    >>> run([(0, recs[0]), (1, recs[1])])
    [(0, 0), (1, 0), (1, 1), (0, 1)]
    >>> m = PartitionMerger([0, 1]); m.add([SegmentRecord(0, 0, 1000, None)])
    >>> m.release({1: 2500}, grace_ms=2000), len(m.release({1: 3500}, grace_ms=2000))
    ([], 1)
    """

    def __init__(self, partitions: Iterable[int]) -> None:
        self.buffers: dict[int, deque[SegmentRecord]] = {p: deque() for p in sorted(partitions)}

    def add(self, records: Iterable[SegmentRecord]) -> None:
        for r in records:
            self.buffers[r.partition].append(r)

    def size(self, partition: int) -> int:
        return len(self.buffers[partition])

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def release(self, horizons: Mapping[int, int | None], grace_ms: int, limit: int | None = None) -> list[SegmentRecord]:
        out: list[SegmentRecord] = []
        buffers = self.buffers
        while limit is None or len(out) < limit:
            best: SegmentRecord | None = None
            bound = math.inf  # a head at or after this could be preceded by a record not yet seen
            for p, buf in buffers.items():
                if buf:
                    r = buf[0]
                    if best is None or (r.timestamp, p, r.offset) < (best.timestamp, best.partition, best.offset):
                        best = r
                else:
                    h = horizons.get(p)
                    if h is None:
                        return out
                    bound = min(bound, h - grace_ms)
            if best is None or best.timestamp >= bound:
                return out
            buffers[best.partition].popleft()
            out.append(best)
        return out


# --------------------------------------------------------------------------- lease + fenced store


class LeaseLost(RuntimeError):
    """This writer no longer holds the single-writer lease; its writes were refused."""


_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# KEYS: lease, checkpoint, labels. ARGV: token, checkpoint bytes, label field, value, ...
_SAVE_CHECKPOINT = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[2], ARGV[2])
redis.call('del', KEYS[3])
if #ARGV > 2 then redis.call('hset', KEYS[3], unpack(ARGV, 3)) end
return 1
"""
# KEYS: lease, users hash. ARGV: token, user, cluster, user, cluster, ...
_SET_ASSIGNMENTS = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('hset', KEYS[2], unpack(ARGV, 2))
return 1
"""


class RedisLease:
    """The single-writer lease: a Redis string holding the holder's token, with a TTL.

    Blocking calls (redis-py); the writer runs them in a thread.
    """

    def __init__(self, client: Any, key: str, ttl_s: float, owner: str) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.owner = owner
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def try_acquire(self) -> str | None:
        """A new token if the lease was free (now ours for ``ttl_s``), else None."""
        token = f"{self.owner}:{uuid.uuid4().hex[:12]}"
        return token if self.client.set(self.key, token, nx=True, px=self.ttl_ms) else None

    def renew(self, token: str) -> bool:
        """Extend the lease to ``ttl_s`` from now if ``token`` still holds it."""
        return bool(self._renew(keys=[self.key], args=[token, self.ttl_ms]))

    def release(self, token: str) -> bool:
        """Give the lease up if ``token`` holds it (a standby can take it at once)."""
        return bool(self._release(keys=[self.key], args=[token]))

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


class FencedPersonaStore(RedisPersonaStore):
    """:class:`RedisPersonaStore` whose writes succeed only while ``token`` holds the lease
    (one Lua script per write: check the lease, then write); otherwise :class:`LeaseLost`.
    Readers and the key layout are unchanged."""

    def __init__(self, client: Any, key_prefix: str, lease_key: str, token: str, *, batch: int = 1000) -> None:
        super().__init__(client, key_prefix, batch=batch)
        self.lease_key = lease_key
        self.token = token
        self._save = client.register_script(_SAVE_CHECKPOINT)
        self._assign = client.register_script(_SET_ASSIGNMENTS)

    def save_checkpoint(self, checkpoint: bytes, labels: Mapping[int, Mapping[str, str]]) -> None:
        args: list[Any] = [self.token, checkpoint]
        for c, v in sorted(labels.items()):
            args += [str(c), codec.dumps(dict(v))]
        if not self._save(keys=[self.lease_key, self.ckpt_key, self.labels_key], args=args):
            raise LeaseLost("checkpoint refused: the lease is held by another writer")

    def set_assignments(self, assignments: Mapping[str, int]) -> None:
        items = list(assignments.items())
        for i in range(0, len(items), self.batch):
            args: list[Any] = [self.token]
            for u, c in items[i : i + self.batch]:
                args += [u, str(c)]
            if not self._assign(keys=[self.lease_key, self.users_key], args=args):
                raise LeaseLost("users' clusters refused: the lease is held by another writer")


# --------------------------------------------------------------------------- the writer


def _transient_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.ReadOnlyError,  # a replica promoted while we wrote
        ConnectionError,
        TimeoutError,
        OSError,
    )


def consumer_options(settings: Settings) -> dict[str, Any]:
    """aiokafka connection options (SASL/TLS as the worker's) for the writer's consumer."""
    from intentstream.agents.app import aiokafka_options

    return aiokafka_options(settings, "personas")


class _Stopping(Exception):
    """The stop event was set while waiting (internal)."""


class PersonaWriter:
    """Learns the ``segments`` topic into the persona model while holding the lease.

    ``await writer.run(stop)`` runs until ``stop`` is set: as standby until it gets the
    lease, then as the writer (restore, seek, learn, checkpoint), back to standby if the
    lease is lost. On ``stop`` the holder writes a final checkpoint and releases the lease.
    Cancelling the task instead is a crash: nothing more is written and the lease expires
    after ``lease_ttl_s``.

    ``counters``: ``learned`` (segments learned by this process), ``malformed`` and
    ``malformed.<reason>``, ``records`` (fetched), ``checkpoints``, ``terms`` (leases
    gained), ``lease_lost``, ``store_retries`` (Redis outages), ``kafka_errors`` (the
    consumer is rebuilt from the learned offsets; model and lease are kept). ``service``
    is the current holder's :class:`~intentstream.stream.personas.model.PersonaService` (None while standby).
    """

    def __init__(self, settings: Settings, *, owner: str | None = None, redis_client: Any = None) -> None:
        cfg: PersonaWriterSettings = settings.persona_writer
        if not 0 < cfg.lease_renew_s < cfg.lease_ttl_s:
            raise ValueError(
                f"[persona_writer] lease_renew_s ({cfg.lease_renew_s}) must be between 0 and lease_ttl_s ({cfg.lease_ttl_s})"
            )
        if cfg.max_batch < 1:
            raise ValueError("[persona_writer] max_batch must be at least 1")
        self.settings = settings
        self.cfg = cfg
        self.topic = settings.topics.segments
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._client = redis_client
        self._own_client = redis_client is None
        self.counters: Counter[str] = Counter()
        self.service: PersonaService | None = None
        self.token: str | None = None
        self.offsets: dict[int, int] = {}  # next offset to learn, per partition (this term)
        self._stop: asyncio.Event | None = None
        self._lost: asyncio.Event | None = None
        self._transient = _transient_errors()

    @property
    def is_leader(self) -> bool:
        return self.token is not None

    # -- helpers --------------------------------------------------------------------------

    def _client_for(self) -> Any:
        if self._client is None:
            import redis

            rs = self.settings.redis
            self._client = redis.Redis.from_url(rs.url, password=rs.password or None, socket_timeout=rs.socket_timeout_s)
        return self._client

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when stopped (raises _Stopping) or the lease is lost."""
        stop, lost = self._stop, self._lost
        waits = [asyncio.ensure_future(e.wait()) for e in (stop, lost) if e is not None]
        if not waits:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait(waits, timeout=seconds)
        finally:
            for w in waits:
                w.cancel()
        self._check()

    def _check(self) -> None:
        if self._lost is not None and self._lost.is_set():
            raise LeaseLost("lease renewal refused")
        if self._stop is not None and self._stop.is_set():
            raise _Stopping()

    async def _retrying(self, what: str, fn: Callable[[], T], *, deadline: float | None = None) -> T:
        """Run a blocking Redis call in a thread; on an outage wait and retry (forever, or
        until ``deadline`` on the monotonic clock; then TimeoutError). Stops waiting when the
        writer is stopped or loses the lease (unless a deadline is given: the final step)."""
        delay = 0.1
        while True:
            try:
                return await asyncio.to_thread(fn)
            except self._transient as exc:
                self.counters["store_retries"] += 1
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise TimeoutError(f"{what}: Redis unavailable ({exc})") from exc
                log.warning("%s: Redis unavailable (%s); retrying in %.1fs", what, exc, delay)
                if deadline is None:
                    await self._sleep(delay)
                else:
                    await asyncio.sleep(delay)
                delay = min(delay * 2, self.cfg.retry_max_s)

    # -- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Standby, lead, standby, ... until ``stop`` is set."""
        client = self._client_for()
        lease = RedisLease(client, writer_lease_key(self.settings.redis.key_prefix), self.cfg.lease_ttl_s, self.owner)
        self._stop = stop
        try:
            while not stop.is_set():
                self._lost = None
                try:
                    token = await self._retrying("lease", lease.try_acquire)
                    if token is None:
                        await self._sleep(self.cfg.acquire_interval_s)
                        continue
                    self.counters["terms"] += 1
                    log.info("personas writer %s: lease acquired, learning %s", self.owner, self.topic)
                    await self._lead(lease, token)
                except LeaseLost as exc:
                    self.counters["lease_lost"] += 1
                    log.warning("personas writer %s: %s; back to standby", self.owner, exc)
                except _Stopping:
                    break
        finally:
            self.token = None
            self.service = None
            if self._own_client and self._client is not None:
                self._client.close()
                self._client = None

    async def _lead(self, lease: RedisLease, token: str) -> None:
        self.token = token
        self._lost = lost = asyncio.Event()
        renewer = asyncio.create_task(self._renew_loop(lease, token, lost), name="personas-lease-renew")
        consumer = None
        graceful = False
        try:
            store = FencedPersonaStore(lease.client, self.settings.redis.key_prefix, lease.key, token)
            try:
                svc = await self._retrying("restore checkpoint", lambda: PersonaService.start(self.settings, store))
            except CheckpointError:
                await asyncio.to_thread(lease.release, token)
                raise
            self.service = svc
            self.offsets = self._saved_offsets(svc.meta)
            log.info(
                "personas writer: model at %d segments; resuming at offsets %s",
                svc.model.segments_seen, self.offsets or "beginning",
            )
            delay = 0.5
            while True:  # one consumer; a new one when partitions were added or Kafka failed
                failed = False
                try:
                    consumer = await self._start_consumer()
                    again = await self._consume(consumer, svc)
                except KafkaError as exc:  # e.g. no broker reachable at start: keep the model and lease
                    self.counters["kafka_errors"] += 1
                    log.warning("personas writer: Kafka error (%r); reconnecting in %.1fs", exc, delay)
                    again = failed = True
                finally:
                    if consumer is not None:
                        await asyncio.shield(consumer.stop())
                        consumer = None
                if not again:
                    break
                if failed:
                    await self._sleep(delay)
                    delay = min(delay * 2, self.cfg.retry_max_s)
                else:
                    delay = 0.5
        except _Stopping:
            graceful = not lost.is_set()
        finally:
            renewer.cancel()
            if consumer is not None:
                await asyncio.shield(consumer.stop())
            if graceful and self.service is not None:
                await self._final_checkpoint(lease, token, self.service)
            self.token = None
            self.service = None
            self._lost = None

    def _saved_offsets(self, meta: Mapping[str, Any]) -> dict[int, int]:
        topic = meta.get("topic")
        if topic is not None and topic != self.topic:
            log.warning("checkpoint offsets are for topic %r, not %r: reading it from the beginning", topic, self.topic)
            return {}
        return {int(p): int(o) for p, o in (meta.get("offsets") or {}).items()}

    def _meta(self) -> dict[str, Any]:
        return {"topic": self.topic, "offsets": {str(p): o for p, o in sorted(self.offsets.items())}, "writer": self.owner}

    async def _renew_loop(self, lease: RedisLease, token: str, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.cfg.lease_renew_s)
            try:
                ok = await asyncio.to_thread(lease.renew, token)
            except self._transient as exc:
                self.counters["store_retries"] += 1
                log.warning("lease renewal: Redis unavailable (%s)", exc)
                continue  # writes are fenced: safe even if the lease expires meanwhile
            except Exception:
                log.exception("lease renewal failed; giving the lease up")
                lost.set()
                return
            if not ok:
                lost.set()
                return

    async def _start_consumer(self) -> Any:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            **consumer_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a saved offset no longer retained: from the beginning
            fetch_max_wait_ms=100,  # fresh "read to its end" horizons; a resumed partition is fetched soon
        )
        try:
            await consumer.start()
            partitions = await self._partitions(consumer, wait=True)
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            for tp in tps:
                if tp.partition in self.offsets:
                    consumer.seek(tp, self.offsets[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
        except BaseException:
            await asyncio.shield(consumer.stop())
            raise
        return consumer

    async def _partitions(self, consumer: Any, wait: bool) -> list[int]:
        delay = 0.5
        while True:
            cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001 (no public call)
            parts = cluster.partitions_for_topic(self.topic)
            if parts or not wait:
                return sorted(parts or ())
            log.warning("topic %r does not exist yet (create it with `intentstream topics`); waiting", self.topic)
            await self._sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _consume(self, consumer: Any, svc: PersonaService) -> bool:
        """Learn until stopped (raises _Stopping) or the lease is lost (LeaseLost); True when
        the topic gained partitions and the consumer must be rebuilt."""
        from aiokafka import TopicPartition

        cfg = self.cfg
        partitions = sorted(tp.partition for tp in consumer.assignment())
        tps = {p: TopicPartition(self.topic, p) for p in partitions}
        merger = PartitionMerger(partitions)
        grace_ms = int(cfg.merge_grace_s * 1000)
        high, low = 2 * cfg.max_batch, cfg.max_batch // 2
        paused: set[int] = set()
        next_refresh = time.monotonic() + cfg.partition_refresh_s
        backlog = False  # records left releasable by the last step: do not wait for new ones
        while True:
            self._check()
            fetched = await consumer.getmany(timeout_ms=0 if backlog else 200, max_records=cfg.max_batch)
            for tp, recs in fetched.items():
                merger.add(SegmentRecord(tp.partition, r.offset, r.timestamp, r.value) for r in recs)
                self.counters["records"] += len(recs)
            for p in partitions:  # bounded buffers: a partition far ahead waits for the others
                n = merger.size(p)
                if p not in paused and n >= high:
                    consumer.pause(tps[p])
                    paused.add(p)
                elif p in paused and n <= low:
                    consumer.resume(tps[p])
                    paused.discard(p)
            horizons: dict[int, int | None] = {}
            for p in partitions:
                if merger.size(p):
                    continue
                hw = consumer.highwater(tps[p])
                horizons[p] = None
                if hw is not None and await consumer.position(tps[p]) >= hw:
                    horizons[p] = consumer.last_poll_timestamp(tps[p])
            ready = merger.release(horizons, grace_ms, limit=cfg.max_batch)
            backlog = len(ready) >= cfg.max_batch
            if ready:
                await asyncio.to_thread(self._learn, svc, ready)
            now_ms = int(time.time() * 1000)
            meta = self._meta()
            if await self._retrying("checkpoint", lambda: svc.maybe_checkpoint(now_ms, meta=meta)):
                self.counters["checkpoints"] += 1
            if time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + cfg.partition_refresh_s
                if set(await self._partitions(consumer, wait=False)) - set(partitions):
                    log.info("topic %r gained partitions; reassigning", self.topic)
                    return True

    def _learn(self, svc: PersonaService, records: list[SegmentRecord]) -> None:
        """Learn records in the given order (in a thread); malformed ones are counted and skipped."""
        counters, offsets = self.counters, self.offsets
        for r in records:
            try:
                seg = parse_segment(r.value)
            except MalformedSegment as exc:
                counters["malformed"] += 1
                counters[f"malformed.{exc.reason}"] += 1
                log.debug("segments %d@%d skipped: %s", r.partition, r.offset, exc)
            else:
                try:
                    svc.on_segment(seg)
                    counters["learned"] += 1
                except Exception:  # a bug on some valid-looking record: never a crash loop
                    counters["malformed"] += 1
                    counters["malformed.learn_failed"] += 1
                    log.exception("segments %d@%d could not be learned; skipped", r.partition, r.offset)
            offsets[r.partition] = r.offset + 1

    async def _final_checkpoint(self, lease: RedisLease, token: str, svc: PersonaService) -> None:
        deadline = time.monotonic() + self.cfg.stop_timeout_s
        now_ms = int(time.time() * 1000)
        meta = self._meta()
        try:
            final = lambda: svc.maybe_checkpoint(now_ms, force=True, meta=meta)  # noqa: E731
            await self._retrying("final checkpoint", final, deadline=deadline)
            self.counters["checkpoints"] += 1
            await self._retrying("lease release", lambda: lease.release(token), deadline=deadline)
            log.info(
                "personas writer: final checkpoint at %d segments, offsets %s; lease released",
                svc.model.segments_seen, meta["offsets"],
            )
        except LeaseLost as exc:
            log.warning("personas writer: no final checkpoint: %s", exc)
        except TimeoutError as exc:
            log.error("personas writer: no final checkpoint (%s); the successor replays from the last one", exc)


# --------------------------------------------------------------------------- inside the worker


def start_in_worker(app: Any, settings: Settings) -> PersonaWriter | None:
    """Run a :class:`PersonaWriter` as a service of the Faust ``app`` (call in ``build``,
    before the worker starts): started with the app, stopped gracefully (final checkpoint,
    lease released) when the worker shuts down. Every worker runs one; the lease makes one
    of them learn and the others hot standby. Returns the writer (for its counters), or
    None when ``[persona_writer] in_worker`` is false."""
    if not settings.persona_writer.in_worker:
        return None
    import mode

    writer = PersonaWriter(settings)
    timeout = settings.persona_writer.stop_timeout_s + 5.0

    @app.service
    class PersonaWriterService(mode.Service):
        _task: asyncio.Task | None = None
        _stop_event: asyncio.Event | None = None

        async def on_start(self) -> None:
            self._stop_event = asyncio.Event()
            self._task = asyncio.create_task(writer.run(self._stop_event), name="personas-writer")
            self._task.add_done_callback(_report_exit)

        async def on_stop(self) -> None:
            if self._task is None or self._stop_event is None:
                return
            self._stop_event.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                self._task.cancel()
            except Exception:  # already logged by _report_exit
                pass

    return writer


def _report_exit(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("personas writer stopped: %r", task.exception(), exc_info=task.exception())
