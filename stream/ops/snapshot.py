"""What one ops report is built from: a :class:`WorkerSnapshot` of a running worker (its
counters, each input partition's :class:`PartitionState`, the persona writer's
:class:`PersonaState`), taken by ``agents/monitoring.py``; the lag of a partition and the
worker's readiness (``/health``) derived from it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from intentstream.stream.ops.breaker import BreakerState


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

    ``assigned`` is None while the consumer has no assignment yet (not started);
    ``breaker`` is what the worker's circuit breakers hold (None: unknown)."""

    ts_ms: int
    counters: Mapping[str, float] = field(default_factory=dict)
    partitions: Mapping[int, PartitionState] = field(default_factory=dict)
    assigned: frozenset[int] | None = None
    recovered: frozenset[int] = frozenset()
    pipeline: bool = True
    persona: PersonaState | None = None
    breaker: BreakerState | None = None
    #: rolling conversion and uplift per trigger (:class:`~intentstream.stream.ops.outcomes.OutcomeMeter`)
    outcomes: tuple[Mapping[str, Any], ...] = ()
    #: every arm of the strategy policy -> this worker's partitions on which the ROI guard
    #: pauses it (empty: no policy, or no partition yet)
    roi_paused: Mapping[tuple[str, str], int] = field(default_factory=dict)


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
