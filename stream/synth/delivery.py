"""The delivery side of the generator: event ids and timestamps, delivery accidents, and
the order in which lines come out.

Lines come in event-time order, except *late* events (delayed 2–240 s, or for a quarter
of them 7–30 min, beyond the 5-minute allowed lateness; events that drive journeys are
never made too late), *duplicates* (the identical line again 0.5–300 s later) and,
optionally, *invalid* lines (malformed JSON, missing fields, bad ts, …) right after the
event they were derived from, with their own event ids. Delivery accidents come from a
second per-user generator, so changing their shares never changes the events themselves.
Retried uploads, offline flushes and cross-device sessions (all off by default) are
:mod:`~intentstream.stream.synth.realworld`'s; with ``order="user"`` the output is a dump
grouped by user id, each user's lines in their delivery order (:func:`deliver`).
"""

from __future__ import annotations

import heapq
import random
from typing import Any, Final, Iterator

from intentstream.stream import codec
from intentstream.stream.contract.events import format_ts
from intentstream.stream.synth.config import DAY_MS, GenerationStats, GeneratorConfig
from intentstream.stream.synth.personas import persona_counts
from intentstream.stream.synth.realworld import Burst, Extra, RealWorld, realworld_on
from intentstream.stream.synth.truth import JourneyTracker, truth_record
from intentstream.stream.synth.users import SyntheticUser, synthetic_users

# Event types a very late delivery must not hit: they drive journeys and triggers.
JOURNEY_EVENT_TYPES: Final = frozenset(
    {
        "add_to_cart", "checkout_start", "payment_submit", "payment_success", "payment_fail",
        "kyc_start", "kyc_submit", "kyc_approved", "kyc_rejected", "coupon_redeem", "unsubscribe",
    }
)  # fmt: skip

_DAY_PREFIX: dict[int, str] = {}


def iso_ts(ts_ms: int) -> str:
    """:func:`intentstream.stream.contract.events.format_ts`, about three times faster on a stream: the date part
    comes from ``format_ts`` once per day, the time of day is plain arithmetic.

    >>> iso_ts(1767607200123) == format_ts(1767607200123) == '2026-01-05T10:00:00.123Z'
    True
    """
    day, rem = divmod(ts_ms, DAY_MS)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = format_ts(day * DAY_MS)[:11]  # "2026-01-05T"
    seconds, ms = divmod(rem, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}Z"


def invalid_line(rng: random.Random, ev: dict[str, Any]) -> bytes:
    """A broken copy of ``ev`` (own event id) that the event contract must reject."""
    bad = dict(ev)
    bad["event_id"] = ev["event_id"] + "-x"
    kind = rng.randrange(8)
    if kind == 0:  # truncated JSON
        line = codec.dumps_line(bad)
        return line[: rng.randrange(1, len(line) - 2)] + b"\n"
    if kind == 1:
        del bad[rng.choice(("user_id", "ts", "type", "event_id"))]
    elif kind == 2:
        bad["ts"] = rng.choice(("yesterday", "2026-13-45T25:61:00Z", ev["ts"].rstrip("Z")))
    elif kind == 3:
        bad["amount"] = -round(rng.uniform(1, 100), 2)
    elif kind == 4:
        bad["channel"] = "tv"
    elif kind == 5:
        bad["tz"] = "Mars/Olympus_Mons"
    elif kind == 6:
        bad["user_id"] = rng.randrange(1, 10**6)
    else:
        bad["ts"] = 1.5e12  # epoch must be integer milliseconds
    return codec.dumps_line(bad)


#: One event to deliver: (ts_ms, user index, seq, event, late delay ms, duplicate delay ms
#: or -1, invalid line or None, real-world extra or None).
DeliveryRecord = tuple[int, int, int, dict[str, Any], int, int, "bytes | None", "Extra | None"]


