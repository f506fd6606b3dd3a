"""The ``ops.metrics`` record (pure): built from two consecutive worker snapshots
(:mod:`intentstream.stream.ops.snapshot`); ``agents/monitoring.py`` publishes it.

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
     "outcomes": [{"trigger": "cart_abandoned", "records": 1000, "treatment": 950,
                   "holdout": 50, "cvr": 0.21, "holdout_cvr": 0.12, "enough": true,
                   "uplift": {"estimate": 0.09, "low": 0.0, "high": 0.17}}, ...],
     "alerts_active": ["store_unavailable"]}

``counters`` holds only plain names (no ``:``); the labelled worker counters
``decision:<trigger>:<channel>:<status>`` and ``invalid:<reason>`` are broken out into
``decisions`` and ``invalid_reasons``; ``outcome:...`` counters feed ``outcomes``, the
rolling conversion and uplift per trigger over its latest ``[outcomes] metrics_window``
measured outcome records (:mod:`intentstream.stream.ops.outcomes`). The persona writer's counters appear as
``personas.<name>``. ``deltas`` are since the previous record (a counter that went down —
a restarted pipeline — counts from zero); ``rates`` are deltas per second and absent on a
worker's first record. Partition fields that are unknown are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from intentstream.stream.contract.events import format_ts
from intentstream.stream.ops.snapshot import WorkerSnapshot, readiness

PERSONA_PREFIX = "personas."


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
        if name.startswith("outcome:"):
            continue  # broken out by intentstream.stream.ops.outcomes
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

    >>> from intentstream.stream.ops.snapshot import PartitionState
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
    if snap.outcomes:
        record["outcomes"] = [dict(o) for o in snap.outcomes]
    record["lag"] = sum(st.lag for st in snap.partitions.values() if st.lag is not None)
    record["assigned"] = sorted(snap.assigned) if snap.assigned is not None else None
    record["ready"] = readiness(snap.assigned, snap.recovered if snap.pipeline else None)[0]
    if snap.breaker is not None:
        b = snap.breaker
        record["breaker"] = {
            "open": b.open,
            "rule": b.rule or None,
            "detail": b.detail or None,
            "since": format_ts(b.since_ms) if b.since_ms else None,
            "held": dict(b.held),
            "rate_held": dict(b.rate_held),
        }
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
