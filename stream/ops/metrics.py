"""Ops monitoring, the pure part: metrics records, anomaly alert rules, readiness and the
Prometheus text exposition. No network here; ``agents/ops.py`` collects a
:class:`WorkerSnapshot` from the running worker, feeds it through these and publishes the
results (``[topics] metrics`` / ``[topics] alerts``, ``/health``, ``/metrics``).

**Metrics record** (one per worker and ``[ops] metrics_interval_s``, key = worker id; the
shape ``intentstream stats`` reads)::

    {"ts": "2026-01-05T10:00:10.000Z", "worker": "host:4242", "interval_s": 10.0,
     "counters": {"events": 1200, "invalid": 3, ..., "personas.learned": 40},  # cumulative
     "deltas": {"events": 120, ...},  "rates": {"events": 12.0, ...},        # this interval
     "decisions": [{"trigger": "cart_abandoned", "channel": "push", "status": "sent",
                    "total": 12, "delta": 3}, ...],
     "invalid_reasons": [{"reason": "not_json", "total": 2, "delta": 1}],    # when counted
     "partitions": {"0": {"watermark": "2026-...Z", "offset": 5120, "highwater": 5200,
                          "lag": 79, "timers": 311, "recovered": true}, ...},
     "lag": 79, "assigned": [0, 1], "ready": true,
     "persona": {"role": "leader", "leader": true, "learned": 40, "owner": "host:4242"},
     "alerts_active": ["store_unavailable"]}

``counters`` holds only plain names (no ``:``); the labelled worker counters
``decision:<trigger>:<channel>:<status>`` and ``invalid:<reason>`` are broken out into
``decisions`` and ``invalid_reasons``. The persona writer's counters appear as
``personas.<name>``. ``deltas`` are since the previous record (a counter that went down —
a restarted pipeline — counts from zero); ``rates`` are deltas per second and absent on a
worker's first record. Partition fields that are unknown are left out.

**Alert record** (``[topics] alerts``, key = worker id)::

    {"ts": ..., "worker": ..., "alert": "dlq_rate", "subject": null, "status": "firing",
     "severity": "warning", "message": "...", "value": 0.12, "threshold": 0.05}

An alert is identified by (``alert``, ``subject``) — the subject is the trigger for
``decision_volume_jump``, else null. While its condition holds it is sent at most once per
``[ops] alert_cooldown_s``; once the condition clears, one record with ``"status":
"resolved"`` follows (only if a firing record was sent). Codes: ``dlq_rate``,
``lag_growing``, ``watermark_stalled``, ``decision_volume_jump``, ``store_unavailable``.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from intentstream.stream.contract.events import format_ts
from intentstream.stream.settings import OpsSettings

__all__ = [
    "ALERT_CODES",
    "AlertRules",
    "Condition",
    "MetricsBuilder",
    "PartitionState",
    "PersonaState",
    "PROMETHEUS_CONTENT_TYPE",
    "WorkerSnapshot",
    "build_record",
    "lag_of",
    "readiness",
    "render_prometheus",
    "split_counters",
]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"

ALERT_CODES = ("dlq_rate", "lag_growing", "watermark_stalled", "decision_volume_jump", "store_unavailable")
SEVERITY = {
    "dlq_rate": "warning",
    "lag_growing": "warning",
    "watermark_stalled": "critical",
    "decision_volume_jump": "warning",
    "store_unavailable": "critical",
}
PERSONA_PREFIX = "personas."


# --------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class PartitionState:
    """What is known about one input partition; None = unknown.

    ``offset`` is the highest input offset the engine applied (-1: none), ``highwater``
    the log end offset (the offset the next record will get), ``lag`` what is not
    applied yet, ``timers`` users with a pending event-time timer, ``recovered`` whether
    the outbox a previous owner left was published."""

    watermark_ms: int | None = None
    offset: int | None = None
    highwater: int | None = None
    lag: int | None = None
    timers: int | None = None
    recovered: bool | None = None


@dataclass(frozen=True)
class PersonaState:
    """The worker's persona writer: lease holder or standby, and its counters."""

    leader: bool
    owner: str = ""
    counters: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerSnapshot:
    """Everything one metrics record is built from, taken at ``ts_ms`` (wall clock).

    ``assigned`` is None while the consumer has no assignment yet (not started)."""

    ts_ms: int
    counters: Mapping[str, float] = field(default_factory=dict)
    partitions: Mapping[int, PartitionState] = field(default_factory=dict)
    assigned: frozenset[int] | None = None
    recovered: frozenset[int] = frozenset()
    pipeline: bool = True
    persona: PersonaState | None = None


