"""Ops monitoring of a worker through topics and HTTP: the network side of :mod:`intentstream.stream.ops`.

* :class:`OpsReporter` — every ``[ops] metrics_interval_s`` takes a snapshot of the
  worker, builds the ``ops.metrics`` record (cumulative counters, per-interval deltas and
  rates, decisions by trigger x channel x status, per-partition watermark / applied offset
  / lag / pending timers, the persona writer's role) and evaluates the alert rules; it
  publishes the record and any alert records as JSON keyed by the worker id to
  ``[topics] metrics`` and ``[topics] alerts``. Record formats: :mod:`intentstream.stream.ops.metrics`,
  :mod:`intentstream.stream.ops.alerts`.
* :class:`WorkerProbe` — the snapshot of a running worker: the pipeline's counters and
  engines, the consumer's assignment and high watermarks, one Redis round trip for the
  partition meta it does not hold and the pending timers (bounded by ``[ops]
  probe_timeout_s``; without Redis the snapshot leaves those out).
* :func:`register` — wires both into the Faust app: ``GET /health`` (200 ``{"status":
  "ready"}`` once partitions are assigned and each one's outbox is recovered, else 503
  with what is missing), ``GET /metrics`` (Prometheus text format 0.0.4,
  :mod:`intentstream.stream.ops.prometheus`), and an ``app.timer`` running the reporter.

Nothing here blocks the event loop or takes the pipeline's lock: while Redis is down the
pipeline holds its lock for minutes, which is exactly when the reports matter.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from intentstream.stream import codec
from intentstream.stream.ops.alerts import AlertRules
from intentstream.stream.ops.metrics import MetricsBuilder
from intentstream.stream.ops.prometheus import PROMETHEUS_CONTENT_TYPE, render_prometheus
from intentstream.stream.ops.snapshot import PartitionState, PersonaState, WorkerSnapshot, lag_of, readiness
from intentstream.stream.settings import Settings
from intentstream.stream.state import PartitionMeta
from intentstream.stream.state.redis import keys

log = logging.getLogger("intentstream.ops")

__all__ = ["OpsHandle", "OpsReporter", "WorkerProbe", "default_worker_id", "read_partitions", "register"]


def default_worker_id(settings: Settings) -> str:
    """``[ops] worker_id``, or ``<hostname>:<pid>``."""
    return settings.ops.worker_id or f"{socket.gethostname()}:{os.getpid()}"


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# --------------------------------------------------------------------------- snapshot


def read_partitions(store: Any, partitions: Iterable[int]) -> dict[int, tuple[PartitionMeta | None, int | None]]:
    """(meta, pending timers) per partition from the session store, blocking (run it in a
    thread). A Redis store answers in one pipelined round trip (GET meta, ZCARD due);
    another store gives its meta only."""
    ps = sorted(set(partitions))
    if not ps:
        return {}
    client, prefix = getattr(store, "client", None), getattr(store, "prefix", None)
    if client is not None and isinstance(prefix, str) and hasattr(client, "pipeline"):
        pipe = client.pipeline(transaction=False)
        for p in ps:
            pipe.get(keys.partition_meta(prefix, p))
            pipe.zcard(keys.partition_due(prefix, p))
        replies = pipe.execute()
        return {p: (PartitionMeta.load(replies[2 * i]), int(replies[2 * i + 1])) for i, p in enumerate(ps)}
    return {p: (store.load_partition(p), None) for p in ps}


class WorkerProbe:
    """Snapshots of a running worker (see the module docstring).

    ``pipeline_getter``: sync or async callable returning the worker's
    :class:`intentstream.agents.worker.Pipeline` or None (not created yet). ``assignment`` (the
    assigned input partitions, None before the consumer runs) and ``highwater`` (a
    partition's log end offset or None) default to the Faust consumer of ``app``."""

    def __init__(
        self,
        settings: Settings,
        pipeline_getter: Callable[[], Any],
        persona_writer: Any = None,
        *,
        app: Any = None,
        assignment: Callable[[], Iterable[int] | None] | None = None,
        highwater: Callable[[int], int | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.pipeline_getter = pipeline_getter
        self.persona_writer = persona_writer
        self.app = app
        self.topic = settings.topics.clickstream
        self._assignment = assignment
        self._highwater = highwater
        self.clock = clock
        self._probe: asyncio.Future | None = None

    async def pipeline(self) -> Any:
        return await _maybe_await(self.pipeline_getter())

    def assigned(self) -> frozenset[int] | None:
        try:
            if self._assignment is not None:
                got = self._assignment()
                return None if got is None else frozenset(got)
            return frozenset(tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.topic)
        except Exception:  # consumer not started (ConsumerNotStarted) or gone
            return None

    def highwater(self, p: int) -> int | None:
        try:
            if self._highwater is not None:
                return self._highwater(p)
            from faust.types import TP

            hw = self.app.consumer.highwater(TP(self.topic, p))
            return int(hw) if hw is not None else None
        except Exception:  # not fetched yet, not assigned any more
            return None

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        pipe = await self.pipeline()
        return readiness(self.assigned(), set(pipe.recovered) if pipe is not None else None)

    async def _read_store(self, pipe: Any, partitions: list[int]) -> dict[int, tuple[PartitionMeta | None, int | None]]:
        if pipe is None:
            return {}
        # the pipeline's store if it has one, else the one its engines share
        store = getattr(pipe, "store", None) or getattr(next(iter(pipe.engines.values()), None), "store", None)
        if store is None or not partitions:
            return {}
        if self._probe is not None and not self._probe.done():
            return {}  # the previous probe is still stuck on Redis: report without it
        self._probe = asyncio.get_running_loop().run_in_executor(None, read_partitions, store, partitions)
        try:
            return await asyncio.wait_for(asyncio.shield(self._probe), self.settings.ops.probe_timeout_s)
        except Exception as exc:  # Redis down or slow: the engines' cached meta still serve
            log.debug("ops probe: state store unavailable (%r)", exc)
            self._probe.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved"
            return {}

    async def snapshot(self) -> WorkerSnapshot:
        ts_ms = int(self.clock() * 1000)
        pipe = await self.pipeline()
        assigned = self.assigned()
        engines = dict(pipe.engines) if pipe is not None else {}
        partitions = sorted(set(assigned or ()) | set(engines))
        stored = await self._read_store(pipe, partitions)
        recovered = frozenset(pipe.recovered) if pipe is not None else frozenset()
        states: dict[int, PartitionState] = {}
        for p in partitions:
            # the engine's cached meta is what it committed last (no I/O). Never ``eng.meta``:
            # it loads from Redis on the event loop and could cache a value older than
            # the one a step running in its thread is about to set
            meta = getattr(engines.get(p), "_meta", None)
            stored_meta, timers = stored.get(p, (None, None))
            meta = meta or stored_meta
            applied = meta.hi if meta is not None else None
            hw = self.highwater(p) if assigned and p in assigned else None
            states[p] = PartitionState(
                watermark_ms=meta.wm if meta is not None and meta.wm else None,
                offset=applied,
                highwater=hw,
                lag=lag_of(hw, applied),
                timers=timers,
                recovered=(p in recovered) if pipe is not None else None,
            )
        persona = None
        w = self.persona_writer
        if w is not None:
            persona = PersonaState(leader=bool(w.is_leader), owner=str(getattr(w, "owner", "")), counters=dict(w.counters))
        return WorkerSnapshot(
            ts_ms=ts_ms,
            counters=dict(pipe.counters) if pipe is not None else {},
            partitions=states,
            assigned=assigned,
            recovered=recovered,
            pipeline=pipe is not None,
            persona=persona,
            breaker=pipe.breaker.state() if getattr(pipe, "breaker", None) is not None else None,
            outcomes=tuple(pipe.outcomes.summary()) if getattr(pipe, "outcomes", None) is not None else (),
            roi_paused=roi_paused(engines.values()),
        )


def roi_paused(engines: Iterable[Any]) -> dict[tuple[str, str], int]:
    """Every arm of the strategy policy -> the engines (partitions) on which the ROI guard
    pauses it; arms paused nowhere count 0, so the series exists before the first pause."""
    engines = list(engines)
    policy = next((e.decider.policy for e in engines if getattr(getattr(e, "decider", None), "policy", None) is not None), None)
    if policy is None:
        return {}
    out = dict.fromkeys(policy.all_arms(), 0)
    for e in engines:
        for arm in getattr(e, "roi_paused", ()):
            out[arm] = out.get(arm, 0) + 1
    return out


# --------------------------------------------------------------------------- reporter


class OpsReporter:
    """Builds and publishes the metrics record and alerts (see the module docstring).

    ``snapshot``: sync or async callable returning a :class:`~intentstream.stream.ops.snapshot.WorkerSnapshot`.
    ``producer``: an ``AIOKafkaProducer``-like object (``await producer.send(topic,
    value=, key=)`` returns an awaitable delivery). A send that fails or is not acknowledged
    within 80 % of the interval is counted (``counters["send_failures"]``) and logged, never raised: the
    next interval reports again (deltas are cumulative-based, so nothing is lost but the
    one record). ``counters``: ``reports``, ``alerts``, ``send_failures``."""

    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        snapshot: Callable[[], WorkerSnapshot | Awaitable[WorkerSnapshot]],
        producer: Any,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.snapshot = snapshot
        self.producer = producer
        self.builder = MetricsBuilder(worker_id)
        self.rules = AlertRules(settings.ops, worker_id)
        self.counters: Counter[str] = Counter()
        self.last_record: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def report(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One interval: snapshot, record, alerts, publish. Returns (record, alerts)."""
        async with self._lock:  # a slow broker must not make two reports interleave
            snap = await _maybe_await(self.snapshot())
            record = self.builder.build(snap)
            alerts = self.rules.evaluate(record, snap)
            record["alerts_active"] = sorted(
                c.code if c.subject is None else f"{c.code}:{c.subject}" for c in self.rules.active
            )
            self.last_record = record
            t = self.settings.topics
            await self._publish([(t.metrics, record)] + [(t.alerts, a) for a in alerts])
            self.counters["reports"] += 1
            self.counters["alerts"] += len(alerts)
            for a in alerts:
                level = logging.WARNING if a["status"] == "firing" else logging.INFO
                log.log(level, "ops alert %s %s: %s", a["alert"], a["status"], a["message"])
            return record, alerts

    async def _publish(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        key = self.worker_id.encode()
        timeout = max(0.5, 0.8 * self.settings.ops.metrics_interval_s)  # done before the next tick
        try:
            deliveries = []
            for topic, value in items:
                deliveries.append(await asyncio.wait_for(self.producer.send(topic, value=codec.dumps(value), key=key), timeout))
            await asyncio.wait_for(asyncio.gather(*deliveries), timeout)
        except Exception as exc:  # broker down or slow: the next interval reports again
            self.counters["send_failures"] += 1
            log.warning("ops: could not publish %d metrics/alert record(s): %r", len(items), exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Report every ``[ops] metrics_interval_s`` until ``stop`` is set (outside Faust)."""
        interval = self.settings.ops.metrics_interval_s
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                await self.report()


class _LazyProducer:
    """An aiokafka producer started at the first send (a start failure is retried at the
    next one), so a broker hiccup at startup costs one report, not the worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: Any = None

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        if self.producer is None:
            from aiokafka import AIOKafkaProducer

            from intentstream.agents.kafka import aiokafka_options

            opts = aiokafka_options(self.settings, "ops")
            # a batch that cannot be delivered (broker or topic gone) expires after 10 s
            # instead of 40, so it cannot hold the worker's shutdown for long
            producer = AIOKafkaProducer(**opts, acks=1, linger_ms=20, request_timeout_ms=10_000)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self.producer = producer
        return await self.producer.send(topic, value=value, key=key)

    async def stop(self, timeout: float = 5.0) -> None:
        """Flush and close, for at most ``timeout`` seconds (metrics are not worth a
        slow shutdown; what is not flushed by then is dropped)."""
        if self.producer is not None:
            producer, self.producer = self.producer, None
            try:
                await asyncio.wait_for(producer.stop(), timeout)
            except asyncio.TimeoutError:
                log.warning("ops: metrics producer did not flush within %.0fs; dropped", timeout)


# --------------------------------------------------------------------------- Faust wiring


class OpsHandle:
    """What :func:`register` wired: ``probe``, ``reporter``, the ``health`` and ``metrics``
    view classes (None when ``[worker] web_enabled`` is false), and ``producer`` (the
    reporter's, to stop outside a Faust worker)."""

    def __init__(self, probe: WorkerProbe, reporter: OpsReporter, health: Any, metrics: Any, producer: Any) -> None:
        self.probe = probe
        self.reporter = reporter
        self.health = health
        self.metrics = metrics
        self.producer = producer


def register(
    app: Any,
    pipeline_getter: Callable[[], Any],
    persona_writer: Any = None,
    settings: Settings | None = None,
    *,
    producer: Any = None,
    worker_id: str | None = None,
    assignment: Callable[[], Iterable[int] | None] | None = None,
    highwater: Callable[[int], int | None] | None = None,
) -> OpsHandle:
    """Add ``/health``, ``/metrics`` and the ops reporter timer to the Faust ``app``.

    ``pipeline_getter`` returns the worker's Pipeline or None and must not create it
    (``lambda: state.get("p")`` in :func:`intentstream.agents.worker.build`); ``persona_writer`` is
    what ``start_in_worker`` returned. Without ``producer`` the reporter starts its own
    aiokafka producer at the first report and a service of the app stops it on shutdown.
    ``assignment`` / ``highwater`` replace the Faust consumer (tests)."""
    if settings is None:
        raise TypeError("register() needs settings")
    import mode

    probe = WorkerProbe(settings, pipeline_getter, persona_writer, app=app, assignment=assignment, highwater=highwater)
    own = producer is None
    producer = _LazyProducer(settings) if own else producer
    wid = worker_id or default_worker_id(settings)
    reporter = OpsReporter(settings, wid, probe.snapshot, producer)

    async def health(view: Any, request: Any) -> Any:
        """Readiness: 200 once every assigned partition has recovered its outbox, else 503."""
        ok, body = await probe.readiness()
        return view.bytes(codec.dumps(body), content_type="application/json", status=200 if ok else 503)

    async def metrics(view: Any, request: Any) -> Any:
        """Prometheus text exposition of the worker's counters and gauges."""
        snap = await probe.snapshot()
        text = render_prometheus(snap, worker=wid, alerts=reporter.rules.active, extra_counters=dict(reporter.counters))
        return view.text(text, content_type=PROMETHEUS_CONTENT_TYPE)

    health_view = metrics_view = None
    if settings.worker.web_enabled:
        health_view = app.page("/health", name="intentstream_health")(health)
        metrics_view = app.page("/metrics", name="intentstream_metrics")(metrics)

    async def ops_report() -> None:
        try:
            await reporter.report()
        except Exception:  # a timer that raises stops for good: log and go on
            log.exception("ops report failed")

    app.timer(interval=settings.ops.metrics_interval_s, name="intentstream_ops_report")(ops_report)

    if own:

        @app.service
        class OpsProducerService(mode.Service):
            async def on_stop(self) -> None:
                await producer.stop()

    return OpsHandle(probe, reporter, health_view, metrics_view, producer)
