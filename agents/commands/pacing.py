"""Pacing a replay: at most N lines a second (:class:`RateLimiter`) or X times the
event-time pace (:class:`EventTimePacer`); both take a clock, so tests drive them by hand."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Paces calls to at most ``rate`` per second: call :meth:`reserve` before each event
    and sleep the seconds it returns.

    Event *i* is never released before ``start + i / rate``. After a stall (a slow
    broker) the schedule catches up by at most ``burst_s`` worth of events, so a
    one-second window never carries much more than the cap.

    >>> now = [0.0]
    >>> limiter = RateLimiter(4, clock=lambda: now[0])
    >>> [limiter.reserve() for _ in range(5)]
    [0.0, 0.25, 0.5, 0.75, 1.0]
    >>> now[0] = 10.0  # a long stall: the missed slots are not released all at once
    >>> round(limiter.reserve(), 3), round(limiter.reserve(), 3)
    (0.0, 0.15)
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic, burst_s: float = 0.1) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.interval = 1.0 / rate
        self.clock = clock
        self.burst_s = burst_s
        self.next_at: float | None = None

    def reserve(self) -> float:
        """Seconds to wait before the next event may go; books its slot."""
        now = self.clock()
        if self.next_at is None:
            self.next_at = now
        self.next_at = max(self.next_at, now - self.burst_s)
        wait = self.next_at - now
        self.next_at += self.interval
        return max(0.0, wait)


class EventTimePacer:
    """Replays at ``speed`` times event-time speed: :meth:`delay` gives the seconds to
    wait before sending an event with time ``ts_ms``.

    The schedule is anchored on the first event; only events that advance the newest
    event time seen wait (late, out-of-order events go at once). When the replay falls
    more than ``max_lag_s`` behind its schedule (a slow broker), it re-anchors instead
    of bursting to catch up.

    >>> now = [100.0]
    >>> pacer = EventTimePacer(10, clock=lambda: now[0])
    >>> pacer.delay(1_000_000), pacer.delay(1_020_000), pacer.delay(1_005_000)
    (0.0, 2.0, 0.0)
    >>> now[0] = 150.0  # 48 s behind: re-anchor, no burst
    >>> pacer.delay(1_030_000), pacer.delay(1_040_000)
    (0.0, 1.0)
    """

    def __init__(self, speed: float, clock: Callable[[], float] = time.monotonic, max_lag_s: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self.clock = clock
        self.max_lag_s = max_lag_s
        self.anchor: tuple[int, float] | None = None  # (event ms, monotonic s)
        self.newest_ms: int | None = None

    def delay(self, ts_ms: int) -> float:
        """Seconds to wait before the event at ``ts_ms`` is due."""
        now = self.clock()
        if self.anchor is None:
            self.anchor, self.newest_ms = (ts_ms, now), ts_ms
            return 0.0
        assert self.newest_ms is not None
        if ts_ms <= self.newest_ms:
            return 0.0
        self.newest_ms = ts_ms
        due = self.anchor[1] + (ts_ms - self.anchor[0]) / 1000.0 / self.speed
        if now - due > self.max_lag_s:
            self.anchor = (ts_ms, now)
            return 0.0
        return max(0.0, due - now)


def sleep_for(seconds: float, tick: Callable[[], None] | None = None, step: float = 0.25) -> None:
    """Sleep, in steps of at most ``step`` s calling ``tick`` between them (progress)."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, step))
        if tick is not None:
            tick()
