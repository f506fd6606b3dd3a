"""The Prometheus text exposition (format 0.0.4) of a worker snapshot: what ``GET
/metrics`` serves."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from intentstream.stream.ops.alerts import Condition
from intentstream.stream.ops.metrics import split_counters
from intentstream.stream.ops.outcomes import outcome_totals
from intentstream.stream.ops.snapshot import WorkerSnapshot, readiness

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"

_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")

HELP = {
    "intentstream_events_total": "Valid input events applied (new offsets).",
    "intentstream_invalid_total": "Input messages sent to the dead-letter topic.",
    "intentstream_late_total": "Events later than the allowed lateness.",
    "intentstream_duplicates_total": "Events dropped as duplicates of an event_id seen before.",
    "intentstream_redelivered_total": "Input records skipped because their offset was already applied.",
    "intentstream_segments_total": "Intent segments closed.",
    "intentstream_decisions_total": "Trigger decisions by trigger, channel and status.",
    "intentstream_outcomes_total": "Outcome records (attribution window closed) by trigger, arm and conversion.",
    "intentstream_outcome_conversion_rate": "Conversion of the trigger's latest [outcomes] metrics_window measured outcome records, by arm.",
    "intentstream_outcome_uplift": "Conversion uplift (treatment - holdout) over the same window, with its interval bounds.",
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
    "intentstream_roi_guard_paused": "Partitions of this worker on which the ROI guard pauses the strategy arm (0: chosen normally).",
    "intentstream_breaker_open": "1 while the storm breaker pauses publishing to actions.*.",
    "intentstream_breaker_held": "actions.* records held in the outbox by the breakers, by channel and cause (storm or rate).",
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
    present); ``outcome:...`` keys ``intentstream_outcomes_total{trigger,arm,converted}``,
    with the rolling per-trigger gauges ``intentstream_outcome_conversion_rate{trigger,arm}``
    and ``intentstream_outcome_uplift{trigger,bound}`` (only with enough data);
    per-partition gauges carry ``partition``; the persona writer's counters are
    ``intentstream_persona_<name>_total``; ``intentstream_roi_guard_paused{trigger,arm}``
    counts the partitions on which the ROI guard pauses each policy arm; ``extra_counters`` (the reporter's own) are
    ``intentstream_ops_<name>_total``.

    >>> from intentstream.stream.ops.snapshot import PartitionState
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
    for (t, arm, conv), value in outcome_totals(snap.counters).items():
        exp.add("intentstream_outcomes_total", "counter", value, {"trigger": t, "arm": arm, "converted": conv})
    for o in snap.outcomes:
        for arm, key in (("treatment", "cvr"), ("holdout", "holdout_cvr")):
            if o[key] is not None:
                exp.add("intentstream_outcome_conversion_rate", "gauge", o[key], {"trigger": o["trigger"], "arm": arm})
        if o["uplift"] is not None:
            for bound in ("estimate", "low", "high"):
                exp.add("intentstream_outcome_uplift", "gauge", o["uplift"][bound], {"trigger": o["trigger"], "bound": bound})
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
    if snap.breaker is not None:
        exp.add("intentstream_breaker_open", "gauge", snap.breaker.open)
        rate = snap.breaker.rate_held
        for channel, n in sorted(snap.breaker.held.items()):
            if n - rate.get(channel, 0):
                exp.add("intentstream_breaker_held", "gauge", n - rate.get(channel, 0), {"channel": channel, "cause": "storm"})
        for channel, n in sorted(rate.items()):
            exp.add("intentstream_breaker_held", "gauge", n, {"channel": channel, "cause": "rate"})
    for name, value in sorted((extra_counters or {}).items()):
        exp.add(_metric_name("intentstream_ops", name, "total"), "counter", value)
    for (trigger, arm), n in sorted(snap.roi_paused.items()):
        exp.add("intentstream_roi_guard_paused", "gauge", n, {"trigger": trigger, "arm": arm})
    for cond in alerts:
        exp.add("intentstream_alert_firing", "gauge", 1, {"alert": cond.code, "subject": cond.subject or ""})
    if worker:
        exp.add("intentstream_worker_info", "gauge", 1, {"worker": worker})
    return exp.text()
