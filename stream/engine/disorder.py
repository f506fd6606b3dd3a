"""Event-time disorder of an input, measured the way the engine will see it.

The engine judges lateness per partition: an event is **late** when it is more than
``[sessions] allowed_lateness_s`` behind its partition's progress (the newest event time
of the partition's ``[events] watermark_quorum``-th most advanced user,
:class:`~intentstream.stream.engine.progress.Leaders`; the watermark never goes back) or
behind its own user's newest event. A late event is placed out of order and counted,
never in a session's time range (see :mod:`intentstream.stream.sessions.sessionizer`).
A time-ordered stream has a few late deliveries; a file ordered by something else — a
database dump grouped by user (``SELECT … ORDER BY user_id``), a concatenation of
per-device exports — makes most events late, and the decisions then differ from those
of the same events in time order.

:class:`DisorderMeter` applies that rule while the input is read, per partition
(``murmur2(user_id) % partitions``, as Kafka and the offline runner place users; one
partition measures globally), with the engine's order of steps: an event first raises
its partition's progress, then is judged. Events the engine dead-letters as too far in
the future (``[events] max_future_s``) are left out. Duplicates, which the engine drops
before judging lateness, are counted here: the figure is the engine's late count on
input without duplicates, within their share otherwise. Memory: a few integers per
partition and one entry per user (its newest event time; its partition for
:meth:`DisorderMeter.observe_user`).

Past ``[events] max_late_share`` — once ``[events] late_share_min_events`` events were
read, and checked again at every late event after that, so a file that turns disordered
later stops too — the meter raises :class:`DisorderError` (``stop=True``) or only
remembers the first crossing in :attr:`DisorderMeter.tripped` (``stop=False``, for
``validate`` and ``--allow-disorder``). The share is cumulative from the first event.

>>> m = DisorderMeter(1, lateness_ms=300_000, quorum=1, max_future_ms=10**12, max_late_share=0.2, min_events=4, stop=False)
>>> for minute in (0, 10, 1, 12, 2, 3):   # 1, 2 and 3 are more than 5 min behind 10 or 12
...     m.observe(0, minute * 60_000, "u1")
>>> m.events, m.late, f"{m.share:.0%}", m.tripped
(6, 3, '50%', (4, 1))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from intentstream.stream.engine.partitioning import partition_for
from intentstream.stream.engine.progress import Leaders

if TYPE_CHECKING:
    from intentstream.stream.settings import Settings

_NEVER: Final = -(1 << 62)  # the newest time of a user, or the watermark of a partition, before any event


class DisorderError(Exception):
    """The input is too far out of event-time order to run as it is. ``str()`` is the
    message for the user: what is wrong, and how to fix it."""

    def __init__(self, meter: DisorderMeter) -> None:
        self.events, self.late = meter.events, meter.late
        super().__init__(meter.describe(self.events, self.late) + _ADVICE.format(share=meter.max_late_share))


_ADVICE = (
    "\n  fix: add --sort (orders the input by event time first; bounded memory, on disk for large inputs),"
    "\n  or raise [sessions] allowed_lateness_s; --allow-disorder runs it as it is ([events] max_late_share = {share:g})"
)


class DisorderMeter:
    """Share of the events the engine would count as late (see the module docstring).
    ``max_late_share=None``: no limit."""

    __slots__ = (
        "partitions", "lateness_ms", "max_future_ms", "max_late_share", "min_events", "stop",
        "events", "late", "future", "same_user", "tripped",
        "_lead", "_wm", "_newest", "_limit", "_last_user", "_where",
    )  # fmt: skip

    def __init__(
        self,
        partitions: int,
        lateness_ms: int,
        quorum: int,
        max_future_ms: int,
        max_late_share: float | None,
        min_events: int,
        stop: bool = True,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self.lateness_ms = lateness_ms
        self.max_future_ms = max_future_ms
        self.max_late_share = max_late_share
        self.min_events = min_events
        self.stop = stop
        self.events = 0
        self.late = 0
        self.future = 0  # left out: the engine dead-letters them (ts_in_future)
        self.same_user = 0  # events whose user is the previous event's: nearly all in a dump grouped by user
        #: ``(events, late)`` when the share first went past the limit (None: it never did)
        self.tripped: tuple[int, int] | None = None
        self._lead = [Leaders(quorum) for _ in range(partitions)]
        self._wm = [_NEVER] * partitions
        self._newest: dict[str, int] = {}  # user -> newest event time
        self._limit = 2.0 if max_late_share is None else max_late_share  # a share never exceeds 1
        self._last_user: str | None = None
        self._where: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings, partitions: int, stop: bool = True) -> DisorderMeter:
        """The meter of ``[events] max_late_share`` / ``late_share_min_events`` and the
        engine's lateness rule (``[sessions] allowed_lateness_s``, ``[events]
        watermark_quorum``, ``max_future_s``), over ``partitions`` partitions."""
        ev = settings.events
        return cls(
            partitions, settings.sessions.allowed_lateness_s * 1000, ev.watermark_quorum, ev.max_future_s * 1000,
            ev.max_late_share, ev.late_share_min_events, stop,
        )  # fmt: skip

    @property
    def share(self) -> float:
        """Late events / events so far (0 before the first event)."""
        return self.late / self.events if self.events else 0.0

    @property
    def sampled(self) -> bool:
        """Whether enough events were read for a verdict (``min_events``)."""
        return self.events >= self.min_events

    def observe(self, partition: int, ts_ms: int, user_id: str) -> None:
        """Judge one valid event of ``user_id`` on ``partition``; raises
        :class:`DisorderError` when the share goes past the limit and ``stop`` is set."""
        lead = self._lead[partition]
        if lead.judge(user_id, ts_ms, self.max_future_ms):
            self.future += 1
            return
        self.events += 1
        if user_id == self._last_user:
            self.same_user += 1
        self._last_user = user_id
        newest = self._newest.get(user_id, _NEVER)
        if ts_ms > newest:
            self._newest[user_id] = ts_ms
        lead.add(user_id, ts_ms)
        wm = lead.progress() - self.lateness_ms
        if wm > self._wm[partition]:
            self._wm[partition] = wm
        else:
            wm = self._wm[partition]
        if ts_ms < wm or ts_ms < newest - self.lateness_ms:
            self.late += 1
            if self.events >= self.min_events and self.late > self._limit * self.events:
                self._trip()
            return
        if self.events == self.min_events and self.late > self._limit * self.events:
            self._trip()

    def _trip(self) -> None:
        self.tripped = (self.events, self.late)
        self._limit = 2.0  # the first crossing is the one reported
        if self.stop:
            raise DisorderError(self)

    def observe_user(self, user_id: str, ts_ms: int) -> None:
        """:meth:`observe` on the partition Kafka's default partitioner gives ``user_id``."""
        p = self._where.get(user_id)
        if p is None:
            p = self._where[user_id] = partition_for(user_id.encode(), self.partitions)
        self.observe(p, ts_ms, user_id)

    def describe(self, events: int | None = None, late: int | None = None) -> str:
        """What the figures say (of the first ``events`` when given), for the user.

        >>> m = DisorderMeter(6, 300_000, 2, 10**12, 0.2, 1000)
        >>> m.describe(1000, 980)[:93]
        '98.0% of the first 1,000 events are more than 300 s behind the newest events read before them'
        """
        events = self.events if events is None else events
        late = self.late if late is None else late
        grouped = self.same_user > 0.8 * self.events  # a time-ordered stream interleaves its users
        return (
            f"{late / max(events, 1):.1%} of the first {events:,} events are more than {self._behind()}: "
            + ("the input looks ordered by user, not by time" if grouped else "the input is not in event-time order")
            + ". The engine would count them as late and decide otherwise than on the same events in time order."
        )

    def summary(self) -> str:
        """``validate``'s report: the share, its sample, and what the commands would do.

        >>> m = DisorderMeter(6, 300_000, 2, 10**12, 0.2, 1000, stop=False)
        >>> m.summary()
        'event-time disorder: 0 events, too few to measure (the check needs 1,000)'
        """
        if not self.sampled:
            return f"event-time disorder: {self.events:,} events, too few to measure (the check needs {self.min_events:,})"
        head = f"event-time disorder: {self.share:.1%} of {self.events:,} events are more than {self._behind()}"
        if self.tripped is None:
            return head + f"; under the limit ({self.max_late_share:g})"
        events, late = self.tripped
        return (
            head + f"\n  past the limit ({self.max_late_share:g}) at event {events:,} ({late / events:.1%} late): "
            "replay, segments and report --input stop there; run them with --sort (or --allow-disorder)"
        )

    def _behind(self) -> str:
        n = self.partitions
        where = f"on their partition, {n} partitions" if n > 1 else "1 partition"
        return f"{self.lateness_ms / 1000:g} s behind the newest events read before them ({where})"