def lag_of(highwater: int | None, applied: int | None) -> int | None:
    """Records not applied yet: log end offset minus the next offset to apply.

    >>> lag_of(120, 99), lag_of(120, -1), lag_of(None, 5), lag_of(10, None), lag_of(5, 9)
    (20, 120, None, None, 0)
    """
    if highwater is None or applied is None:
        return None
    return max(0, highwater - (applied + 1))


def readiness(assigned: Iterable[int] | None, recovered: Iterable[int] | None) -> tuple[bool, dict[str, Any]]:
    """Ready once partitions are assigned and every assigned partition's engine has
    recovered its outbox (``recovered`` None: the pipeline does not exist yet).

    >>> readiness({0, 1}, {0, 1, 2})
    (True, {'status': 'ready', 'assigned': [0, 1]})
    >>> ok, body = readiness({0, 1}, {1}); ok, body["missing"], body["reasons"]
    (False, [0], ['outbox not recovered yet for partition(s) 0'])
    >>> readiness(None, None)[1]["reasons"], readiness(set(), set())[1]["reasons"]
    (['consumer not started'], ['no partitions assigned'])
    """
    if assigned is None:
        return False, {"status": "not_ready", "reasons": ["consumer not started"], "assigned": [], "missing": []}
    wanted = sorted(set(assigned))
    if not wanted:
        return False, {"status": "not_ready", "reasons": ["no partitions assigned"], "assigned": [], "missing": []}
    if recovered is None:
        return False, {"status": "not_ready", "reasons": ["pipeline not started"], "assigned": wanted, "missing": wanted}
    missing = sorted(set(wanted) - set(recovered))
    if missing:
        reason = "outbox not recovered yet for partition(s) " + ", ".join(map(str, missing))
        return False, {"status": "not_ready", "reasons": [reason], "assigned": wanted, "missing": missing}
    return True, {"status": "ready", "assigned": wanted}


# --------------------------------------------------------------------------- records


def split_counters(
    counters: Mapping[str, float],
) -> tuple[dict[str, float], dict[tuple[str, str, str], float], dict[str, float]]:
    """Plain counters, decisions by (trigger, channel, status), invalid by reason.

    >>> split_counters({"events": 5, "decision:cart_abandoned:push:sent": 2, "invalid:bad_ts": 1})
    ({'events': 5}, {('cart_abandoned', 'push', 'sent'): 2}, {'bad_ts': 1})
    """
    plain: dict[str, float] = {}
    decisions: dict[tuple[str, str, str], float] = {}
    invalid: dict[str, float] = {}
    for name, value in counters.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if name.startswith("decision:"):
            parts = name.split(":", 3)
            if len(parts) == 4:
                decisions[(parts[1], parts[2], parts[3])] = value
                continue
        elif name.startswith("invalid:"):
            invalid[name[len("invalid:") :]] = value
            continue
        plain[name] = value
    return plain, decisions, invalid


def _all_counters(snap: WorkerSnapshot) -> dict[str, float]:
    out = dict(snap.counters)
    if snap.persona is not None:
        for name, value in snap.persona.counters.items():
            out[PERSONA_PREFIX + name] = value
    return out


def _delta(now: float, before: float | None) -> float:
    if before is None or now < before:  # new, or reset (pipeline rebuilt): count from zero
        return now
    return now - before


