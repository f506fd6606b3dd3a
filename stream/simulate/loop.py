"""The closed loop: simulated users' events into the engine, the engine's decisions back
to the users, their reactions into the engine again, in event-time order.

The engine is the one the worker and the offline runner use — a
:class:`~intentstream.stream.engine.partition.PartitionEngine` per simulated partition
over one :class:`~intentstream.stream.state.memory.MemorySessionStore`, each user on the
partition Kafka would give it (:func:`~intentstream.stream.engine.partitioning.partition_for`).
What this driver adds is time: a heap of pending events (planned and reactions), and
steps of ``[world] step_s`` of event time. One step:

1. the next moment anything happens: the earliest pending event or the earliest due time
   of any partition (timers, held messages, closing sessions and attribution windows —
   the store's due index); the step ends ``step_s`` after it (quiet stretches are
   skipped, not ticked through);
2. every pending event up to the step's end goes to its partition's engine, in event
   time order (``process_parsed``);
3. every engine with something due by then is advanced to the step's end
   (``advance_to``), as the live worker's idle-partition rule would;
4. each engine's outbox is read in partition order and acknowledged: audit records go
   to the :class:`~intentstream.stream.simulate.reactions.Reactor`, whose reaction
   events (all later than the step's end, so never late) join the heap; outcome
   records are kept; a churner's churn decision schedules its next burst of activity
   at the end of the decision's attribution window.

The loop ends when no event is pending and nothing is due; then every engine is advanced
far into the future (nothing should be left to close). Same world, settings and seed:
the same outputs, byte for byte.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from intentstream.stream import codec
from intentstream.stream.contract.events import parse_ts
from intentstream.stream.engine.gc_policy import long_lived_state
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.engine.partitioning import partition_for
from intentstream.stream.settings import Settings
from intentstream.stream.simulate.people import Planned, Planner, SimUser, plant_users
from intentstream.stream.simulate.reactions import Reactor
from intentstream.stream.simulate.world import DAY_MS, World
from intentstream.stream.state.memory import MemorySessionStore
from intentstream.stream.state.sessions import CommitBatch
from intentstream.stream.triggers.rules import CHURN_TRIGGER


class _DueStore(MemorySessionStore):
    """The in-memory store, also answering "when is this partition's next due time?" from
    the due times its commits carry (a heap with lazy deletion)."""

    def __init__(self) -> None:
        super().__init__()
        self._dues: dict[int, dict[str, int]] = {}
        self._heaps: dict[int, list[tuple[int, str]]] = {}

    def commit(self, partition: int, batch: CommitBatch) -> None:
        super().commit(partition, batch)
        dues = self._dues.setdefault(partition, {})
        heap = self._heaps.setdefault(partition, [])
        for user, due in batch.dues.items():
            if due is None:
                dues.pop(user, None)
            else:
                dues[user] = due
                heapq.heappush(heap, (due, user))

    def next_due(self, partition: int) -> int | None:
        heap, dues = self._heaps.get(partition), self._dues.get(partition, {})
        while heap and dues.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None


@dataclass
class SimulationResult:
    """What one run produced: the JSONL lines of each output file (newline included),
    the users, and the run's counters."""

    users: list[SimUser]
    end_ms: int
    clickstream: list[bytes] = field(default_factory=list)
    decisions: list[bytes] = field(default_factory=list)
    outcomes: list[bytes] = field(default_factory=list)
    #: the engine's own ops.alerts records (the strategy policy's ROI guard)
    alerts: list[bytes] = field(default_factory=list)
    #: planned / reaction events, steps, engine counters (late, duplicates, ...), outputs by topic
    counters: Counter[str] = field(default_factory=Counter)
    #: the reactor's counters (conversions, opens, clicks, dismissals, clamps)
    reactions: Counter[str] = field(default_factory=Counter)

    def audit_records(self) -> list[dict[str, Any]]:
        return [codec.loads(line) for line in self.decisions]

    def outcome_records(self) -> list[dict[str, Any]]:
        return [codec.loads(line) for line in self.outcomes]


