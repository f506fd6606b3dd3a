"""The worker: a Faust agent per input topic that moves bytes between Kafka, the engine
in ``stream`` and Redis. No business logic lives here.

Per batch of one partition: run the partition's engine in a thread (it commits state and
outbox atomically to Redis), then publish the outbox with an idempotent producer, wait
for every ack, and ack the outbox (see :mod:`intentstream.agents.outbox` for the exactly-once
argument). Redis outages pause the partition and retry the same batch with backoff; no
event is skipped. A partition that received nothing for ``[triggers] idle_partition_s``
adopts the highest watermark of the other partitions (read from Redis, so it works
across workers), which fires its due timers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict
from typing import Any, Callable, TypeVar

import faust
from aiokafka import AIOKafkaProducer

from intentstream.agents.admin import ensure_topics
from intentstream.agents.app import Topics, create_app
from intentstream.agents.breaker import Breaker
from intentstream.agents.kafka import aiokafka_options, kafka_python_options
from intentstream.agents.outbox import ID_HEADER, already_published
from intentstream.stream.engine.partitioning import partition_for
from intentstream.stream.engine.gc_policy import tune_for_long_lived_state
from intentstream.stream.engine.watermark import idle_adoptions
from intentstream.stream.ops.outcomes import OutcomeMeter
from intentstream.stream.settings import Settings
from intentstream.stream.state import StoreUnavailable
from intentstream.stream.state.redis.client import UNAVAILABLE

log = logging.getLogger("intentstream.worker")
T = TypeVar("T")
# a store outage: from the stores, or raw from redis-py (the ledger's scripts; a Redis
# Cluster failing over)
_OUTAGE: tuple[type[BaseException], ...] = (StoreUnavailable, ConnectionError, TimeoutError, OSError, *UNAVAILABLE)


class Pipeline:
    """Engines of the assigned partitions, their outbox publishing and idle handling."""

    def __init__(
        self, settings: Settings, store: Any, make_engine: Callable[[int], Any], producer: AIOKafkaProducer, breaker: Breaker | None = None
    ) -> None:
        self.settings = settings
        # the circuit breakers (agents/breaker.py): they decide when actions.* entries leave
        # the outbox, never what is in it
        self.breaker = breaker or Breaker(settings, None, "", "")
        self.breaker_loaded = False
        self._alarms: set[asyncio.Task] = set()
        self.store = store
        self.make_engine = make_engine
        self.producer = producer
        self.engines: dict[int, Any] = {}
        self.recovered: set[int] = set()
        self.last_input: dict[int, float] = {}
        self.partition_counts: dict[str, int] = {}
        self.counters: dict[str, int] = defaultdict(int)
        self.outcomes = OutcomeMeter.from_settings(settings.outcomes)  # rolling conversion and uplift per trigger
        self.lock = asyncio.Lock()  # one step at a time: the agent and the idle timer share engines

    def engine(self, p: int) -> Any:
        eng = self.engines.get(p)
        if eng is None:
            eng = self.engines[p] = self.make_engine(p)
        return eng

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: drop their engines (and caches); recover on reassignment."""
        for p in partitions:
            self.engines.pop(p, None)
            self.recovered.discard(p)
            self.last_input.pop(p, None)
        self.breaker.gate.forget(partitions)

    async def retrying(self, what: str, fn: Callable[[], T]) -> T:
        """Run a blocking store call in a thread; on a store outage wait and retry forever."""
        delay = 0.2
        while True:
            try:
                return await asyncio.to_thread(fn)
            except _OUTAGE as exc:
                self.counters["store_retries"] += 1
                log.warning("%s: state store unavailable (%s); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.worker.redis_retry_max_s)

    async def handle(self, batches: dict[int, list[tuple[int, bytes]]]) -> None:
        """One fetched batch: each partition's engine step in turn (a thread each), then
        every partition's outbox published together — one wait for acks, not one per
        partition."""
        async with self.lock:
            if not self.breaker_loaded:  # a restarted worker must not publish past an open breaker
                await self.retrying("breaker", self.breaker.refresh)
                self.breaker_loaded = True
            stepped = []
            produced: dict[str, int] = defaultdict(int)
            for p, records in sorted(batches.items()):
                eng = self.engine(p)
                await self.recover(p, eng)
                self.last_input[p] = time.monotonic()
                result = await self.retrying(f"partition {p}", functools.partial(eng.process, records))
                for name, value in result.counters.items():
                    self.counters[name] += value
                    produced[name] += value
                self.outcomes.observe(result.counters)
                for reason, n in result.invalid.items():
                    self.counters[f"invalid:{reason}"] += n
                stepped.append((p, eng, result.outbox))
            await self.watch_storm([e for _, _, outbox in stepped for e in outbox], produced)
            # what each step just committed: no need to read it back from Redis (entries
            # a failed publish leaves behind go out with the next tick)
            await asyncio.gather(*(self.publish(p, eng, entries) for p, eng, entries in stepped))

    async def watch_storm(self, entries: list, produced: dict[str, int]) -> None:
        """Feed the storm rule what the steps produced; trip the breaker (for every worker)
        and raise the alert at once when it breaks."""
        sends = sum(1 for e in entries if self.breaker.channel(e.topic))
        trip = self.breaker.observe(sends, produced["decisions"], produced["events"], produced["late"])
        if trip is None:
            return
        opened = await self.retrying("breaker", lambda: self.breaker.trip(trip))
        if opened and self.breaker.alarm is not None:
            task = asyncio.ensure_future(self.breaker.alarm())
            self._alarms.add(task)
            task.add_done_callback(self._alarms.discard)

    async def recover(self, p: int, eng: Any) -> None:
        """Before a partition's first step: publish what a previous owner left in its outbox."""
        if p in self.recovered:
            return
        pending = await self.retrying(f"partition {p} outbox", eng.pending_outbox)
        if pending:
            since = await self.retrying(f"partition {p} offsets", lambda: self.store.output_offsets(p))
            targets = [(e.id, e.topic, self.target_partition(e)) for e in pending]
            kafka_opts = kafka_python_options(self.settings.kafka)
            done = await asyncio.to_thread(already_published, kafka_opts, targets, since)
            if done:
                await self.retrying(f"partition {p} ack", lambda: eng.ack(done))
            # actions left behind wait for the next full pass, whatever the breakers hold
            self.breaker.gate.block(p, {ch for e in pending if e.id not in done and (ch := self.breaker.channel(e.topic))})
            log.info("partition %d: recovered outbox (%d pending, %d already published)", p, len(pending), len(done))
        self.recovered.add(p)

    def target_partition(self, entry: Any) -> int:
        n = self.partition_counts.get(entry.topic, self.settings.topics.partitions)
        if entry.key is None:
            return int(entry.seq) % n
        return partition_for(entry.key, n)

    async def publish(self, p: int, eng: Any, entries: list | None = None) -> None:
        """Send a partition's outbox (``entries``, or all pending ones), wait for every
        ack, then ack the entries in Redis with the output offsets."""
        if entries is None:
            pending = await self.retrying(f"partition {p} outbox", eng.pending_outbox)
            if self.breaker.discards.get(p) is not None:
                await self.retrying(f"partition {p} discard", lambda: self.breaker.discard(p, pending))
                pending = await self.retrying(f"partition {p} outbox", eng.pending_outbox)
        else:
            pending = entries
        pending, _held = self.breaker.split(p, pending, full=entries is None)
        if not pending:
            return
        futures = []
        for e in pending:
            fut = await self.producer.send(
                e.topic, value=e.value, key=e.key, partition=self.target_partition(e),
                headers=[(ID_HEADER, e.id.encode())],
            )
            futures.append(fut)
        metas = await asyncio.gather(*futures)
        offsets: dict[tuple[str, int], int] = {}
        for md in metas:
            key = (md.topic, md.partition)
            offsets[key] = max(offsets.get(key, 0), md.offset + 1)
        ids = [e.id for e in pending]
        await self.retrying(f"partition {p} ack", lambda: eng.ack(ids, offsets))
        self.counters["published"] += len(ids)

    async def tick(self, assigned: set[int]) -> None:
        """Idle partitions adopt the highest watermark; pending outboxes are flushed."""
        now = time.monotonic()
        idle_after = self.settings.triggers.idle_partition_s
        async with self.lock:
            await self.retrying("breaker", self.breaker.refresh)
            self.breaker_loaded = True
            for p in sorted(assigned):
                eng = self.engine(p)
                await self.recover(p, eng)
                await self.publish(p, eng)
            for p in assigned:  # a partition without input since its assignment (e.g. all of it
                self.last_input.setdefault(p, now)  # consumed before a restart) is idle from here on
            idle = [p for p in sorted(assigned) if now - self.last_input[p] >= idle_after]
            if not idle:
                return
            n = self.settings.topics.partitions
            metas = await self.retrying("watermarks", lambda: [self.store.load_partition(q) for q in range(n)])
            # every partition's watermark from Redis (other workers' too); ours from our engines
            wms = [self.engine(q).meta.wm if q in idle else m.wm for q, m in enumerate(metas)]
            for p, wm in idle_adoptions(wms, idle):
                eng = self.engine(p)
                result = await self.retrying(f"partition {p} idle", functools.partial(eng.advance_to, wm))
                for name, value in result.counters.items():
                    self.counters[name] += value
                self.outcomes.observe(result.counters)
                await self.watch_storm(result.outbox, defaultdict(int, result.counters))
                await self.publish(p, eng)


def build(settings: Settings) -> tuple[faust.App, Topics]:
    """The Faust app with its agents and timers wired to a :class:`Pipeline`."""
    from intentstream.stream.engine.partition import PartitionEngine
    from intentstream.stream.state.redis.sessions import RedisSessionStore

    from intentstream.agents.personas import start_in_worker

    app, topics = create_app(settings)
    # the personas single writer: every worker runs one; only the Redis lease holder learns
    persona_writer = start_in_worker(app, settings)
    store = RedisSessionStore.from_settings(settings)
    state: dict[str, Pipeline] = {}
    starting = asyncio.Lock()

    async def pipeline() -> Pipeline:
        async with starting:  # the agent and the timer may both ask first
            if "p" not in state:
                producer = AIOKafkaProducer(**aiokafka_options(settings, "outbox"), acks="all", enable_idempotence=True, linger_ms=0)
                await producer.start()
                breaker = Breaker(settings, store.client, store.prefix, default_worker_id(settings))
                breaker.alarm = ops.reporter.report  # decision_storm on ops.alerts at once
                pipe = Pipeline(settings, store, lambda p: PartitionEngine(store, p, settings), producer, breaker)
                for name in topics.by_name():  # outputs go to explicit partitions: know how many
                    pipe.partition_counts[name] = len(await producer.partitions_for(name))
                state["p"] = pipe
        return state["p"]

    from intentstream.agents.monitoring import default_worker_id
    from intentstream.agents.monitoring import register as register_ops

    # ops.metrics / ops.alerts every [ops] metrics_interval_s, /health and /metrics
    ops = register_ops(app, lambda: state.get("p"), persona_writer, settings)

    @app.agent(topics.clickstream, name="sessionize")
    async def sessionize(stream: faust.StreamT) -> None:
        # take_events is a method of faust's Stream that its StreamT protocol does not declare
        async for events in stream.take_events(settings.worker.batch_size, within=settings.worker.batch_within_s):  # type: ignore[attr-defined]
            pipe = await pipeline()
            by_partition: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
            for ev in events:
                by_partition[ev.message.partition].append((ev.message.offset, ev.message.value))
            await pipe.handle(by_partition)

    @app.timer(interval=settings.worker.idle_tick_s)
    async def idle_tick() -> None:
        clickstream = settings.topics.clickstream
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == clickstream}
        if assigned:
            await (await pipeline()).tick(assigned)

    # faust calls it as (app, revoked); its typing of connect() wants (sender, *args, signal=...)
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
        if "p" in state:
            async with state["p"].lock:
                state["p"].forget({tp.partition for tp in revoked if tp.topic == settings.topics.clickstream})

    return app, topics


def run(settings: Settings, loglevel: str | None = None) -> int:
    """``intentstream worker``: create topics, then run until SIGTERM/SIGINT (graceful)."""
    ensure_topics(settings)
    tune_for_long_lived_state()  # the engines' caches are long-lived: stream/engine/gc_policy.py
    app, _topics = build(settings)
    worker = faust.Worker(app, loglevel=loglevel or settings.worker.log_level, override_logging=True)
    worker.execute_from_commandline()
    return 0