def _num(value: float) -> float:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def build_record(worker: str, snap: WorkerSnapshot, previous: WorkerSnapshot | None = None) -> dict[str, Any]:
    """The ``ops.metrics`` record of ``snap``; deltas against ``previous`` (see the module
    docstring for the shape).

    >>> a = WorkerSnapshot(0, {"events": 10, "decision:churn_risk:email:sent": 1})
    >>> b = WorkerSnapshot(10_000, {"events": 40, "decision:churn_risk:email:sent": 3},
    ...                    {0: PartitionState(watermark_ms=1767607200000, offset=41, highwater=50, lag=8)},
    ...                    assigned=frozenset({0}), recovered=frozenset({0}))
    >>> r = build_record("w1", b, a)
    >>> r["ts"], r["counters"], r["deltas"], r["rates"], r["lag"], r["ready"]
    ('1970-01-01T00:00:10.000Z', {'events': 40}, {'events': 30}, {'events': 3.0}, 8, True)
    >>> r["decisions"], r["partitions"]["0"]["watermark"]
    ([{'trigger': 'churn_risk', 'channel': 'email', 'status': 'sent', 'total': 3, 'delta': 2}], '2026-01-05T10:00:00.000Z')
    """
    now = _all_counters(snap)
    before = _all_counters(previous) if previous is not None else {}
    plain, decisions, invalid = split_counters(now)
    plain_b, decisions_b, invalid_b = split_counters(before)
    interval_s = (snap.ts_ms - previous.ts_ms) / 1000.0 if previous is not None else None
    deltas = {k: _num(_delta(v, plain_b.get(k))) for k, v in sorted(plain.items())}
    rates = {}
    if interval_s is not None and interval_s > 0:
        rates = {k: round(d / interval_s, 3) for k, d in deltas.items()}
    record: dict[str, Any] = {
        "ts": format_ts(snap.ts_ms),
        "worker": worker,
        "interval_s": interval_s,
        "counters": {k: _num(v) for k, v in sorted(plain.items())},
        "deltas": deltas,
        "rates": rates,
        "decisions": [
            {"trigger": t, "channel": c, "status": s, "total": _num(v), "delta": _num(_delta(v, decisions_b.get((t, c, s))))}
            for (t, c, s), v in sorted(decisions.items())
        ],
    }
    if invalid:
        record["invalid_reasons"] = [
            {"reason": r, "total": _num(v), "delta": _num(_delta(v, invalid_b.get(r)))} for r, v in sorted(invalid.items())
        ]
    parts: dict[str, dict[str, Any]] = {}
    for p, st in sorted(snap.partitions.items()):
        info: dict[str, Any] = {}
        if st.watermark_ms:
            info["watermark"] = format_ts(st.watermark_ms)
        for name in ("offset", "highwater", "lag", "timers", "recovered"):
            v = getattr(st, name)
            if v is not None:
                info[name] = v
        parts[str(p)] = info
    record["partitions"] = parts
    record["lag"] = sum(st.lag for st in snap.partitions.values() if st.lag is not None)
    record["assigned"] = sorted(snap.assigned) if snap.assigned is not None else None
    record["ready"] = readiness(snap.assigned, snap.recovered if snap.pipeline else None)[0]
    if snap.persona is not None:
        record["persona"] = {
            "role": "leader" if snap.persona.leader else "standby",
            "leader": snap.persona.leader,
            "owner": snap.persona.owner,
            "learned": _num(snap.persona.counters.get("learned", 0)),
        }
    return record


class MetricsBuilder:
    """:func:`build_record` with the previous snapshot remembered (for deltas)."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.previous: WorkerSnapshot | None = None

    def build(self, snap: WorkerSnapshot) -> dict[str, Any]:
        record = build_record(self.worker, snap, self.previous)
        self.previous = snap
        return record


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class Condition:
    """One alert rule's verdict for one interval."""

    code: str
    active: bool
    value: float
    threshold: float
    message: str
    subject: str | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.code, self.subject)


@dataclass
class _AlertState:
    announced: bool = False  # the last record sent for this alert was "firing"
    last_fired_ms: int | None = None
    last: Condition | None = None


