"""The engine of ONE Kafka partition of the clickstream.

:class:`PartitionEngine` turns batches of ``(offset, raw bytes)`` into closed intent
segments, decisions, dead-letter records and counters, with its state behind a
:class:`~intentstream.stream.state.SessionStore`; per user it runs the stages
sessions → triggers → decisions through a :class:`~intentstream.stream.engine.timeline.UserTimeline`. The Faust agent owns one engine per assigned
partition; the offline runner (:mod:`intentstream.stream.engine.offline`) simulates partitions with the
in-memory store; tests drive it directly. No network I/O here except through the store.

One step (:meth:`PartitionEngine.process`)
---------------------------------------
1. Skip offsets ``<= meta.hi`` (already applied: Kafka redelivered them); parse the rest
   with :func:`intentstream.stream.contract.events.parse_event` (or the parser of another
   ``[events] input_format``, :mod:`intentstream.stream.ingest.input_formats`; rejections
   become dead-letter outbox entries, except the ``skipped`` ones); dead-letter events far ahead of the partition's progress
   (``ts_in_future``); track the partition's watermark event by event: its progress
   (:class:`~intentstream.stream.engine.progress.Leaders`, the quorum-th most advanced
   user's newest event time) - allowed lateness.
   With the strategy policy on, a step ends after the event that carries the watermark
   into a new policy epoch (``[policy] epoch_s``): the rest of the batch is the next step.
   At its start a step rolls the arm tally into the new epoch's snapshot (publishing
   ROI-guard alerts for arms paused or resumed); its decisions read that snapshot, its
   outcome records are folded into the tally committed in step 5
   (:mod:`intentstream.stream.policy.tally` says why this keeps replay equal to live).
2. Load the batch's users and the users the due index says will be due by the batch's
   final watermark — from the engine's cache of decoded states, else from the store
   (2 store round trips: due index, then the missing user states).
3. For each event in offset order, with the watermark as of its arrival: skip it if
   ``offset <= user's hi`` (counted as ``redelivered``); else dedup it, buffer it or
   handle it as late, and let the trigger rules see it
   (:meth:`UserTimeline.accept <intentstream.stream.engine.timeline.UserTimeline.accept>`).
4. Release and expire, by (due, user): every user with events and every user the final
   watermark made due is advanced to its horizon — so an idle user's session is closed
   by other users' events without scanning all users. Lateness is decided on arrival
   and a late event first advances its user, so deferring releases to the end of the
   step gives the same segments whatever the batch cuts.
5. One :meth:`~intentstream.stream.state.SessionStore.commit`: changed user states (each carrying
   its new ``hi``), changed due times, outbox entries (segments, dead letters), meta.

Exactly once in effect — commit order and crash points
------------------------------------------------------
The only write is step 5, atomic (one MULTI/EXEC on Redis). Then the caller:

6. publishes :meth:`pending_outbox` to Kafka (ids in a header) and waits for the acks;
7. :meth:`ack` s the entries (with the output end offsets, for outbox recovery);
8. lets the consumer commit the input offsets.

* kill -9 before 5 completes: nothing was written; Kafka redelivers from the last
  committed input offset; the same events give the same segments with the same ids
  (deterministic, batch-cut independent).
* between 5 and 7: the outbox still holds the entries; on restart the agent publishes
  the outbox first (agents/outbox.py drops ids already on Kafka), then consumes; the
  redelivered input is skipped by offset.
* between 7 and 8: redelivered input is skipped by offset; nothing is sent twice.

The engine assumes it is its partition's only writer while it lives (Kafka's group
assignment): create a new engine when a partition is (re)assigned.

Any exception inside a step drops the cached meta, so the next step reloads it (an
EXEC whose reply was lost may or may not have applied: the offsets sort it out).
:meth:`advance_to` (idle partition timers) and :meth:`flush` (end of input) are steps
without events.

>>> from intentstream.stream.state.memory import MemorySessionStore
>>> eng = PartitionEngine(MemorySessionStore(), partition=0)
>>> def line(i, user, minute, typ):
...     return (i, b'{"event_id":"e%d","user_id":"%s","ts":%d,"type":"%s"}' % (i, user.encode(), 1767607200000 + minute * 60000, typ.encode()))
>>> r = eng.process([line(0, "alice", 0, "page_view"), line(1, "alice", 1, "click"), line(2, "bob", 30, "login"), (3, b"oops")])
>>> r.counters["events"], r.invalid, r.segments
(3, {'not_json': 1}, [])
>>> r = eng.process([line(4, "bob", 40, "page_view"), line(5, "carol", 41, "page_view")])
>>> [(s.user_id, s.interactions, s.closed_by) for s in r.segments]  # two users past alice's gap
[('alice', 2, 'inactivity')]
>>> eng.process([line(4, "bob", 40, "page_view")]).counters["redelivered"]
1
>>> [e.topic for e in eng.pending_outbox()]
['clickstream.dlq', 'segments']
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from intentstream.stream import codec
from intentstream.stream.contract.dead_letter import dead_letter_record
from intentstream.stream.contract.events import Event, Rejection, format_ts
from intentstream.stream.decisions.contract import Correction, Decision
from intentstream.stream.decisions.decider import Decider
from intentstream.stream.engine.progress import Leaders
from intentstream.stream.engine.timeline import DECIDED, DUPLICATE, UserTimeline
from intentstream.stream.engine.user_state import UserState
from intentstream.stream.ingest.input_formats import parser_for
from intentstream.stream.ingest.mapping import SKIPPED
from intentstream.stream.outcomes.attribution import AttributionRules
from intentstream.stream.outcomes.record import ActionOutcome
from intentstream.stream.policy.guard import roi_alerts
from intentstream.stream.policy.tally import ArmTally
from intentstream.stream.sessions.segments import IntentSegment
from intentstream.stream.sessions.sessionizer import SessionConfig
from intentstream.stream.settings import Settings, default_settings
from intentstream.stream.state import CommitBatch, OutboxEntry, PartitionMeta, SessionStore
from intentstream.stream.triggers.rules import EXTRA_TYPES, TriggerRules, trigger_extra

_END = 1 << 62  # "end of time" for flushes

_EXTRA_TYPES = EXTRA_TYPES


@dataclass(frozen=True)
class Rejected:
    """An input that failed the event contract, with where it came from."""

    offset: int
    reason: str
    detail: str
    raw: bytes


@dataclass
class StepResult:
    """What one step did. ``counters``: events (valid, new offsets), late, duplicates,
    redelivered, segments, invalid; ``invalid`` splits the invalid count by reason."""

    segments: list[IntentSegment] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    rejections: list[Rejected] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    invalid: dict[str, int] = field(default_factory=dict)
    watermark: int = 0
    offset: int = -1
    #: the outbox entries this step committed (what the caller publishes next)
    outbox: list[OutboxEntry] = field(default_factory=list)
    #: ROI-guard alerts of this step (arms paused or resumed as a policy epoch began)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def merged(self, later: StepResult) -> StepResult:
        """This step followed by ``later`` (a batch the engine cut at a policy epoch)."""
        self.segments += later.segments
        self.decisions += later.decisions
        self.rejections += later.rejections
        self.counters.update(later.counters)
        for k, v in later.invalid.items():
            self.invalid[k] = self.invalid.get(k, 0) + v
        self.watermark, self.offset = later.watermark, later.offset
        self.outbox += later.outbox
        self.alerts += later.alerts
        return self


class PartitionEngine:
    """Sessions, triggers and decisions of one partition (see the module docstring)."""

    def __init__(
        self,
        store: SessionStore,
        partition: int,
        settings: Settings | None = None,
        *,
        config: SessionConfig | None = None,
        cache_users: int | None = None,
        decider: Decider | None = None,
    ) -> None:
        settings = settings or default_settings()
        self.store = store
        # the fatigue ledger behind the decider is the only state outside ``store``: on
        # Redis it is atomic per user and idempotent by action_id (see intentstream.stream.decisions.fatigue)
        self.decider = decider or Decider.from_settings(settings, store.ledger())
        self.actions_prefix = settings.topics.actions_prefix
        self.audit_topic = settings.topics.audit
        self.outcomes_topic = settings.topics.outcomes
        self.alerts_topic = settings.topics.alerts
        self.partition = partition
        self.cfg = config or SessionConfig.from_settings(settings)
        self.rules = TriggerRules(settings.triggers, self.cfg.lateness_ms) if settings.triggers.enabled else None
        self.attribution = AttributionRules.from_settings(settings.outcomes) if self.rules is not None else None
        self.quorum = settings.events.watermark_quorum
        self.max_future_ms = settings.events.max_future_s * 1000
        # the contract's parse_event itself by default ([events] input_format)
        self.parse = parser_for(settings.events.input_format)
        self.segments_topic = settings.topics.segments
        self.dead_letter_topic = settings.topics.dead_letter
        self.source_topic = settings.topics.clickstream
        self.cache_users = settings.sessions.engine_cache_users if cache_users is None else cache_users
        self._meta: PartitionMeta | None = None
        # the strategy policy learns per partition (stream/policy/tally.py); None: off
        self.policy_epoch_ms = self.decider.policy.epoch_ms if self.decider.policy is not None else None
        self._tally: ArmTally | None = None  # decoded meta.pol, valid while _meta is
        #: (trigger, arm) the ROI guard pauses in this partition's current policy epoch, as of
        #: the last step (read by the worker's /metrics without touching the tally)
        self.roi_paused: frozenset[tuple[str, str]] = frozenset()
        # Write-back cache of decoded user states, equal to what the store holds after the
        # last successful commit (this engine is the partition's only writer while it lives).
        # an OrderedDict: evicting the oldest of a plain dict (next(iter(d)) after deleting
        # from its front) scans the deleted slots first, O(evictions) per eviction
        self._cache: OrderedDict[str, tuple[UserState, int | None]] = OrderedDict()  # user -> (state, due)

    # -- steps --

    def process(self, batch: Sequence[tuple[int, bytes]]) -> StepResult:
        """Apply a batch of (offset, raw message) in offset order."""
        return self._step([(off, raw, None) for off, raw in batch])

    def process_parsed(self, batch: Sequence[tuple[int, bytes, Event | Rejection | None]]) -> StepResult:
        """Like :meth:`process` for inputs already parsed (None: parse here)."""
        return self._step(batch)

    def advance_to(self, ts_ms: int) -> StepResult:
        """Raise the watermark to ``ts_ms`` without events (idle partition timer)."""
        return self._step([], advance_to=ts_ms)

    def flush(self) -> StepResult:
        """End of input: close every open session (``end_of_input``) and late run."""
        return self._step([], final=True)

    # -- outbox --

    def pending_outbox(self) -> list[OutboxEntry]:
        return self.store.outbox(self.partition)

    def ack(self, ids: Iterable[str], output_offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        self.store.ack_outbox(self.partition, ids, output_offsets)

    @property
    def meta(self) -> PartitionMeta:
        if self._meta is None:
            self._meta = self.store.load_partition(self.partition)
        return self._meta

    # -- the step --

    def _step(self, items: Sequence[tuple[int, bytes, Any]], advance_to: int | None = None, final: bool = False) -> StepResult:
        try:
            res, rest = self._run(items, advance_to, final)
            while rest:  # the batch crossed a policy epoch: the rest is a step of its own
                more, rest = self._run(rest, None, False)
                res = res.merged(more)
            return res
        except BaseException:
            self._meta = None  # unknown outcome: reload everything from the store next time
            self._tally = None
            self._cache = OrderedDict()
            raise

    def _run(
        self, items: Sequence[tuple[int, bytes, Any]], advance_to: int | None, final: bool
    ) -> tuple[StepResult, Sequence[tuple[int, bytes, Any]]]:
        """One step over ``items``; returns its result and the items it left for the next
        step: those after the event that carried the watermark into a new policy epoch
        (so every run cuts steps there, and the policy's snapshot of each epoch is the same
        whatever the batches — stream/policy/tally.py)."""
        cfg, store, p = self.cfg, self.store, self.partition
        meta = self.meta
        res = StepResult()
        rest: Sequence[tuple[int, bytes, Any]] = ()
        epoch_ms = self.policy_epoch_ms
        policy = self.decider.policy
        tally = None
        epoch_end = 0
        if epoch_ms is not None and policy is not None:
            tally = self._tally
            fresh = tally is None
            if tally is None:
                tally = self._tally = ArmTally.load(meta.pol)
            epoch = meta.wm // epoch_ms
            if tally.epoch < epoch:
                before = policy.paused_arms(tally.view())
                tally.roll(epoch)
                res.alerts = roi_alerts(before, policy, tally.view(), epoch * epoch_ms, p)
                fresh = True
            if fresh:  # the snapshot changes only here
                self.roi_paused = frozenset(policy.paused_arms(tally.view()))
            epoch_end = (epoch + 1) * epoch_ms
        counters = res.counters
        entries: list[OutboxEntry] = []
        seq = meta.ob
        hi = meta.hi
        lateness = cfg.lateness_ms
        # (offset, event, the partition watermark once it arrived), in offset order
        events: list[tuple[int, Event, int]] = []
        leaders = Leaders(self.quorum, meta.lead, meta.ahead)
        wm = meta.wm
        parse = self.parse
        for i, (off, raw, ev) in enumerate(items):
            if tally is not None and wm >= epoch_end:  # the previous event entered a new epoch
                rest = items[i:]
                break
            if off <= meta.hi:
                counters["redelivered"] += 1
                continue
            if off > hi:
                hi = off
            if ev is None:
                ev = parse(raw)
            if type(ev) is Event and leaders.judge(ev.user_id, ev.ts_ms, self.max_future_ms):  # a clock far ahead
                progress = leaders.progress()
                ev = Rejection("ts_in_future", f"{format_ts(ev.ts_ms)} is {(ev.ts_ms - progress) / 86_400_000:.1f} days ahead of the partition ({format_ts(progress)})")
            if type(ev) is not Event:
                if ev.reason == SKIPPED:  # valid input of a type the input format does not carry
                    counters["skipped"] += 1
                    continue
                res.invalid[ev.reason] = res.invalid.get(ev.reason, 0) + 1
                res.rejections.append(Rejected(off, ev.reason, ev.detail, bytes(raw)))
                record = dead_letter_record(bytes(raw), ev, f"{self.source_topic}:{p}:{off}")
                entries.append(OutboxEntry(seq, f"dlq:{p}:{off}", self.dead_letter_topic, None, codec.dumps(record)))
                seq += 1
                continue
            leaders.add(ev.user_id, ev.ts_ms)
            w = leaders.progress() - lateness
            if w > wm:
                wm = w
            events.append((off, ev, wm))
        counters["invalid"] = sum(res.invalid.values())
        if not events and advance_to is None and not final and hi == meta.hi and not res.alerts:
            res.watermark, res.offset = meta.wm, meta.hi
            return res, rest  # only redeliveries: nothing to write

        final_wm = max(wm, advance_to if advance_to is not None else wm)
        wm = meta.wm
        wanted = {ev.user_id for _, ev, _ in events}
        due_now = store.due_users(p, _END if final else final_wm)
        wanted.update(due_now)
        cache = self._cache
        # closed segments, fired triggers and their decisions, in the order they happen
        timeline = UserTimeline(cfg, self.rules, self.decider, self.attribution, tally.view() if tally is not None else None)
        states: dict[str, UserState] = {}
        dues: dict[str, int | None] = {}
        missing = []
        for u in wanted:
            hit = cache.get(u)
            if hit is None:
                missing.append(u)
            else:
                states[u], dues[u] = hit
        if missing:
            loaded = store.load_users(p, missing)
            for u in missing:
                data = loaded.get(u)
                st = states[u] = UserState.load(u, data) if data is not None else UserState(u)
                dues[u] = timeline.next_due(st)
        old_dues = dict(dues)
        touched: set[str] = set()

        n_late = n_dup = n_redel = 0
        for off, ev, wm in events:
            ts = ev.ts_ms
            u = ev.user_id
            st = states[u]
            if off <= st.hi:
                n_redel += 1
                continue
            touched.add(u)
            st.hi = off
            typ = ev.type
            mch = ev.props.get("channel") if typ == "unsubscribe" else None
            extra = trigger_extra(ev) if typ in _EXTRA_TYPES else None
            code = timeline.accept(st, ts, ev.event_id, typ, ev.device, ev.channel, ev.amount, ev.tz, mch, extra, wm)
            if code:
                if code == DUPLICATE:
                    n_dup += 1
                else:
                    n_late += 1
        if advance_to is not None and advance_to > wm:
            wm = advance_to
        # Releases and expiries, deferred to the end of the step (see sessions.accept):
        # every user with events and every user the watermark made due, by (due, user).
        todo = touched.union(u for u in due_now if (d := dues[u]) is not None and d <= wm)
        order = sorted(todo, key=lambda u: (dues[u] if dues[u] is not None else wm, u))
        for u in order:
            st = states[u]
            h = st.mx - lateness
            timeline.advance(st, h if h > wm else wm)
            dues[u] = timeline.next_due(st)
        touched.update(order)
        if final:
            for u in sorted(states):
                st = states[u]
                if st.buf or st.sess is not None or st.late is not None:
                    timeline.flush(st)
                    touched.add(u)
                    dues[u] = None

        segments = timeline.segments
        for seg in segments:
            entries.append(OutboxEntry(seq, seg.segment_id, self.segments_topic, seg.user_id.encode(), codec.dumps(seg.to_dict())))
            seq += 1
        if timeline.records:
            res.decisions = timeline.decisions
            for kind, r in timeline.records:
                value = codec.dumps(r.to_dict())
                key = r.user_id.encode()
                aid = r.action_id
                if isinstance(r, ActionOutcome):
                    entries.append(OutboxEntry(seq, f"{aid}:outcome", self.outcomes_topic, key, value))
                    seq += 1
                    if tally is not None:
                        tally.fold(r)
                    counters[f"outcome:{r.trigger}:{r.experiment['arm']}:{int(r.converted)}:{int(r.measured)}:{int(r.status == 'sent')}"] += 1
                    continue
                if isinstance(r, Correction):
                    entries.append(OutboxEntry(seq, f"{aid}:audit:correction", self.audit_topic, key, value))
                    seq += 1
                    counters[f"correction:{r.trigger}"] += 1
                    continue
                if r.status == "sent":  # sent now, or a held one released: the messaging system sends it
                    assert r.channel is not None  # a sent decision has its channel
                    entries.append(OutboxEntry(seq, f"{aid}:{r.channel}", self.actions_prefix + r.channel, key, value))
                    seq += 1
                audit_id = f"{aid}:audit" if kind == DECIDED else f"{aid}:audit:{kind}"
                entries.append(OutboxEntry(seq, audit_id, self.audit_topic, key, value))
                seq += 1
                counters[f"decision:{r.trigger}:{r.channel}:{r.status}"] += 1
            counters["decisions"] = sum(1 for kind, _ in timeline.records if kind == DECIDED)
            for u in {r.user_id for _, r in timeline.records}:  # feedback timers and held decisions moved their due time
                dues[u] = timeline.next_due(states[u])
        counters["events"] = len(events)
        counters["late"] = n_late
        counters["duplicates"] = n_dup
        counters["redelivered"] += n_redel
        counters["segments"] = len(segments)
        for alert in res.alerts:  # ids: one per partition, epoch, arm and change
            aid = f"roi:{p}:{alert['ts']}:{alert['subject']}:{alert['status']}"
            entries.append(OutboxEntry(seq, aid, self.alerts_topic, alert["subject"].encode(), codec.dumps(alert)))
            seq += 1
        pol = tally.dump() if tally is not None else None
        new_meta = PartitionMeta(hi=hi, wm=wm, ob=seq, lead=tuple(leaders.top), ahead=leaders.dump_ahead(), pol=pol)
        # due index: users whose due changed, and users read from the store (self-healing
        # an index a partial write left behind, see intentstream.stream.state.redis.sessions)
        reread = set(missing)
        changed = {u: d for u, d in dues.items() if d != old_dues[u] or u in reread}
        if store.holds_states:  # the objects themselves (the dedup log pruned as a dump would)
            for u in touched:
                states[u].prune_log(cfg)
            users: dict[str, Any] = {u: states[u] for u in sorted(touched)}
        else:
            users = {u: states[u].dump(cfg) for u in sorted(touched)}
        store.commit(p, CommitBatch(new_meta, users, changed, entries))
        self._meta = new_meta
        if self.cache_users > 0:
            for u in touched:  # most recently used last; evict the oldest
                cache[u] = (states[u], dues[u])
                cache.move_to_end(u)
            for u in reread - touched:
                cache[u] = (states[u], dues[u])
            while len(cache) > self.cache_users:
                u = cache.popitem(last=False)[0]
                if store.holds_states:
                    store.freeze(u)  # type: ignore[attr-defined]  # OfflineSessionStore
        res.segments = segments
        res.outbox = entries
        res.watermark, res.offset = wm, hi
        return res, rest
