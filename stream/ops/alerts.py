"""Ops alert rules (pure; time comes from the records): the conditions over consecutive
metrics records, and the alert records they produce.

**Alert record** (``[topics] alerts``, key = worker id)::

    {"ts": ..., "worker": ..., "alert": "dlq_rate", "subject": null, "status": "firing",
     "severity": "warning", "message": "...", "value": 0.12, "threshold": 0.05}

An alert is identified by (``alert``, ``subject``) — the subject is the trigger for
``decision_volume_jump``, else null. While its condition holds it is sent at most once per
``[ops] alert_cooldown_s``; once the condition clears, one record with ``"status":
"resolved"`` follows (only if a firing record was sent). Codes: ``dlq_rate``,
``lag_growing``, ``watermark_stalled``, ``decision_volume_jump``, ``store_unavailable``,
and, from the very first interval (no history needed): ``decision_storm`` (the storm
breaker is open: ``actions.*`` publishing paused), ``send_rate_limited`` (a channel's
send-rate limit holds records), ``late_share_spike`` (the interval's late share above
``[ops] late_share_alert``) and ``clock_skew`` (events dead-lettered as
``ts_in_future`` in the interval). The README has a runbook entry for each.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from intentstream.stream.contract.events import format_ts
from intentstream.stream.ops.metrics import PERSONA_PREFIX
from intentstream.stream.ops.snapshot import WorkerSnapshot
from intentstream.stream.settings import OpsSettings

ALERT_CODES = (
    "dlq_rate",
    "lag_growing",
    "watermark_stalled",
    "decision_volume_jump",
    "store_unavailable",
    "decision_storm",
    "send_rate_limited",
    "late_share_spike",
    "clock_skew",
)
#: the dead-letter reason of events dated implausibly far ahead (the clock-skew guard)
TS_IN_FUTURE = "ts_in_future"
SEVERITY = {
    "dlq_rate": "warning",
    "lag_growing": "warning",
    "watermark_stalled": "critical",
    "decision_volume_jump": "warning",
    "store_unavailable": "critical",
    "decision_storm": "critical",
    "send_rate_limited": "warning",
    "late_share_spike": "warning",
    "clock_skew": "warning",
    # raised by the engine itself (stream/policy/guard.py), not by these rules
    "roi_guard": "warning",
}


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

    >>> from intentstream.stream.ops.metrics import build_record
    >>> rules = AlertRules(OpsSettings.defaults(alert_cooldown_s=60), "w1")
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
            self._decision_storm(snap),
            self._send_rate_limited(snap),
            self._late_share_spike(record),
            self._clock_skew(record),
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

    def _decision_storm(self, snap: WorkerSnapshot) -> Condition:
        b = snap.breaker
        is_open = b is not None and b.open
        held = sum(b.held.values()) if b is not None else 0
        if b is not None and b.open:
            since = f" since {format_ts(b.since_ms)}" if b.since_ms else ""
            msg = f"storm breaker open{since} ({b.rule}: {b.detail}); publishing to actions.* paused, {held:,} action(s) held here; see `intentstream resume --dry-run`"
        else:
            msg = "storm breaker closed"
        return Condition("decision_storm", is_open, held, 0, msg)

    def _send_rate_limited(self, snap: WorkerSnapshot) -> Condition:
        rate = dict(snap.breaker.rate_held) if snap.breaker is not None else {}
        held = sum(rate.values())
        detail = ", ".join(f"{ch} {n:,}" for ch, n in sorted(rate.items()) if n)
        msg = f"send-rate limits hold {held:,} action(s) in the outbox ({detail})" if held else "no send-rate limit holds anything"
        return Condition("send_rate_limited", held > 0, held, 0, msg)

    def _late_share_spike(self, record: Mapping[str, Any]) -> Condition:
        deltas = record.get("deltas", {})
        late, events = deltas.get("late", 0), deltas.get("events", 0)
        share = late / events if events else 0.0
        limit = self.cfg.late_share_alert
        active = events >= self.cfg.late_share_min_events and share > limit
        msg = f"{late:,} of {events:,} events in the last interval were late ({share:.1%}, limit {limit:.1%})"
        return Condition("late_share_spike", active, round(share, 6), limit, msg)

    def _clock_skew(self, record: Mapping[str, Any]) -> Condition:
        n = sum(r["delta"] for r in record.get("invalid_reasons", ()) if r["reason"] == TS_IN_FUTURE)
        msg = f"{n:,} event(s) in the last interval dated implausibly far ahead (dead-lettered as {TS_IN_FUTURE}): a device or producer clock is wrong"
        return Condition("clock_skew", n > 0, n, 0, msg)