class AlertRules:
    """Anomaly rules over consecutive metrics records (pure; time comes from the records).

    Feed every record with its snapshot to :meth:`evaluate`; it returns the alert records
    to publish (firing, repeated after the cooldown, resolved).

    >>> from intentstream.stream.settings import OpsSettings
    >>> rules = AlertRules(OpsSettings(alert_cooldown_s=60), "w1")
    >>> def rec(ts_s, retries):
    ...     snap = WorkerSnapshot(ts_s * 1000, {"store_retries": retries})
    ...     return build_record("w1", snap), snap
    >>> [(a["alert"], a["status"]) for a in rules.evaluate(*rec(10, 2))]
    [('store_unavailable', 'firing')]
    >>> rules.evaluate(*rec(20, 1)), [a["status"] for a in rules.evaluate(*rec(30, 0))]
    ([], ['resolved'])
    """

    def __init__(self, cfg: OpsSettings, worker: str) -> None:
        self.cfg = cfg
        self.worker = worker
        self.states: dict[tuple[str, str | None], _AlertState] = {}
        self._lag_prev: dict[int, int] = {}
        self._lag_streak: dict[int, int] = {}
        self._wm_prev: dict[int, int] = {}
        self._wm_streak: dict[int, int] = {}
        self._volumes: dict[str, deque[float]] = {}

    @property
    def active(self) -> list[Condition]:
        """Conditions holding as of the last evaluation (fired or held back by cooldown)."""
        return [s.last for _, s in sorted(self.states.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")) if s.last and s.last.active]

    def evaluate(self, record: Mapping[str, Any], snap: WorkerSnapshot) -> list[dict[str, Any]]:
        conditions = [
            self._dlq_rate(record),
            self._lag_growing(snap),
            self._watermark_stalled(snap),
            self._store_unavailable(record),
            *self._volume_jumps(record),
        ]
        now = snap.ts_ms
        cooldown_ms = self.cfg.alert_cooldown_s * 1000
        out: list[dict[str, Any]] = []
        seen = set()
        for cond in conditions:
            seen.add(cond.key)
            st = self.states.setdefault(cond.key, _AlertState())
            st.last = cond
            if cond.active:
                if st.last_fired_ms is None or now - st.last_fired_ms >= cooldown_ms:
                    st.last_fired_ms = now
                    st.announced = True
                    out.append(self._record(cond, "firing", now))
            elif st.announced:
                st.announced = False
                out.append(self._record(cond, "resolved", now))
        for key, st in list(self.states.items()):  # a subject that disappeared has cleared
            if key not in seen:
                if st.announced and st.last is not None:
                    gone = Condition(st.last.code, False, 0, st.last.threshold, "no longer reported", st.last.subject)
                    out.append(self._record(gone, "resolved", now))
                del self.states[key]
        return out

    def _record(self, cond: Condition, status: str, now_ms: int) -> dict[str, Any]:
        message = cond.message if status == "firing" else f"resolved: {cond.message}"
        return {
            "ts": format_ts(now_ms),
            "worker": self.worker,
            "alert": cond.code,
            "subject": cond.subject,
            "status": status,
            "severity": SEVERITY[cond.code],
            "message": message,
            "value": cond.value,
            "threshold": cond.threshold,
        }

    # -- the rules --

    def _dlq_rate(self, record: Mapping[str, Any]) -> Condition:
        deltas = record.get("deltas", {})
        bad, good = deltas.get("invalid", 0), deltas.get("events", 0)
        volume = bad + good
        rate = bad / volume if volume else 0.0
        limit = self.cfg.dlq_rate_alert
        active = volume >= self.cfg.dlq_min_volume and rate > limit
        msg = f"{bad:,} of {volume:,} input messages in the last interval went to the dead-letter topic ({rate:.1%}, limit {limit:.1%})"
        return Condition("dlq_rate", active, round(rate, 6), limit, msg)

    def _lag_growing(self, snap: WorkerSnapshot) -> Condition:
        n = self.cfg.lag_growth_intervals
        for p in set(self._lag_prev) - set(snap.partitions):
            self._lag_prev.pop(p, None)
            self._lag_streak.pop(p, None)
        for p, st in snap.partitions.items():
            prev = self._lag_prev.get(p)
            if st.lag is None:
                self._lag_prev.pop(p, None)
                self._lag_streak[p] = 0
                continue
            grew = prev is not None and st.lag > prev
            self._lag_streak[p] = self._lag_streak.get(p, 0) + 1 if grew else 0
            self._lag_prev[p] = st.lag
        growing = sorted(p for p, k in self._lag_streak.items() if k >= n)
        longest = max(self._lag_streak.values(), default=0)
        detail = ", ".join(f"{p} (lag {self._lag_prev[p]:,})" for p in growing)
        msg = f"consumer lag grew {n}+ intervals in a row on partition(s) {detail}" if growing else "no partition's lag is growing"
        return Condition("lag_growing", bool(growing), longest, n, msg)

    def _watermark_stalled(self, snap: WorkerSnapshot) -> Condition:
        n = self.cfg.watermark_stall_intervals
        for p in set(self._wm_prev) - set(snap.partitions):
            self._wm_prev.pop(p, None)
            self._wm_streak.pop(p, None)
        for p, st in snap.partitions.items():
            prev = self._wm_prev.get(p)
            if st.watermark_ms is None:
                self._wm_prev.pop(p, None)
                self._wm_streak[p] = 0
                continue
            stalled = prev is not None and st.watermark_ms <= prev and (st.lag or 0) > 0
            self._wm_streak[p] = self._wm_streak.get(p, 0) + 1 if stalled else 0
            self._wm_prev[p] = max(st.watermark_ms, prev or 0)
        stuck = sorted(p for p, k in self._wm_streak.items() if k >= n)
        longest = max(self._wm_streak.values(), default=0)
        detail = ", ".join(f"{p} (lag {snap.partitions[p].lag or 0:,}, watermark {format_ts(self._wm_prev[p])})" for p in stuck)
        msg = f"watermark has not moved for {n}+ intervals while records wait on partition(s) {detail}" if stuck else "no watermark is stalled"
        return Condition("watermark_stalled", bool(stuck), longest, n, msg)

    def _store_unavailable(self, record: Mapping[str, Any]) -> Condition:
        deltas = record.get("deltas", {})
        worker, personas = deltas.get("store_retries", 0), deltas.get(PERSONA_PREFIX + "store_retries", 0)
        total = worker + personas
        msg = f"Redis unavailable: {total:,} state store retries in the last interval (pipeline {worker:,}, personas {personas:,})"
        return Condition("store_unavailable", total > 0, total, 0, msg)

    def _volume_jumps(self, record: Mapping[str, Any]) -> list[Condition]:
        k, factor, floor = self.cfg.volume_window_intervals, self.cfg.volume_jump_factor, self.cfg.volume_min_count
        counts: dict[str, float] = {t: 0 for t in self._volumes}
        for row in record.get("decisions", ()):
            counts[row["trigger"]] = counts.get(row["trigger"], 0) + row["delta"]
        out = []
        for trigger, count in sorted(counts.items()):
            history = self._volumes.setdefault(trigger, deque(maxlen=max(1, k)))
            if len(history) >= k:
                mean = sum(history) / len(history)
                limit = factor * mean
                active = count >= floor and count > limit
                msg = (
                    f"{count:,} {trigger} decisions in the last interval, {count / mean:.1f}x the mean of the previous {k} ({mean:,.1f})"
                    if mean
                    else f"{count:,} {trigger} decisions in the last interval after none in the previous {k}"
                )
                out.append(Condition("decision_volume_jump", active, count, round(limit, 3), msg, trigger))
            history.append(count)
        return out


# --------------------------------------------------------------------------- Prometheus

_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")

HELP = {
    "intentstream_events_total": "Valid input events applied (new offsets).",
    "intentstream_invalid_total": "Input messages sent to the dead-letter topic.",
    "intentstream_late_total": "Events later than the allowed lateness.",
    "intentstream_duplicates_total": "Events dropped as duplicates of an event_id seen before.",
    "intentstream_redelivered_total": "Input records skipped because their offset was already applied.",
    "intentstream_segments_total": "Intent segments closed.",
    "intentstream_decisions_total": "Trigger decisions by trigger, channel and status.",
    "intentstream_store_retries_total": "State store (Redis) calls retried after an outage.",
    "intentstream_published_total": "Outbox records published and acknowledged.",
    "intentstream_partition_watermark_seconds": "Event-time watermark of the partition (epoch seconds).",
    "intentstream_partition_lag": "Input records of the partition not applied yet (log end offset - next offset to apply).",
    "intentstream_partition_offset": "Highest input offset applied on the partition.",
    "intentstream_partition_highwater": "Log end offset of the input partition, as last fetched.",
    "intentstream_partition_timers": "Users of the partition with a pending event-time timer.",
    "intentstream_partition_recovered": "1 once the partition's outbox from a previous owner was published.",
    "intentstream_lag": "Input records not applied yet, all assigned partitions.",
    "intentstream_partitions_assigned": "Input partitions assigned to this worker.",
    "intentstream_ready": "1 when /health reports ready.",
    "intentstream_persona_leader": "1 while this worker's persona writer holds the lease (learns), 0 as standby.",
    "intentstream_persona_learned_total": "Segments learned by this worker's persona writer.",
    "intentstream_persona_malformed_total": "Malformed segments records skipped by the persona writer, by reason.",
    "intentstream_alert_firing": "1 while an ops alert condition holds.",
}


def _metric_name(*parts: str) -> str:
    return _NAME_BAD.sub("_", "_".join(p for p in parts if p))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Exposition:
    def __init__(self) -> None:
        self.families: dict[str, tuple[str, list[str]]] = {}

    def add(self, name: str, kind: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        _, lines = self.families.setdefault(name, (kind, []))
        label_text = ""
        if labels:
            label_text = "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"
        lines.append(f"{name}{label_text} {_fmt(value)}")

    def text(self) -> str:
        out = []
        for name, (kind, lines) in self.families.items():
            out.append(f"# HELP {name} {HELP.get(name, name.removeprefix('intentstream_').replace('_', ' '))}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(lines)
        return "\n".join(out) + "\n"


def render_prometheus(
    snap: WorkerSnapshot,
    *,
    worker: str = "",
    alerts: Iterable[Condition] = (),
    extra_counters: Mapping[str, float] | None = None,
) -> str:
    """The Prometheus text exposition (format 0.0.4) of a snapshot.

    Plain worker counters become ``intentstream_<name>_total``; ``decision:...`` keys
    ``intentstream_decisions_total{trigger,channel,status}`` and ``invalid:<reason>``
    keys ``intentstream_invalid_total{reason}`` (each replaces the plain total when
    present); per-partition gauges carry ``partition``; the persona writer's counters are
    ``intentstream_persona_<name>_total``; ``extra_counters`` (the reporter's own) are
    ``intentstream_ops_<name>_total``.

    >>> snap = WorkerSnapshot(0, {"events": 7, "decision:cart_abandoned:push:sent": 2},
    ...                       {3: PartitionState(watermark_ms=1500, lag=4)}, frozenset({3}), frozenset({3}))
    >>> print(render_prometheus(snap))  # doctest: +ELLIPSIS
    # HELP intentstream_events_total Valid input events applied (new offsets).
    # TYPE intentstream_events_total counter
    intentstream_events_total 7
    # HELP intentstream_decisions_total ...
    # TYPE intentstream_decisions_total counter
    intentstream_decisions_total{trigger="cart_abandoned",channel="push",status="sent"} 2
    ...
    intentstream_partition_watermark_seconds{partition="3"} 1.5
    ...
    """
    exp = _Exposition()
    plain, decisions, invalid = split_counters(snap.counters)
    for name, value in sorted(plain.items()):
        if (name == "decisions" and decisions) or (name == "invalid" and invalid):
            continue
        exp.add(_metric_name("intentstream", name, "total"), "counter", value)
    for (t, c, s), value in sorted(decisions.items()):
        exp.add("intentstream_decisions_total", "counter", value, {"trigger": t, "channel": c, "status": s})
    for reason, value in sorted(invalid.items()):
        exp.add("intentstream_invalid_total", "counter", value, {"reason": reason})
    gauges = (
        ("watermark_seconds", lambda st: st.watermark_ms / 1000.0 if st.watermark_ms else None),
        ("lag", lambda st: st.lag),
        ("offset", lambda st: st.offset),
        ("highwater", lambda st: st.highwater),
        ("timers", lambda st: st.timers),
        ("recovered", lambda st: st.recovered),
    )
    for suffix, get in gauges:
        for p, st in sorted(snap.partitions.items()):
            v = get(st)
            if v is not None:
                exp.add(f"intentstream_partition_{suffix}", "gauge", v, {"partition": str(p)})
    exp.add("intentstream_lag", "gauge", sum(st.lag for st in snap.partitions.values() if st.lag is not None))
    exp.add("intentstream_partitions_assigned", "gauge", len(snap.assigned or ()))
    exp.add("intentstream_ready", "gauge", readiness(snap.assigned, snap.recovered if snap.pipeline else None)[0])
    if snap.persona is not None:
        exp.add("intentstream_persona_leader", "gauge", snap.persona.leader)
        pc = dict(snap.persona.counters)
        reasons = {k.split(".", 1)[1]: v for k, v in pc.items() if k.startswith("malformed.")}
        for name, value in sorted(pc.items()):
            if name.startswith("malformed.") or (name == "malformed" and reasons):
                continue
            exp.add(_metric_name("intentstream_persona", name, "total"), "counter", value)
        for reason, value in sorted(reasons.items()):
            exp.add("intentstream_persona_malformed_total", "counter", value, {"reason": reason})
    for name, value in sorted((extra_counters or {}).items()):
        exp.add(_metric_name("intentstream_ops", name, "total"), "counter", value)
    for cond in alerts:
        exp.add("intentstream_alert_firing", "gauge", 1, {"alert": cond.code, "subject": cond.subject or ""})
    if worker:
        exp.add("intentstream_worker_info", "gauge", 1, {"worker": worker})
    return exp.text()
