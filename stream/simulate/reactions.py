"""What a simulated user does about one decision: opens, clicks, dismissals, and whether
(and when) it reaches the trigger's goal.

Every draw is :func:`~intentstream.stream.simulate.world.unit` of (seed, action_id,
what): the same decision gets the same reaction in every run and under every policy
(common random numbers). With ``u`` the conversion draw, ``base`` the trigger's planted
base and ``effect`` the planted effect of the decision's (trigger, strategy, channel):

* a message **sent** converts when ``u < base + effect``; holdout, suppressed and
  cancelled decisions when ``u < base``. Users with ``u < min(base, base + effect)``
  convert either way, at ``decided_at + delay``; users the message converts
  (``base <= u < base + effect``) at ``sent_at + delay`` — the same ``delay`` draw. A
  message that hurts (effect < 0) stops the users with ``base + effect <= u < base``.
* a **deferred** message (quiet hours) is decided when it is released or cancelled: a
  user who converts either way does so at ``decided_at + delay`` — before the send time
  that cancels the message (``goal_reached``), as it would live; the rest wait for the
  release (then as sent) or the cancellation (then as not sent).
* a sent message is opened with ``open[channel]`` (times ``inactive_open_factor`` when
  it arrives outside the user's local active hours: send time matters), then clicked with ``click[channel]``;
  one not opened is dismissed with ``dismiss[channel]`` — ``message_open``,
  ``message_click``, ``message_dismiss`` events naming ``props.action_id`` and
  ``props.channel``, ``feedback_delay_s`` after the delivery (a click ``click_delay_s``
  after the open).

The conversion event is the trigger's first goal type (``[outcomes.goals]``; a ``*``
goal is answered with ``[reactions] visit_type``), capped one minute before the
attribution window ends so the engine's attribution sees it.

Clamping: the engine reveals a decision only once its partition's watermark has passed
the trigger's moment — at the end of the loop's step, up to ``[world] step_s`` later (a
segment trigger: when the session closed, ``inactivity_gap_s`` after its last event). A
reaction drawn earlier than that is moved to just after the step's end (``clamped``):
the user answers as soon as the simulation can let it. Reactions never land in the past
of a partition, so the engine never sees them late.

>>> from intentstream.stream.simulate.world import load_world
>>> from intentstream.stream.settings import default_settings
>>> r = Reactor(load_world(), default_settings(), seed=1, tz_of={"u1": "UTC"})
>>> rec = {"action_id": "a1", "user_id": "u1", "trigger": "kyc_rejected", "channel": "in_app", "status": "sent",
...        "reason": None, "decided_at": "2026-01-06T10:00:00.000Z", "send_at": None,
...        "strategy": {"key": "kyc_fix_document", "group": "primary"}}
>>> events = r.on_audit(rec, now=1767693600000)
>>> events == Reactor(load_world(), default_settings(), seed=1, tz_of={"u1": "UTC"}).on_audit(rec, now=1767693600000)
True
>>> all(ts > 1767693600000 and ev["user_id"] == "u1" for ts, ev in events)
True
"""

from __future__ import annotations

import math
from datetime import datetime
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from intentstream.stream.contract.events import format_ts, parse_ts, zone
from intentstream.stream.settings import Settings
from intentstream.stream.simulate.people import Planned
from intentstream.stream.simulate.world import World, unit

_MINUTE = 60_000


def _ms(value: Any) -> int:
    ts = parse_ts(value)
    assert isinstance(ts, int), value
    return ts


@dataclass(frozen=True)
class _Held:
    """A deferred decision whose reaction waits for its release or cancellation."""

    rec: Mapping[str, Any]
    decided: int
    u: float
    base: float
    effect: float
    delay: int


