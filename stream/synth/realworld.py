"""Real-world delivery: what mobile SDKs and collectors deliver besides the late, duplicate
and invalid lines of :mod:`~intentstream.stream.synth.delivery`. Every mode is off by
default (the default output does not change), and each draws from its own per-user random
generator, so the same config gives the same bytes and one mode's share never changes
another mode's choices.

* **Retried uploads** (``retry_share``): an event uploaded again 1 min to 24 h
  (log-uniform) after its first delivery, with a *new* event id (``e000123-r00000``, the
  user's retries numbered in order) and the same ts and content — an SDK retry after a
  lost ack, or a collector that mints ids. Dedup by event id cannot catch it.
* **Offline flushes** (``flush_share``, ``flush_hours``): a session's events on a phone
  (ios, android; desktop sessions are never flushed) reach the collector one burst, in
  their original order, a delay drawn uniformly from ``flush_hours`` (whole seconds) after
  the session's last event on that phone. The phone stays offline until then, so its
  events of the user's later sessions before that instant join the same burst; the user's
  other devices deliver in real time meanwhile. Events in a burst are never late or
  duplicated on their own (an invalid line derived from one rides in the burst after it).
* **Cross-device sessions** (``cross_device_share``): a session of two or more events
  continues on a second device from a random event on (never a message event): a phone
  session on the desktop web, a desktop session in the user's phone app (or mini
  program). The second device opens with ``app_open`` (app) or a ``/home`` page view and
  its clock is 1–5 s off, ahead or behind: the events after the switch carry its device,
  channel and skewed ``ts``, while they are delivered at their true time, so a session's
  ts come from two clocks. This mode changes the events (the opener, the fields, the ts),
  so it moves the user's later event ids and late/duplicate draws too.

A dump ordered by user (``order="user"``) is :func:`~intentstream.stream.synth.delivery.deliver`'s.

The truth record (:func:`~intentstream.stream.synth.truth.truth_record`) gains one field
per mode that is on, a list for every user (empty when nothing happened to it):

* ``retries``: ``{"event_id": the retry's id, "of": the original's id, "delivered": when it arrives}``;
* ``flushes``: ``{"device", "event_ids": the burst's events in order, "delay_s": offline
  time after the session's last event on the phone, "delivered": when the burst arrives}``;
* ``cross_device``: ``{"first_event_id": the opener on the second device, "from", "to":
  ``device/channel``, "events": events on the second device, "skew_ms": its clock minus
  the true time}``.

Journeys and their deadlines stay those of the events' own ``ts`` (as the engine reads
them), never of delivery times.

>>> from intentstream.stream.synth.clickstream import generate_truth
>>> from intentstream.stream.synth.config import GeneratorConfig
>>> cfg = GeneratorConfig(users=3, days=1, seed=7, retry_share=0.2, flush_share=0.5, cross_device_share=0.5)
>>> t = list(generate_truth(cfg))[1]  # a desktop session went on in the phone app, offline
>>> t["cross_device"]
[{'first_event_id': 'e000001-00008', 'from': 'desktop/web', 'to': 'ios/app', 'events': 8, 'skew_ms': -4418}]
>>> [(f["device"], f["event_ids"][0], len(f["event_ids"]), f["delay_s"], f["delivered"]) for f in t["flushes"]]
[('ios', 'e000001-00008', 8, 98122, '2026-01-06T16:46:22.309Z')]
>>> t["retries"]  # one of the flushed events, uploaded again after the burst
[{'event_id': 'e000001-r00000', 'of': 'e000001-00012', 'delivered': '2026-01-07T02:46:44.258Z'}]
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, Final

from intentstream.stream.contract.events import format_ts
from intentstream.stream.synth.config import DAY_MS, MINUTE_MS, GeneratorConfig

if TYPE_CHECKING:
    from intentstream.stream.synth.users import SyntheticUser

PHONES: Final = ("ios", "android")
_MESSAGE_TYPES: Final = frozenset({"message_open", "message_click", "message_dismiss"})
_RETRY_LOG_RANGE: Final = (math.log(MINUTE_MS), math.log(DAY_MS))

#: What a real-world mode may add to a delivery record: the burst the event rides in,
#: and its retried upload (arrival time, the copy with its new id).
Extra = tuple["Burst | None", "tuple[int, dict[str, Any]] | None"]


def realworld_on(cfg: GeneratorConfig) -> bool:
    """Whether any real-world delivery mode (besides the output order) is on."""
    return bool(cfg.retry_share or cfg.flush_share or cfg.cross_device_share)


class Burst:
    """An offline phone's queue: its events (and the invalid lines derived from them) in
    original order, delivered together at ``until``."""

    __slots__ = ("device", "until", "delay_ms", "items", "ids", "scheduled")

    def __init__(self, device: str, until: int, delay_ms: int) -> None:
        self.device = device
        self.until = until
        self.delay_ms = delay_ms
        self.items: list[dict[str, Any] | bytes] = []
        self.ids: list[str] = []
        self.scheduled = False  # set once the burst waits among the pending deliveries

    def record(self) -> dict[str, Any]:
        return {"device": self.device, "event_ids": self.ids, "delay_s": self.delay_ms // 1000, "delivered": format_ts(self.until)}


class RealWorld:
    """One user's real-world delivery: retried uploads, offline flushes, cross-device sessions."""

    __slots__ = (
        "cfg", "user", "prefix", "retry_p", "retry_rng", "flush_p", "flush_s", "flush_rng",
        "cross_p", "cross_rng", "offline", "retried", "bursts", "switches",
    )  # fmt: skip

    def __init__(self, cfg: GeneratorConfig, user: SyntheticUser, prefix: str) -> None:
        self.cfg, self.user, self.prefix = cfg, user, prefix
        self.retry_p, self.flush_p, self.cross_p = cfg.retry_share, cfg.flush_share, cfg.cross_device_share
        self.retry_rng = self._rng("retry")
        self.flush_rng = self._rng("flush")
        self.cross_rng = self._rng("cross_device")
        self.flush_s = (round(cfg.flush_hours[0] * 3600), round(cfg.flush_hours[1] * 3600))
        self.offline: Burst | None = None  # the phone offline now, if any
        self.retried: list[dict[str, Any]] = []
        self.bursts: list[Burst] = []
        self.switches: list[dict[str, Any]] = []

    def _rng(self, mode: str) -> random.Random:
        return random.Random(f"intentstream:{self.cfg.seed}:{self.user.idx}:{mode}")

    def switch_device(self, session: list[tuple[int, dict[str, Any]]], n0: int) -> list[int] | None:
        """Maybe continue ``session`` on a second device (changed in place, the second
        device's opener inserted); returns the reported ts of its events, skewed from
        the switch on, or None when the session stays on one device. ``n0`` is the
        sequence number its first event gets."""
        if not self.cross_p or len(session) < 2 or self.cross_rng.random() >= self.cross_p:
            return None
        rng, user = self.cross_rng, self.user
        points = [i for i in range(1, len(session)) if session[i][1]["type"] not in _MESSAGE_TYPES]
        if not points:
            return None
        k = points[int(rng.random() * len(points))]
        first = session[0][1]
        if first["device"] in PHONES:
            device, channel = "desktop", "web"
        else:
            device = user.device if user.device in PHONES else PHONES[rng.getrandbits(1)]
            channel = "mini_program" if "mini_program" in user.channels else "app"
        skew = rng.randrange(1000, 5001) * (1 if rng.getrandbits(1) else -1)
        opener: dict[str, Any] = {"page": "/home", "type": "app_open" if channel == "app" else "page_view", "user_id": user.uid}
        if user.tz:
            opener["tz"] = user.tz
        session.insert(k, ((session[k - 1][0] + session[k][0]) // 2, opener))
        for _, ev in session[k:]:
            ev["device"], ev["channel"] = device, channel
        lo, hi = self.cfg.start_ms, self.cfg.end_ms - 1
        reported = [ts if i < k else min(hi, max(lo, ts + skew)) for i, (ts, _) in enumerate(session)]
        self.switches.append(
            {
                "first_event_id": f"{self.prefix}{n0 + k:05d}",
                "from": f"{first['device']}/{first['channel']}",
                "to": f"{device}/{channel}",
                "events": len(session) - k,
                "skew_ms": skew,
            }
        )
        return reported

    def burst(self, session: list[tuple[int, dict[str, Any]]]) -> Burst | None:
        """The offline burst that this session's events on a phone join, if any: the
        one still queued on the phone, or a new one."""
        current = self.offline
        if current is not None and session[0][0] < current.until:
            return current
        self.offline = None
        if not self.flush_p or self.flush_rng.random() >= self.flush_p:
            return None
        device = next((ev["device"] for _, ev in session if ev["device"] in PHONES), None)
        if device is None:
            return None
        last = max(ts for ts, ev in session if ev["device"] == device)
        delay = self.flush_rng.randrange(self.flush_s[0], self.flush_s[1] + 1) * 1000
        self.offline = burst = Burst(device, last + delay, delay)
        self.bursts.append(burst)
        return burst

    def deliveries(
        self, ts: int, ev: dict[str, Any], late_ms: int, dup_ms: int, line: bytes | None, burst: Burst | None
    ) -> tuple[int, int, bytes | None, Extra | None]:
        """How the event at true time ``ts`` is delivered, given its late, duplicate and
        invalid draws: ``(late_ms, dup_ms, line, extra)``; an event in ``burst`` is
        neither late nor duplicated and its invalid line moves into the burst."""
        held = burst is not None and ev["device"] == burst.device and ts < burst.until
        if held:
            assert burst is not None
            burst.items.append(ev)
            burst.ids.append(ev["event_id"])
            if line is not None:
                burst.items.append(line)
            late_ms, dup_ms, line = 0, -1, None
        retry = None
        if self.retry_p and self.retry_rng.random() < self.retry_p:
            at = (burst.until if held and burst is not None else ts + late_ms) + int(
                math.exp(self.retry_rng.uniform(*_RETRY_LOG_RANGE))
            )
            copy = dict(ev)
            copy["event_id"] = f"{self.prefix}r{len(self.retried):05d}"
            self.retried.append({"event_id": copy["event_id"], "of": ev["event_id"], "delivered": format_ts(at)})
            retry = (at, copy)
        if not held and retry is None:
            return late_ms, dup_ms, line, None
        return late_ms, dup_ms, line, (burst if held else None, retry)

    def finish(self) -> tuple[int, int, int, int]:
        """(retries, flushes, flushed events, cross-device sessions)."""
        return len(self.retried), len(self.bursts), sum(len(b.ids) for b in self.bursts), len(self.switches)

    def truth(self) -> dict[str, Any]:
        """The truth record's fields of the modes that are on."""
        out: dict[str, Any] = {}
        if self.retry_p:
            out["retries"] = self.retried
        if self.flush_p:
            out["flushes"] = [b.record() for b in self.bursts]
        if self.cross_p:
            out["cross_device"] = self.switches
        return out
