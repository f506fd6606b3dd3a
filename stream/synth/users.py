"""One synthetic user: the attributes its seed draws, and its sessions, played one at a
time in the order of their start.

Every user draws its attributes and timeline from ``random.Random`` seeded with
``(seed, user index)``, so given its persona a user's events depend on nothing else (no
wall clock, no ``hash()``, no set order). Most users carry an IANA ``tz`` (their local
time drives their activity); some carry no ``tz`` and live in UTC. Night owls live in
Shanghai, Berlin, New York or São Paulo.

A session starts as planned, or :attr:`GeneratorConfig.session_gap_s` (40 min) after the
previous one ended, so a 30-minute inactivity gap cuts exactly the planted sessions.

>>> from intentstream.stream.synth.config import GeneratorConfig
>>> user = SyntheticUser(GeneratorConfig(users=3, days=1, seed=7), 2, "explorer", GeneratorConfig().start_ms)
>>> user.uid, user.tz, user.next_session()[0][1]["type"]
('u000002', 'Asia/Shanghai', 'page_view')
"""

from __future__ import annotations

import random
from bisect import bisect
from itertools import accumulate
from typing import Any, Final, Iterator

from intentstream.stream.synth.config import HOUR_MS, GeneratorConfig
from intentstream.stream.synth.personas import PERSONA_MODELS, assign_personas, last_session_start, plan_sessions
from intentstream.stream.synth.session_scripts import CATEGORY_NAMES, gap_table, play_session

# (zone or None for "no tz, lives in UTC", weight)
_ZONES: Final = (
    ("Asia/Shanghai", 34), ("Europe/Berlin", 14), ("America/New_York", 14), ("America/Sao_Paulo", 9),
    ("Europe/London", 6), ("Asia/Singapore", 5), ("Asia/Tokyo", 4), (None, 14),
)  # fmt: skip
_NIGHT_ZONES: Final = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "America/Sao_Paulo")
_CURRENCY: Final = {"Asia/Shanghai": "CNY", "Europe/Berlin": "EUR", "Europe/London": "EUR"}
_DEVICES: Final = (("ios", 38), ("android", 44), ("desktop", 18))
_MSG_CHANNELS: Final = ("push", "sms", "email", "in_app")
_ZONE_CUM: Final = list(accumulate(w for _, w in _ZONES))
_DEVICE_CUM: Final = list(accumulate(w for _, w in _DEVICES))


def user_id(index: int, users: int) -> str:
    """``u000123``: zero-padded so that sorting ids sorts users by index."""
    return f"u{index:0{max(6, len(str(users - 1)))}d}"


class SyntheticUser:
    """One user's attributes, session plan and lazily played sessions (event-time order)."""

    __slots__ = (
        "cfg", "idx", "uid", "persona", "model", "rng", "tz", "device", "currency", "favourites",
        "channels", "msg_channels", "recipient", "plan", "buf", "t", "session_device",
        "session_channel", "gaps", "browse_mean", "lo", "hi", "end", "i", "prev_end", "until", "next_t0",
    )  # fmt: skip

    def __init__(self, cfg: GeneratorConfig, idx: int, persona: str, start_ms: int) -> None:
        self.cfg = cfg
        self.idx = idx
        self.uid = user_id(idx, cfg.users)
        self.persona = persona
        self.model = model = PERSONA_MODELS[persona]
        self.rng = rng = random.Random(f"intentstream:{cfg.seed}:{idx}")
        self.tz: str | None  # None: no zone, the user lives in UTC
        if persona == "night_owl":
            self.tz = rng.choice(_NIGHT_ZONES)
        else:
            self.tz = _ZONES[bisect(_ZONE_CUM, rng.random() * _ZONE_CUM[-1])][0]
        self.device = _DEVICES[bisect(_DEVICE_CUM, rng.random() * _DEVICE_CUM[-1])][0]
        self.currency = _CURRENCY.get(self.tz or "", "USD")
        self.favourites = rng.sample(CATEGORY_NAMES, rng.randint(2, 3))
        self.channels: tuple[str, ...]
        if self.device == "desktop":
            self.channels = ("web",)
        elif self.tz == "Asia/Shanghai" and rng.random() < 0.4:
            self.channels = ("mini_program", "app")
        else:
            self.channels = ("app", "web") if rng.random() < 0.8 else ("web", "app")
        self.msg_channels = rng.sample(_MSG_CHANNELS, rng.randint(2, 4))
        self.recipient = rng.random() < model.messages
        self.gaps = gap_table(model.dwell_s)
        self.browse_mean = model.browse * rng.uniform(0.6, 1.4)
        self.end = cfg.end_ms
        self.lo = start_ms
        self.hi = last_session_start(cfg, persona, start_ms, self.end)
        # the session being played: its events so far, the next event time, browsing limit
        self.buf: list[tuple[int, dict[str, Any]]] = []
        self.t = 0
        self.until = self.end
        self.session_device = self.device
        self.session_channel = self.channels[0]
        # the plan and where the user is in it
        self.i = 0
        self.prev_end = -(10**15)
        self.plan = plan_sessions(self, start_ms)
        self.next_t0: int | None = None
        self._advance()

    def _advance(self) -> None:
        """Find the next session: it starts as planned, or ``session_gap_s`` after the previous
        one ends. Sessions pushed past the last start are dropped, except planted ones while
        they still fit in the window."""
        plan, gap = self.plan, self.cfg.session_gap_s * 1000
        while self.i < len(plan):
            planned, _, planted = plan[self.i]
            t0 = max(planned, self.prev_end + gap)
            if t0 <= self.hi or (planted and t0 <= self.end - 2 * HOUR_MS):
                self.next_t0 = t0
                return
            self.i += 1
        self.next_t0 = None

    def next_start(self) -> int | None:
        """Start of the next session (its first event time), or None when the plan is done."""
        return self.next_t0

    def next_session(self) -> list[tuple[int, dict[str, Any]]] | None:
        """Play the next session: its (ts_ms, event) pairs, or None when the plan is done."""
        t0 = self.next_t0
        if t0 is None:
            return None
        kind = self.plan[self.i][1]
        self.i += 1
        self.buf = []
        deferred = play_session(self, kind, t0)
        if deferred is not None:  # the next session is the user's return to the KYC result
            self.plan.insert(self.i, [deferred[1], "decision:" + deferred[0], True])
        if self.buf[-1][0] >= self.end:  # never past the window, however long the session ran
            self.buf = [item for item in self.buf if item[0] < self.end]
        self.prev_end = self.buf[-1][0]
        self._advance()
        session, self.buf = self.buf, []  # hand the events over; keep nothing between sessions
        return session


def synthetic_users(cfg: GeneratorConfig) -> Iterator[SyntheticUser]:
    """Every user of ``cfg``, by index, with its assigned persona."""
    start_ms = cfg.start_ms
    for idx, persona in enumerate(assign_personas(cfg)):
        yield SyntheticUser(cfg, idx, persona, start_ms)