class Reactor:
    """Turns ``actions.audit`` records into the users' reaction events (see the module docstring)."""

    def __init__(
        self, world: World, settings: Settings, seed: int, tz_of: Mapping[str, str],
        hours_of: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:  # fmt: skip
        """``hours_of``: each user's local active hours ``[from, to)`` (to may pass 24);
        a user without them is always active."""
        self.world = world
        self.seed = seed
        self.tz_of = tz_of
        self.hours_of = hours_of or {}
        oc = settings.outcomes
        self.window_ms = {t: oc.windows_s.get(t, oc.window_s) * 1000 for t in oc.goals}
        self.default_window_ms = oc.window_s * 1000
        visit = world.reactions.visit_type
        self.goal_type = {t: (goals[0] if goals[0] != "*" else visit) for t, goals in oc.goals.items() if goals}
        self.seen: set[str] = set()
        self.held: dict[str, _Held] = {}
        #: reactions by kind (conversions, opens, ...) and the clamps (see the module docstring)
        self.counters: Counter[str] = Counter()

    def on_audit(self, rec: Mapping[str, Any], now: int) -> list[Planned]:
        """The reaction events to one audit record, all later than ``now`` (the loop's clock)."""
        if "correction" in rec:
            return []
        aid = rec["action_id"]
        if aid not in self.seen:
            self.seen.add(aid)
            return self._decided(rec, now)
        held = self.held.pop(aid, None)
        if held is None:
            return []
        if rec["status"] == "sent":  # released at its send time
            sent_at = _ms(rec["send_at"]) if rec.get("send_at") else now
            out = self._feedback(rec, sent_at, now)
            if held.base <= held.u < held.base + held.effect:
                out += self._convert(rec, held.decided, sent_at + held.delay, now)
            return out
        if held.u < held.base:  # cancelled: the message could not stop this user
            return self._convert(rec, held.decided, held.decided + held.delay, now)
        return []

    # -- decisions --

    def _decided(self, rec: Mapping[str, Any], now: int) -> list[Planned]:
        aid, trigger, status = rec["action_id"], rec["trigger"], rec["status"]
        decided = _ms(rec["decided_at"])
        base = self.world.base(trigger)
        effect = self.world.effect(trigger, (rec.get("strategy") or {}).get("key"), rec["channel"])
        u = unit(self.seed, aid, "convert")
        lo, hi = self.world.reactions.convert_delay_s
        delay = int(1000 * math.exp(math.log(lo) + unit(self.seed, aid, "delay") * (math.log(hi) - math.log(lo))))
        t_base = decided + delay
        if status == "sent":
            out = self._feedback(rec, decided, now)
            if u < base + effect:
                out += self._convert(rec, decided, t_base, now)
            return out
        if status == "deferred":
            send_at = _ms(rec["send_at"])
            if u < min(base, base + effect) or (u < base and t_base < send_at):
                return self._convert(rec, decided, t_base, now)  # converts before or whatever the message does
            # held until the release (feedback, and a conversion the message causes) or
            # the cancellation (a conversion the message could not stop)
            self.held[aid] = _Held(rec, decided, u, base, effect, delay)
            return []
        return self._convert(rec, decided, t_base, now) if u < base else []

    # -- reaction events --

    def _convert(self, rec: Mapping[str, Any], decided: int, t: int, now: int) -> list[Planned]:
        trigger = rec["trigger"]
        end = decided + self.window_ms.get(trigger, self.default_window_ms)
        if t > end - _MINUTE:
            t = end - _MINUTE
            self.counters["conversion_capped"] += 1
        if t <= now:
            t = now + 1
            self.counters["conversion_clamped"] += 1
        if t >= end:
            self.counters["conversion_outside_window"] += 1
        self.counters["conversions"] += 1
        typ = self.goal_type.get(trigger, self.world.reactions.visit_type)
        ev = self._event(rec, f"{rec['action_id']}.goal", t, typ)
        if typ == "payment_success":
            lo, hi = self.world.amount
            ev["amount"] = round(lo + unit(self.seed, rec["action_id"], "amount") * (hi - lo), 2)
            ev["currency"] = "USD"
        return [(t, ev)]

    def _feedback(self, rec: Mapping[str, Any], sent_at: int, now: int) -> list[Planned]:
        r, aid, ch = self.world.reactions, rec["action_id"], rec["channel"]
        if ch not in r.open:
            return []

        def after(t0: int, span: tuple[int, int], what: str) -> int:
            lo, hi = span
            t = t0 + int(1000 * (lo + unit(self.seed, aid, what) * (hi - lo)))
            if t <= now:
                self.counters["feedback_clamped"] += 1
                t = now + 1
            return t

        props = {"action_id": aid, "channel": ch, "trigger": rec["trigger"]}
        out: list[Planned] = []
        p_open = r.open[ch] if self._active(rec["user_id"], sent_at) else r.open[ch] * r.inactive_open_factor
        self.counters["sent_in_active_hours" if p_open == r.open[ch] else "sent_outside_active_hours"] += 1
        if unit(self.seed, aid, "open") < p_open:
            t = after(sent_at, r.feedback_delay_s, "open-delay")
            out.append((t, self._event(rec, f"{aid}.open", t, "message_open", props)))
            self.counters["opens"] += 1
            if unit(self.seed, aid, "click") < r.click[ch]:
                t = after(t, r.click_delay_s, "click-delay")
                out.append((t, self._event(rec, f"{aid}.click", t, "message_click", props)))
                self.counters["clicks"] += 1
        elif unit(self.seed, aid, "dismiss") < r.dismiss[ch]:
            t = after(sent_at, r.feedback_delay_s, "dismiss-delay")
            out.append((t, self._event(rec, f"{aid}.dismiss", t, "message_dismiss", props)))
            self.counters["dismissals"] += 1
        return out

    def _active(self, uid: str, t: int) -> bool:
        """Whether ``t`` falls in the user's local active hours."""
        hours = self.hours_of.get(uid)
        if hours is None:
            return True
        lo, hi = hours
        h = datetime.fromtimestamp(t / 1000, zone(self.tz_of.get(uid) or "UTC")).hour
        return lo <= h < hi or lo <= h + 24 < hi

    def _event(self, rec: Mapping[str, Any], eid: str, t: int, typ: str, props: Mapping[str, Any] | None = None) -> dict[str, Any]:
        uid = rec["user_id"]
        ev: dict[str, Any] = {"event_id": eid, "user_id": uid, "ts": format_ts(t), "type": typ}
        tz = self.tz_of.get(uid)
        if tz:
            ev["tz"] = tz
        if props:
            ev["props"] = dict(props)
        return ev
