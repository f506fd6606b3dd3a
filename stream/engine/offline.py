"""The offline runner: the live worker's engine on a file, with the same partitions and
the same end-of-input rule, so its outputs equal what the worker publishes.

The same :class:`~intentstream.stream.engine.partition.PartitionEngine` with the
in-memory store (:class:`~intentstream.stream.state.memory.sessions.OfflineSessionStore`,
which keeps the engine's state objects rather than serialising every step), one engine per simulated partition. Each valid line goes to the
partition Kafka's default partitioner gives its key, ``user_id``
(:func:`intentstream.stream.engine.partitioning.partition_for`); offsets are
per-partition line counters; events reach their engine in file order, in batches of
``[sessions] batch_size`` (results do not depend on the batch size). Outputs are the
outbox payloads — the bytes the worker would publish — in the order the engines commit
them: byte-identical for the same input and settings.

At the end of the input every partition is idle, and the idle-partition rule
(:func:`intentstream.stream.engine.watermark.idle_adoptions`, the same function the live
worker applies after ``[triggers] idle_partition_s``) raises each to the highest
watermark: sessions and timers that this watermark passes close and fire; later ones
stay open, as they would live. ``close_open`` also closes every open session
(``closed_by = "end_of_input"``, buffered events released first, late runs emitted),
for analysts who want every event in a segment; live has no equivalent.

Malformed lines are never fatal: they are counted by reason and, when ``dead_letter``
is set, written there as dead-letter records.

A long input is spread over processes (``[sessions] offline_jobs``, from
``offline_parallel_after_events`` valid events on; :mod:`.offline_jobs`): the outputs,
their order and the dead-letter file stay byte-identical; the runner's ``engines`` and
``store`` then no longer hold the final state (the children did), so a runner runs once.

When ``disorder`` is set (the offline commands set it; see
:mod:`intentstream.stream.engine.disorder`), every valid event is measured on its
partition as it is read, and a :class:`~intentstream.stream.engine.disorder.DisorderError`
stops the run once the input is too far out of event-time order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from intentstream.stream import codec
from intentstream.stream.engine.disorder import DisorderMeter
from intentstream.stream.engine.gc_policy import long_lived_state
from intentstream.stream.engine.offline_jobs import ADVANCE, BATCH, FLUSH, ForkedJobs, InProcess, Reply, can_fork, usable_cpus
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.contract.events import Event
from intentstream.stream.ingest.input_formats import parser_for
from intentstream.stream.ingest.mapping import SKIPPED
from intentstream.stream.engine.partitioning import partition_for
from intentstream.stream.engine.watermark import idle_adoptions
from intentstream.stream.settings import Settings, default_settings
from intentstream.stream.state.memory import OfflineSessionStore
from intentstream.stream.contract.dead_letter import dead_letter_record


class OfflineRunner:
    """Feeds lines to per-partition engines; yields the outputs (topic, payload) in the
    order the engines publish them.

    >>> lines = [b'{"event_id":"e1","user_id":"u1","ts":1767607200000,"type":"coupon_view"}', b'not json']
    >>> runner = OfflineRunner(partitions=3)
    >>> [codec.loads(v)["intent"] for t, v in runner.run(enumerate(lines, 1), close_open=True) if t == "segments"]
    ['coupon']
    >>> runner.counters["events"], dict(runner.invalid)
    (1, {'not_json': 1})
    """

    def __init__(self, settings: Settings | None = None, partitions: int | None = None, batch_size: int | None = None) -> None:
        self.settings = settings or default_settings()
        self.partitions = partitions or self.settings.topics.partitions
        self.batch_size = batch_size or self.settings.sessions.batch_size
        self.store = OfflineSessionStore()
        self.engines = [PartitionEngine(self.store, p, self.settings) for p in range(self.partitions)]
        self.counters: Counter[str] = Counter()
        self.invalid: Counter[str] = Counter()
        self.dead_letter: BinaryIO | None = None  # where rejected lines go, if anywhere
        self.disorder: DisorderMeter | None = None  # measures (and stops) unordered input, if set
        self.source = "-"

    def run(self, lines: Iterable[tuple[int, bytes]], close_open: bool = False) -> Iterator[tuple[str, bytes]]:
        """(topic, payload) of every output for ``(line number, raw line)`` input."""
        n = self.partitions
        pending: list[list[tuple[int, bytes, Event]]] = [[] for _ in range(n)]
        offsets = [0] * n
        where: dict[str, int] = {}  # user -> partition (murmur2 in Python is slow)
        meter = self.disorder
        parse = parser_for(self.settings.events.input_format)
        jobs = self._jobs()
        # in this process until the input proves long enough to be worth forking for
        fork_at = self.settings.sessions.offline_parallel_after_events if jobs > 1 else -1
        valid = 0
        run: InProcess | ForkedJobs = InProcess(self.engines)
        with long_lived_state():  # see stream/engine/gc_policy.py
            try:
                for lineno, raw in lines:
                    ev = parse(raw)
                    if not isinstance(ev, Event):
                        if ev.reason == SKIPPED:  # see intentstream.stream.ingest.input_formats
                            self.counters["skipped"] += 1
                            continue
                        self.invalid[ev.reason] += 1
                        if self.dead_letter is not None:  # in its turn among the engines' own dead letters
                            yield from self._emit(run.ready(({}, {}, [], [codec.dumps_line(dead_letter_record(raw, ev, f"{self.source}:{lineno}"))])))
                        continue
                    p = where.get(ev.user_id)
                    if p is None:
                        p = where[ev.user_id] = partition_for(ev.user_id.encode(), n)
                    if meter is not None:
                        meter.observe(p, ev.ts_ms, ev.user_id)
                    batch = pending[p]
                    batch.append((offsets[p], raw, ev))
                    offsets[p] += 1
                    if len(batch) >= self.batch_size:
                        yield from self._emit(run.submit(p, BATCH, batch))
                        pending[p] = []
                    valid += 1
                    if valid == fork_at:  # nothing is in flight in this process: the children start from here
                        run = ForkedJobs(self.engines, jobs)
                for p in range(n):
                    if pending[p]:
                        yield from self._emit(run.submit(p, BATCH, pending[p]))
                yield from self._emit(run.drain())
                # end of input: every partition is idle
                for p, wm in idle_adoptions(run.watermarks(), range(n)):
                    yield from self._emit(run.submit(p, ADVANCE, wm))
                if close_open:
                    for p in range(n):
                        yield from self._emit(run.submit(p, FLUSH))
                yield from self._emit(run.drain())
            finally:
                run.close()

    def _jobs(self) -> int:
        """Processes to spread the partitions over (1: this one)."""
        jobs = self.settings.sessions.offline_jobs
        if jobs == 0:
            jobs = usable_cpus()
        return min(jobs, self.partitions) if can_fork() else 1

    def _emit(self, replies: list[Reply]) -> Iterator[tuple[str, bytes]]:
        dlq = self.settings.topics.dead_letter
        for counters, invalid, outputs, dead_lines in replies:
            self.counters.update(counters)
            self.invalid.update(invalid)  # what the engine itself rejects (ts_in_future)
            if dead_lines and self.dead_letter is not None:
                self.dead_letter.writelines(dead_lines)
            for topic, value in outputs:
                if topic == dlq and self.dead_letter is not None:
                    self.dead_letter.write(value + b"\n")
                yield topic, value