class UserFeed:
    """A user's delivery side: ids and ts, delivery accidents, journeys and counters."""

    __slots__ = ("cfg", "user", "drng", "journeys", "prefix", "n", "late", "very_late", "dups", "bad", "rw")

    def __init__(self, cfg: GeneratorConfig, user: SyntheticUser) -> None:
        self.cfg = cfg
        self.user = user
        self.drng = random.Random(f"intentstream:{cfg.seed}:{user.idx}:delivery")
        self.journeys = JourneyTracker(cfg)
        self.prefix = "e" + user.uid[1:] + "-"
        self.n = self.late = self.very_late = self.dups = self.bad = 0
        self.rw = RealWorld(cfg, user, self.prefix) if realworld_on(cfg) else None

    def records(self, session: list[tuple[int, dict[str, Any]]]) -> list[DeliveryRecord]:
        """The delivery records of one session's events, in (true) event-time order."""
        cfg, drng, feed, prefix, idx = self.cfg, self.drng, self.journeys.feed, self.prefix, self.user.idx
        late_p, dup_p, bad_p = cfg.late_share, cfg.late_share + cfg.duplicate_share, cfg.invalid_share
        allowed = cfg.allowed_lateness_s * 1000
        n, rw = self.n, self.rw
        reported: list[int] | None = None  # the ts the events carry, where a device's clock is off
        burst: Burst | None = None
        if rw is not None:
            reported = rw.switch_device(session, n)
            burst = rw.burst(session)
        out: list[DeliveryRecord] = []
        for i, (ts, ev) in enumerate(session):
            ev["event_id"] = f"{prefix}{n:05d}"
            if reported is None:
                ev["ts"] = iso_ts(ts)
                feed(ts, ev)
            else:
                ev["ts"] = iso_ts(reported[i])
            late_ms, dup_ms, line, extra, very = 0, -1, None, None, False
            r = drng.random()
            if r < late_p:
                very = drng.random() < 0.25 and ev["type"] not in JOURNEY_EVENT_TYPES
                if very:
                    late_ms = drng.randrange(allowed + 120_000, max(allowed + 120_001, 1_800_000))
                else:
                    late_ms = drng.randrange(2_000, max(2_001, allowed - 60_000))
            elif r < dup_p:
                dup_ms = drng.randrange(500, 300_000)
            if bad_p and drng.random() < bad_p:
                line = invalid_line(drng, ev)
                self.bad += 1
            if rw is not None:
                late_ms, dup_ms, line, extra = rw.deliveries(ts, ev, late_ms, dup_ms, line, burst)
            if late_ms:
                self.late += 1
                self.very_late += very
            elif dup_ms >= 0:
                self.dups += 1
            out.append((ts, idx, n, ev, late_ms, dup_ms, line, extra))
            n += 1
        self.n = n
        if reported is not None:  # the journeys follow the ts the events carry
            for rts, (_, ev) in sorted(zip(reported, session), key=lambda pair: pair[0]):
                feed(rts, ev)
        return out

    def finish(self, stats: GenerationStats) -> None:
        stats.events += self.n
        stats.late += self.late
        stats.very_late += self.very_late
        stats.duplicates += self.dups
        stats.invalid += self.bad
        if self.rw is not None:
            retries, flushes, flushed, switches = self.rw.finish()
            stats.retries += retries
            stats.flushes += flushes
            stats.flushed += flushed
            stats.cross_device += switches
        found = self.journeys.finish()
        for j in found:
            stats.journeys[j["journey"]] = stats.journeys.get(j["journey"], 0) + 1
        if stats.collect_truth:
            stats.truth[self.user.idx] = truth_record(self, found)


def deliver(cfg: GeneratorConfig, stats: GenerationStats | None) -> Iterator[dict[str, Any] | bytes]:
    """Events (dicts) and invalid lines (bytes) in delivery order, or with ``order="user"``
    grouped by user id as a ``SELECT … ORDER BY user_id`` dump gives: each user's lines in
    their delivery order (each user is delivered on its own; delivery order within a user
    never depends on the other users, so the dump holds exactly the lines of the time order).
    """
    stats = GenerationStats() if stats is None else stats
    stats.users = cfg.users
    stats.personas = persona_counts(cfg.users, cfg.mix)
    stats.realworld, stats.order = realworld_on(cfg), cfg.order
    if cfg.order == "user":
        for user in synthetic_users(cfg):
            yield from _deliver([UserFeed(cfg, user)], stats)
    else:
        yield from _deliver([UserFeed(cfg, user) for user in synthetic_users(cfg)], stats)


def _deliver(feeds: list[UserFeed | None], stats: GenerationStats) -> Iterator[dict[str, Any] | bytes]:
    """The lines of ``feeds``' users in delivery order.

    Sessions are played in order of their start; an event is released once no session
    still to be played can start before it, so only the events of sessions in progress
    are held (plus the late, duplicate, retried and flushed deliveries in flight).
    """
    starts: list[tuple[int, int]] = []  # (next session start, position in feeds)
    for pos, f in enumerate(feeds):
        assert f is not None
        t = f.user.next_start()
        if t is None:
            f.finish(stats)
        else:
            starts.append((t, pos))
    heapq.heapify(starts)
    ready: list[DeliveryRecord] = []  # events of played sessions, by (ts, user, seq)
    # late, duplicate and retried deliveries (an event each) and offline bursts (a list)
    pending: list[tuple[int, int, Any]] = []
    push, pop, order = heapq.heappush, heapq.heappop, 0
    while True:
        horizon = starts[0][0] if starts else None
        while ready and (horizon is None or ready[0][0] < horizon):
            ts, _, _, ev, late_ms, dup_ms, line, extra = pop(ready)
            if pending and pending[0][0] <= ts:
                yield from _due(pending, ts)
            if extra is not None:
                burst, retry = extra
                if retry is not None:
                    push(pending, (retry[0], order, retry[1]))
                    order += 1
                if burst is not None:  # held on an offline phone: the burst delivers it
                    if not burst.scheduled:
                        burst.scheduled = True
                        push(pending, (burst.until, order, burst.items))
                        order += 1
                    continue
            if late_ms:
                push(pending, (ts + late_ms, order, ev))
            else:
                yield ev
                if dup_ms >= 0:  # the redelivery: an equal copy, so it serializes to the same bytes
                    push(pending, (ts + dup_ms, order, dict(ev)))
            order += 1
            if line is not None:
                yield line
        if horizon is None:
            break
        _, pos = pop(starts)
        feed = feeds[pos]
        assert feed is not None
        session = feed.user.next_session()
        assert session is not None
        for rec in feed.records(session):
            push(ready, rec)
        nxt = feed.user.next_start()
        if nxt is None:
            feed.finish(stats)
            feeds[pos] = None  # done: let it go
        else:
            push(starts, (nxt, pos))
    yield from _due(pending, None)


def _due(pending: list[tuple[int, int, Any]], until: int | None) -> Iterator[dict[str, Any] | bytes]:
    """Pop the pending deliveries due at ``until`` (all of them when None); a burst is a list."""
    pop = heapq.heappop
    while pending and (until is None or pending[0][0] <= until):
        item = pop(pending)[2]
        if type(item) is list:
            yield from item
        else:
            yield item