class Simulation:
    """One run of the closed loop (see the module docstring)."""

    def __init__(self, world: World, settings: Settings, users: int, days: int, seed: int, partitions: int | None = None) -> None:
        self.world, self.settings, self.seed = world, settings, seed
        self.partitions = partitions or settings.topics.partitions
        self.store = _DueStore()
        self.engines = [PartitionEngine(self.store, p, settings) for p in range(self.partitions)]
        self.offsets = [0] * self.partitions
        self.users = plant_users(world, users, seed)
        self.by_id = {u.uid: u for u in self.users}
        self.where = {u.uid: partition_for(u.uid.encode(), self.partitions) for u in self.users}
        self.planner = Planner(world, days, seed)
        self.reactor = Reactor(world, settings, seed, {u.uid: u.tz for u in self.users}, {u.uid: u.hours for u in self.users})
        oc = settings.outcomes
        self.churn_window_ms = oc.windows_s.get(CHURN_TRIGGER, oc.window_s) * 1000
        self.bursts: Counter[str] = Counter()  # churner -> bursts so far
        self.heap: list[tuple[int, int, dict[str, Any]]] = []
        self.seq = 0
        self.closing = False
        self.result = SimulationResult(self.users, self.planner.end_ms)

    def _push(self, events: Iterable[Planned], kind: str) -> None:
        for ts, ev in events:
            heapq.heappush(self.heap, (ts, self.seq, ev))
            self.seq += 1
            self.result.counters[f"{kind}_events"] += 1

    def run(self, on_step: Callable[[int], None] | None = None) -> SimulationResult:
        """``on_step``: told the event time reached after each step (a progress bar)."""
        with long_lived_state():  # every simulated user's state stays alive: stream/engine/gc_policy.py
            return self._loop(on_step)

    def _loop(self, on_step: Callable[[int], None] | None) -> SimulationResult:
        for user in self.users:
            self._push(self.planner.events(user), "planned")
        step = self.world.step_s * 1000
        clock = self.world.start_ms - DAY_MS
        heap, engines, res = self.heap, self.engines, self.result
        while True:
            moments = [heap[0][0]] if heap else []
            moments += [d for p in range(self.partitions) if (d := self.store.next_due(p)) is not None]
            if not moments:
                break
            target = max(min(moments), clock) + step
            batches: list[list[tuple[int, bytes, None]]] = [[] for _ in engines]
            while heap and heap[0][0] <= target:
                _, _, ev = heapq.heappop(heap)
                raw = codec.dumps(ev)
                res.clickstream.append(raw + b"\n")
                p = self.where[ev["user_id"]]
                batches[p].append((self.offsets[p], raw, None))
                self.offsets[p] += 1
            for p, engine in enumerate(engines):
                if batches[p]:
                    res.counters.update(engine.process_parsed(batches[p]).counters)
                due = self.store.next_due(p)
                if due is not None and due <= target:
                    res.counters.update(engine.advance_to(target).counters)
                self._drain(engine, target)
            res.counters["steps"] += 1
            clock = target
            if on_step is not None:
                on_step(clock)
        far = clock + 400 * DAY_MS  # every window closed already; nothing is left to emit
        self.closing = True
        for engine in engines:
            res.counters.update(engine.advance_to(far).counters)
            self._drain(engine, far)
        res.reactions = self.reactor.counters
        return res

    def _drain(self, engine: PartitionEngine, now: int) -> None:
        entries = engine.pending_outbox()
        if not entries:
            return
        topics = self.settings.topics
        res = self.result
        for e in entries:
            res.counters[f"topic:{e.topic}"] += 1
            if e.topic == topics.audit:
                res.decisions.append(e.value + b"\n")
                rec = codec.loads(e.value)
                new = "correction" not in rec and rec["action_id"] not in self.reactor.seen
                if self.closing:
                    res.counters["unanswered_records"] += 1  # the final advance: no one is left to react
                    continue
                self._push(self.reactor.on_audit(rec, now), "reaction")
                if new and rec["trigger"] == CHURN_TRIGGER:
                    self._next_burst(rec)
            elif e.topic == topics.outcomes:
                res.outcomes.append(e.value + b"\n")
            elif e.topic == topics.alerts:  # the engine's own (ROI guard)
                res.alerts.append(e.value + b"\n")
        engine.ack([e.id for e in entries])

    def _next_burst(self, rec: dict[str, Any]) -> None:
        """A churner starts its next burst of activity when its churn decision's window
        ends: not earlier (its events would convert the decision), not later (a reaction
        to the message would re-arm the churn timer inside the silence)."""
        user = self.by_id.get(rec["user_id"])
        if user is None or user.journey != CHURN_TRIGGER:
            return
        decided = parse_ts(rec["decided_at"])
        assert isinstance(decided, int)
        self.bursts[user.uid] += 1
        self._push(self.planner.burst(user, self.bursts[user.uid], decided + self.churn_window_ms), "planned")


def simulate(
    world: World, settings: Settings, users: int, days: int, seed: int, partitions: int | None = None,
    on_step: Callable[[int], None] | None = None,
) -> SimulationResult:  # fmt: skip
    """Run the closed loop once (see :class:`Simulation`)."""
    return Simulation(world, settings, users, days, seed, partitions).run(on_step)
