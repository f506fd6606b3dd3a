"""Circuit breakers on what goes out (pure; time is an argument): per-channel send-rate
limits (:class:`TokenBucket`), the storm breaker's rule (:class:`StormDetector`) and the
gate that splits a partition's outbox into what may be published now and what stays
held (:class:`Gate`). The I/O around them (Redis state, publishing, the operator's
``resume``) lives in :mod:`intentstream.agents.breaker`.

They act on *publishing* only: the engine decides and commits exactly as before; a held
``actions.<channel>`` entry stays in the partition's outbox and goes out later, in
outbox order. So replay still equals live, whatever the breakers did.

>>> from intentstream.stream.settings import BreakerSettings
>>> b = TokenBucket.of(per_minute=120, burst_s=1.0)       # 2 per second, 2 at once
>>> [b.take(0.0), b.take(0.0), b.take(0.0), b.take(0.5), b.take(0.6)]
[True, True, False, True, False]
>>> TokenBucket.of(per_minute=0, burst_s=1.0) is None       # 0: unlimited
True
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from intentstream.stream.settings import BreakerSettings

E = TypeVar("E")


@dataclass
class TokenBucket:
    """``rate`` tokens per second up to ``capacity``; one token per record. Starts full."""

    rate: float
    capacity: float
    tokens: float
    last: float | None = None

    @classmethod
    def of(cls, per_minute: int, burst_s: float) -> TokenBucket | None:
        """The bucket of a ``max_per_minute`` limit (None for 0: unlimited)."""
        if per_minute <= 0:
            return None
        capacity = max(1.0, per_minute * burst_s / 60.0)
        return cls(per_minute / 60.0, capacity, capacity)

    def take(self, now: float) -> bool:
        """Take one token at ``now`` (seconds, any monotonic clock) if there is one."""
        if self.last is not None and now > self.last:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now if self.last is None else max(self.last, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True)
class Trip:
    """Why the storm breaker tripped: ``rule`` is ``sends_ceiling``, ``decisions_ceiling``,
    ``sends_jump`` or ``late_share``."""

    rule: str
    value: float
    threshold: float
    message: str


class StormDetector:
    """The storm rule over fixed intervals of ``[breaker] interval_s`` (worker clock).

    Feed what each engine step produced to :meth:`observe`; it returns a :class:`Trip`
    as soon as the current interval's totals break a rule — the ceilings work from the
    very first interval, the jump rule once ``storm_baseline_intervals`` intervals were
    seen.

    >>> cfg = BreakerSettings.defaults(interval_s=10.0, storm_max_sends=100, storm_min_sends=10,
    ...                                storm_jump_factor=5.0, storm_baseline_intervals=2)
    >>> d = StormDetector(cfg)
    >>> d.observe(0.0, sends=60), d.observe(5.0, sends=41).rule    # ceiling, first interval
    (None, 'sends_ceiling')
    >>> d = StormDetector(cfg)
    >>> [d.observe(t, sends=4) for t in (0.0, 10.0)]
    [None, None]
    >>> d.observe(20.0, sends=19), d.observe(21.0, sends=2).rule  # 21 > 5 x mean 4
    (None, 'sends_jump')
    """

    def __init__(self, cfg: BreakerSettings) -> None:
        self.cfg = cfg
        self.start: float | None = None
        self.history: deque[int] = deque(maxlen=max(1, cfg.storm_baseline_intervals))
        self.sends = self.decisions = self.events = self.late = 0

    def reset(self, now: float) -> None:
        """Start a fresh interval at ``now`` (after a release: the counts that tripped the
        breaker must not trip it again)."""
        self.start = now
        self.sends = self.decisions = self.events = self.late = 0

    def _roll(self, now: float) -> None:
        step = self.cfg.interval_s
        if self.start is None:
            self.start = now
            return
        ended = int((now - self.start) // step) if now >= self.start else 0
        if ended <= 0:
            return
        self.history.append(self.sends)
        for _ in range(min(ended - 1, self.history.maxlen or 1)):
            self.history.append(0)  # intervals without any step
        self.start += ended * step
        self.sends = self.decisions = self.events = self.late = 0

    def observe(self, now: float, *, sends: int = 0, decisions: int = 0, events: int = 0, late: int = 0) -> Trip | None:
        self._roll(now)
        self.sends += sends
        self.decisions += decisions
        self.events += events
        self.late += late
        return self.check()

    def check(self) -> Trip | None:
        c = self.cfg
        if c.storm_max_sends and self.sends > c.storm_max_sends:
            return Trip("sends_ceiling", self.sends, c.storm_max_sends,
                        f"{self.sends:,} actions to send in one interval, ceiling {c.storm_max_sends:,}")  # fmt: skip
        if c.storm_max_decisions and self.decisions > c.storm_max_decisions:
            return Trip("decisions_ceiling", self.decisions, c.storm_max_decisions,
                        f"{self.decisions:,} decisions in one interval, ceiling {c.storm_max_decisions:,}")  # fmt: skip
        k = self.history.maxlen or 1
        if c.storm_min_sends and len(self.history) >= k and self.sends >= c.storm_min_sends:
            mean = sum(self.history) / len(self.history)
            limit = c.storm_jump_factor * mean
            if self.sends > limit:
                return Trip("sends_jump", self.sends, round(limit, 3),
                            f"{self.sends:,} actions to send in one interval, {c.storm_jump_factor:g}x above the mean of the previous {k} ({mean:,.1f})")  # fmt: skip
        if c.storm_late_share and self.events >= c.storm_late_min_events:
            share = self.late / self.events
            if share > c.storm_late_share:
                return Trip("late_share", round(share, 6), c.storm_late_share,
                            f"{self.late:,} of {self.events:,} events in one interval were late ({share:.1%}, limit {c.storm_late_share:.1%})")  # fmt: skip
        return None


@dataclass(frozen=True)
class BreakerState:
    """What a worker's breakers hold, for the metrics and the alert rules: ``open`` while
    the storm breaker pauses ``actions.*``; ``held`` / ``rate_held`` count held entries
    by channel (all of them / those held by a rate limit while the storm breaker was closed)."""

    open: bool = False
    rule: str = ""
    detail: str = ""
    since_ms: int | None = None
    held: Mapping[str, int] = field(default_factory=dict)
    rate_held: Mapping[str, int] = field(default_factory=dict)


class Gate(Generic[E]):
    """Splits outbox entries (in outbox order) into those to publish now and those to
    hold. Entries of no channel (``channel_of`` returns None: segments, audit, dead
    letters) always go. While the storm breaker is ``open`` every channel's entries are
    held; otherwise an entry goes if its channel's bucket has a token and no earlier entry
    of that channel on the same partition is held (so release keeps the order).

    >>> cfg = BreakerSettings.defaults(max_per_minute_sms=60, burst_s=1.0)
    >>> gate = Gate(cfg, lambda e: e[0] or None)
    >>> out, held = gate.split(0, [("sms", 1), ("", 2), ("sms", 3), ("push", 4)], now=0.0, full=True)
    >>> out, held, dict(gate.rate_held[0])
    ([('sms', 1), ('', 2), ('push', 4)], [('sms', 3)], {'sms': 1})
    >>> gate.split(0, [("sms", 5)], now=0.5, full=False)       # behind the held one
    ([], [('sms', 5)])
    >>> gate.split(0, [("sms", 3), ("sms", 5)], now=2.0, full=True)[0]   # the tick: in order
    [('sms', 3)]
    """

    def __init__(self, cfg: BreakerSettings, channel_of: Callable[[E], str | None]) -> None:
        self.cfg = cfg
        self.channel_of = channel_of
        self.open = False
        self.buckets: dict[str, TokenBucket | None] = {}
        self.blocked: dict[int, set[str]] = {}
        self.held: dict[int, Counter[str]] = {}
        self.rate_held: dict[int, Counter[str]] = {}

    def bucket(self, channel: str) -> TokenBucket | None:
        if channel not in self.buckets:
            self.buckets[channel] = TokenBucket.of(self.cfg.max_per_minute(channel), self.cfg.burst_s)
        return self.buckets[channel]

    def block(self, partition: int, channels: Iterable[str]) -> None:
        """Hold ``channels`` of ``partition`` until the next full pass (entries of an
        unknown state wait in the outbox, e.g. after a restart)."""
        self.blocked.setdefault(partition, set()).update(channels)

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.blocked.pop(p, None)
            self.held.pop(p, None)
            self.rate_held.pop(p, None)

    def split(self, partition: int, entries: Iterable[E], *, now: float, full: bool) -> tuple[list[E], list[E]]:
        """``full``: ``entries`` are the partition's whole outbox (forget what was held
        before); else the entries of one step, behind whatever is held already."""
        blocked = set() if full else set(self.blocked.get(partition, ()))
        held_n: Counter[str] = Counter() if full else Counter(self.held.get(partition, {}))
        rate_n: Counter[str] = Counter() if full else Counter(self.rate_held.get(partition, {}))
        out: list[E] = []
        held: list[E] = []
        for e in entries:
            ch = self.channel_of(e)
            if ch is None:
                out.append(e)
                continue
            if not self.open and ch not in blocked:
                b = self.bucket(ch)
                if b is None or b.take(now):
                    out.append(e)
                    continue
            held.append(e)
            blocked.add(ch)
            held_n[ch] += 1
            if not self.open:
                rate_n[ch] += 1
        self.blocked[partition] = blocked
        self.held[partition] = held_n
        self.rate_held[partition] = rate_n
        return out, held

    def state(self, rule: str = "", detail: str = "", since_ms: int | None = None) -> BreakerState:
        held: Counter[str] = Counter()
        rate: Counter[str] = Counter()
        for c in self.held.values():
            held.update(c)
        for c in self.rate_held.values():
            rate.update(c)
        return BreakerState(self.open, rule, detail, since_ms, dict(sorted((+held).items())), dict(sorted((+rate).items())))
