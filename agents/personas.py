"""The personas single writer: the ``segments`` topic -> :class:`~intentstream.stream.personas.service.PersonaService`
-> Redis, learned by exactly one process at a time.

River models cannot be merged, so one process learns (``docs/personas.md``). Any number
of :class:`PersonaWriter` may run — ``intentstream personas`` processes, or one inside
each worker (:func:`start_in_worker`) — and a Redis lease
(:class:`~intentstream.stream.state.redis.lease.RedisWriterLease`, ``P:{pers}:writer``)
decides which one: the holder renews it every ``lease_renew_s``; the others retry every
``acquire_interval_s`` as hot standby and take over within about ``lease_ttl_s`` of a
crash. A graceful stop checkpoints, then releases the lease, so a standby takes over at
once. Every write of the holder goes through the lease's fenced store, so a holder that
lost the lease without noticing gets :class:`~intentstream.stream.state.lease.LeaseLost`
and goes back to standby (:mod:`intentstream.stream.state.lease`).

This module is the driver only: Kafka in, Redis out. What it does with the records is
the engine's: the order across partitions and the offsets a checkpoint holds
(:mod:`intentstream.stream.personas.merge`), parsing and learning them
(:mod:`intentstream.stream.personas.records`), the model and its checkpoints
(:mod:`intentstream.stream.personas.service`).

**Exactly once in effect.** On gaining the lease the writer restores the last checkpoint
(``PersonaService.start``), whose ``meta["offsets"]`` holds, per partition of the topic,
the offset of the next record not yet learned, and seeks there (partitions without one:
the beginning). It checkpoints every ``[personas] checkpoint_every_segments`` segments or
``checkpoint_every_s`` seconds and on a graceful stop, always with the offsets of exactly
what the checkpointed model has learned. After a crash the successor restores the model
as of the checkpoint and re-learns the records after it: each record is learned once by
the model that survives. Users' clusters written ahead of the checkpoint are written
again with the same values by the replay, because the replay learns the same records in
the same order (:class:`~intentstream.stream.personas.merge.PartitionMerger`). The
merge's one assumption: a record becomes visible to the writer less than
``merge_grace_s`` after its timestamp (the worker's outbox producer stamps records at
send time, ``linger_ms=5``, ``acks=all``; the writer's fetch long-poll adds up to 0.1 s).

Malformed records (tombstones, not JSON, not an object, a missing or mistyped segment
field) are counted by reason and skipped; their offsets still advance. Redis outages: the
writer waits and retries with backoff (``retry_max_s``), never skipping a segment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiokafka.errors import KafkaError

from intentstream.stream.personas.checkpoint import CheckpointError
from intentstream.stream.personas.merge import PartitionMerger, SegmentRecord, checkpoint_meta, saved_offsets
from intentstream.stream.personas.records import learn_records
from intentstream.stream.personas.service import PersonaService
from intentstream.stream.settings import PersonaWriterSettings, Settings
from intentstream.stream.state.lease import LeaseLost, WriterLease
from intentstream.stream.state.redis.client import make_client
from intentstream.stream.state.redis.lease import RedisWriterLease
from intentstream.stream.state.redis.personas import migrate_legacy_personas

log = logging.getLogger("intentstream.personas")
T = TypeVar("T")

__all__ = ["PersonaWriter", "start_in_worker"]


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
    from intentstream.agents.kafka import aiokafka_options

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
    is the current holder's :class:`~intentstream.stream.personas.service.PersonaService` (None while standby).
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
            self._client = make_client(self.settings.redis)
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
        lease = RedisWriterLease(client, self.settings.redis.key_prefix, self.cfg.lease_ttl_s, self.owner)
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

    async def _lead(self, lease: WriterLease, token: str) -> None:
        self.token = token
        self._lost = lost = asyncio.Event()
        renewer = asyncio.create_task(self._renew_loop(lease, token, lost), name="personas-lease-renew")
        consumer = None
        graceful = False
        try:
            store = lease.fenced_store(token)
            # a deployment upgraded from the old key layout keeps its model and personas
            prefix = self.settings.redis.key_prefix
            await self._retrying("legacy personas", lambda: migrate_legacy_personas(self._client_for(), prefix))
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
        offsets = saved_offsets(meta, self.topic)
        if offsets is None:
            log.warning("checkpoint offsets are for topic %r, not %r: reading it from the beginning", meta.get("topic"), self.topic)
            return {}
        return offsets

    def _meta(self) -> dict[str, Any]:
        return checkpoint_meta(self.topic, self.offsets, self.owner)

    async def _renew_loop(self, lease: WriterLease, token: str, lost: asyncio.Event) -> None:
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
                await asyncio.to_thread(learn_records, svc, ready, self.offsets, self.counters)
            now_ms = int(time.time() * 1000)
            meta = self._meta()
            if await self._retrying("checkpoint", lambda: svc.maybe_checkpoint(now_ms, meta=meta)):
                self.counters["checkpoints"] += 1
            if time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + cfg.partition_refresh_s
                if set(await self._partitions(consumer, wait=False)) - set(partitions):
                    log.info("topic %r gained partitions; reassigning", self.topic)
                    return True

    async def _final_checkpoint(self, lease: WriterLease, token: str, svc: PersonaService) -> None:
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
