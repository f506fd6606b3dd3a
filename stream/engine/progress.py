"""A partition's progress in event time, robust to one wrong clock.

The watermark used to be "the newest event time seen - allowed lateness": one device
with its clock six months ahead made every other event of the partition late and fired
every pending timer. Here the progress is the newest event time of the partition's
``quorum``-th most advanced user (``[events] watermark_quorum``): it moves only on
evidence from that many users, so a single outlier moves only its own user. Until the
partition has seen that many users the watermark waits (each user's own events still
move that user's horizon, which is all a lone user needs). The cost is latency: the
watermark follows the quorum-th user, a few milliseconds behind the newest event in busy
traffic.

An event further ahead of the progress than ``[events] max_future_s`` is *in the
future*: the engine dead-letters it (reason ``ts_in_future``) before it touches any
state — unless ``quorum`` different users are that far ahead: then time really jumped
(the whole app was quiet for longer than the tolerance, or a backlog starts), the
jump is accepted and only the first ``quorum - 1`` of those events were dead-lettered
(replayable from the dead-letter topic). Deterministic: the leaders and the users seen
ahead are kept in the partition meta, updated in offset order, the same live and offline.

>>> lead = Leaders(quorum=2)
>>> lead.add("a", 1_000); lead.progress()
-1
>>> lead.add("b", 2_000); lead.progress()
1000
>>> DAY = 86_400_000
>>> lead.judge("skewed", 400 * DAY, max_future_ms=30 * DAY), lead.judge("a", 3_000, 30 * DAY)
(True, False)
>>> lead.add("a", 3_000); lead.progress()   # the skewed event was dead-lettered: nothing moved
2000
>>> lead.judge("b", 400 * DAY + 5, 30 * DAY)  # a second user that far ahead: time jumped
False
>>> lead.add("b", 400 * DAY + 5); lead.progress() == 400 * DAY
True
"""

from __future__ import annotations

from collections.abc import Iterable


class Leaders:
    """The ``quorum`` most advanced users of a partition: ``(newest event time, user)``,
    newest first. A user's newest time only grows, and a user leaves the list only when
    ``quorum`` others are ahead of it, so the list is exact."""

    __slots__ = ("quorum", "top", "ahead")

    def __init__(self, quorum: int, top: Iterable[tuple[int, str]] = (), ahead: Iterable[tuple[int, str]] = ()) -> None:
        if quorum < 1:
            raise ValueError("[events] watermark_quorum must be >= 1")
        self.quorum = quorum
        self.top: list[tuple[int, str]] = sorted(((int(t), u) for t, u in top), reverse=True)[:quorum]
        #: users seen implausibly far ahead, with their newest such time (fewer than quorum)
        self.ahead: dict[str, int] = {u: int(t) for t, u in ahead}

    def progress(self) -> int:
        """The quorum-th user's newest event time; -1 while fewer users are known."""
        return self.top[-1][0] if len(self.top) >= self.quorum else -1

    def judge(self, user: str, ts: int, max_future_ms: int) -> bool:
        """Whether ``user``'s event at ``ts`` is implausibly far ahead (only once ``quorum``
        users are known): True means dead-letter it. When ``quorum`` different users are
        that far ahead, time jumped: they all join the leaders and this one is accepted."""
        if len(self.top) < self.quorum or ts <= self.top[-1][0] + max_future_ms:
            return False
        self.ahead[user] = max(ts, self.ahead.get(user, ts))
        floor = self.top[-1][0] + max_future_ms
        ahead = {u: t for u, t in self.ahead.items() if t > floor}
        if len(ahead) < self.quorum:
            self.ahead = ahead
            return True
        self.ahead = {}
        for u, t in sorted(ahead.items()):
            if u != user:
                self.add(u, t)
        return False

    def add(self, user: str, ts: int) -> None:
        top = self.top
        for i, (t, u) in enumerate(top):
            if u == user:
                if ts <= t:
                    return
                del top[i]
                break
        else:
            if len(top) >= self.quorum and ts <= top[-1][0]:
                return
        top.append((ts, user))
        top.sort(reverse=True)
        del top[self.quorum :]

    def dump(self) -> list[list]:
        return [[t, u] for t, u in self.top]

    def dump_ahead(self) -> tuple[tuple[int, str], ...]:
        return tuple((t, u) for u, t in sorted(self.ahead.items()))
