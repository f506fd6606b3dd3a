"""The simulated users and the events they plan: a journey each, a time zone, active
hours, a history, and the episodes of their journey.

Every user draws from ``random.Random`` seeded with (seed, user id) — never global
state — so a user's plan depends on nothing else. Day 0 holds the history (a
``payment_success`` for the journey's ``history`` share); episodes start on day 1 and
follow each other every ``[world] episode_gap_days``, inside the user's local active
hours, until the last day. A churner plans only its first burst of active days: the
next one starts when its churn decision's attribution window ends, which the loop
learns from the engine (:meth:`Planner.burst`).

>>> from intentstream.stream.simulate.world import load_world
>>> world = load_world()
>>> users = plant_users(world, 50, seed=3)
>>> sorted({u.journey for u in users}) == sorted(world.journeys)
True
>>> planner = Planner(world, days=14, seed=3)
>>> events = planner.events(users[0])
>>> events == planner.events(users[0]), all(a[0] <= b[0] for a, b in zip(events, events[1:]))
(True, True)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from intentstream.stream.contract.events import format_ts, zone
from intentstream.stream.simulate.world import DAY_MS, World, unit
from intentstream.stream.triggers.rules import CHURN_TRIGGER

#: Event types that carry an amount.
_PAID = frozenset({"add_to_cart", "checkout_start", "payment_submit", "payment_success"})

#: A planned event: (event time in epoch ms, the event as a contract dict).
Planned = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class SimUser:
    """One simulated user: its journey (persona), where and when it lives."""

    uid: str
    journey: str
    tz: str
    hours: tuple[int, int]
    history: bool


def _pick(weights: Sequence[tuple[Any, float]], u: float) -> Any:
    total = sum(w for _, w in weights)
    acc = 0.0
    for item, w in weights:
        acc += w
        if u * total < acc:
            return item
    return weights[-1][0]


def plant_users(world: World, users: int, seed: int) -> list[SimUser]:
    """``users`` users; each journey gets its share (largest remainders), assigned in an
    order drawn from the seed. User ids carry the seed, so holdout groups differ by seed."""
    names = list(world.journeys)
    exact = [world.journeys[n].share * users for n in names]
    quota = [int(x) for x in exact]
    for i in sorted(range(len(names)), key=lambda i: (quota[i] - exact[i], names[i]))[: users - sum(quota)]:
        quota[i] += 1
    order = sorted(range(users), key=lambda i: unit(seed, "persona-order", i))
    journey_of: dict[int, str] = {}
    pos = 0
    for name, n in zip(names, quota):
        for i in order[pos : pos + n]:
            journey_of[i] = name
        pos += n
    out = []
    for i in range(users):
        uid = f"s{seed}u{i:06d}"
        journey = world.journeys[journey_of[i]]
        lo, hi, _ = _pick([(h, h[2]) for h in world.active_hours], unit(seed, uid, "hours"))
        out.append(SimUser(uid, journey.trigger, _pick(world.zones, unit(seed, uid, "tz")), (lo, hi), unit(seed, uid, "history") < journey.history))
    return out


class Planner:
    """The events users plan (not their reactions: :mod:`~intentstream.stream.simulate.reactions`)."""

    def __init__(self, world: World, days: int, seed: int) -> None:
        if days < 1:
            raise ValueError("days must be at least 1")
        self.world = world
        self.days = days
        self.seed = seed
        #: no planned activity starts at or after this instant (day 0 + history, then ``days`` days)
        self.end_ms = world.start_ms + (days + 1) * DAY_MS

    def events(self, user: SimUser) -> list[Planned]:
        """The user's planned events in event-time order: history, then its episodes (a
        churner: its first burst only)."""
        w = self.world
        rng = random.Random(f"simulate:{self.seed}:{user.uid}")
        journey = w.journeys[user.journey]
        out: list[Planned] = []
        if user.history:
            out += self._session(user, rng, self._local(user, 0, rng), ("page_view", "payment_success"), f"{user.uid}.h")
        day = rng.randint(1, w.first_episode_days)
        if user.journey == CHURN_TRIGGER:
            if day <= self.days:
                out += self._burst(user, rng, self._local(user, day, rng), 0)
            return out
        episode = 0
        while day <= self.days:
            script = journey.sessions[rng.randrange(len(journey.sessions))]
            out += self._session(user, rng, self._local(user, day, rng), script, f"{user.uid}.e{episode}")
            episode += 1
            day += rng.randint(*w.episode_gap_days)
        return out

    def burst(self, user: SimUser, cycle: int, start_ms: int) -> list[Planned]:
        """A churner's burst number ``cycle`` (>= 1) starting at ``start_ms``; none once the
        world's planned activity is over."""
        if start_ms >= self.end_ms:
            return []
        rng = random.Random(f"simulate:{self.seed}:{user.uid}:burst{cycle}")
        return self._burst(user, rng, start_ms, cycle)

    # -- helpers --

    def _burst(self, user: SimUser, rng: random.Random, start_ms: int, cycle: int) -> list[Planned]:
        """``active_days`` sessions, one a day, the first at ``start_ms``."""
        journey = self.world.journeys[user.journey]
        assert journey.active_days is not None
        out: list[Planned] = []
        for d in range(rng.randint(*journey.active_days)):
            t0 = start_ms + d * DAY_MS + (rng.randrange(3_600_000) if d else 0)
            script = journey.sessions[rng.randrange(len(journey.sessions))]
            out += self._session(user, rng, t0, script, f"{user.uid}.c{cycle}d{d}")
        return out

    def _local(self, user: SimUser, day: int, rng: random.Random) -> int:
        """A moment of the user's active hours on world day ``day``, in its local calendar."""
        lo, hi = user.hours
        date = datetime.fromtimestamp(self.world.start_ms / 1000, zone("UTC")).date() + timedelta(days=day)
        midnight = datetime(date.year, date.month, date.day, tzinfo=zone(user.tz))
        local = midnight + timedelta(minutes=lo * 60 + rng.random() * (hi - lo - 1) * 60)
        return int(local.timestamp() * 1000)

    def _session(self, user: SimUser, rng: random.Random, t0: int, script: Sequence[str], prefix: str) -> list[Planned]:
        w = self.world
        out: list[Planned] = []
        t = t0
        for i, typ in enumerate(script):
            if i:
                t += rng.randint(*w.event_gap_s) * 1000
            ev: dict[str, Any] = {"event_id": f"{prefix}.{i}", "user_id": user.uid, "ts": format_ts(t), "type": typ, "tz": user.tz}
            if typ in _PAID:
                ev["amount"] = round(rng.uniform(*w.amount), 2)
                ev["currency"] = "USD"
            if typ == "add_to_cart":
                ev["item_id"] = f"sku-{rng.randrange(1000):03d}"
            out.append((t, ev))
        return out
