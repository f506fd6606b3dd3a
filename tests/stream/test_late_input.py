"""The late-input policy (README, "Late and unordered input"), one test per rule.

Every test drives one partition's :class:`PartitionEngine` (in-memory store, the shipped
defaults but no holdout group, unless it says otherwise) with hand-made events in
*arrival* order, and moves event time on with :meth:`PartitionEngine.advance_to` — what
a live partition does when it idles — so each test states exactly what the user's
horizon is when an event arrives. What it checks is what a consumer of ``actions.*``
sees: the records on ``actions.<channel>`` and ``actions.audit``.

The same scenarios, each in its own slot of event time and with a crowd of neighbours
instead of ``advance_to``, form one trace for the properties at the end: batch cuts and
the number of simulated partitions change nothing, and a crash at any step gives the
same records after a restart.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest

from intentstream.stream import codec
from intentstream.stream.contract.events import format_ts
from intentstream.stream.decisions.fatigue import in_holdout
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.engine.partitioning import partition_for
from intentstream.stream.engine.user_state import UserState
from intentstream.stream.settings import FatigueSettings, PolicySettings, Settings, default_settings
from intentstream.stream.state import CommitBatch
from intentstream.stream.state.memory import MemorySessionStore
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

T0 = 1767607200000  # 2026-01-05T10:00:00Z, a Monday: 10:00 in the default zone (UTC), no quiet hours
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR

#: the shipped defaults without the holdout group, so every decision's status is the
#: fatigue policy's, and without the strategy policy's learning, which ties users together
#: (its own determinism: tests/stream/test_policy.py)
SETTINGS = Settings.defaults(fatigue=FatigueSettings.defaults(holdout_share=0.0), policy=PolicySettings.defaults(enabled=False))
LATENESS = SETTINGS.sessions.allowed_lateness_s * 1000
GRACE = SETTINGS.triggers.late_timer_grace_s * 1000
WINDOW = {
    "cart_abandoned": SETTINGS.triggers.cart_abandon_s * 1000,
    "payment_stalled": SETTINGS.triggers.payment_stall_s * 1000,
    "kyc_stalled": SETTINGS.triggers.kyc_stall_s * 1000,
    "churn_risk": SETTINGS.triggers.churn_steps_s[0] * 1000,
}
#: the churn cadence: reminders at these silences after the latest activity
CHURN_STEPS = [s * 1000 for s in SETTINGS.triggers.churn_steps_s]
#: a step of each timer-fired journey, another step, and the journey's goal
JOURNEY = {
    "cart_abandoned": ("add_to_cart", "add_to_cart", "payment_success"),
    "payment_stalled": ("payment_submit", "payment_fail", "payment_success"),
    "kyc_stalled": ("kyc_start", "kyc_submit", "kyc_approved"),
}
JOURNEYS = sorted(JOURNEY)


def iso(ms: int) -> str:
    return format_ts(ms)


def local(tz: str, text: str) -> int:
    """Epoch ms of a wall-clock time in a zone: ``local("Asia/Shanghai", "2026-01-06T23:35")``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def event(user: str, eid: str, at: int, typ: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": eid, "user_id": user, "ts": at, "type": typ, **fields}


@dataclass(frozen=True)
class Idle:
    """Nothing arrives while the partition's watermark moves to ``until`` (a live
    partition's idle rule); in a trace: a crowd of neighbours at ``until`` + lateness."""

    until: int


Step = Sequence[dict[str, Any]] | Idle


class Record(NamedTuple):
    topic: str
    id: str
    value: dict[str, Any]


class Partition:
    """One partition's engine fed in arrival order, one engine step per :meth:`send`; after
    every step it publishes and acknowledges its outbox, as the worker does. Without the
    engine's cache of decoded states: every step reads what the previous one stored."""

    def __init__(self, settings: Settings = SETTINGS) -> None:
        self.store = MemorySessionStore()
        self.engine = PartitionEngine(self.store, 0, settings, cache_users=0)
        self.offset = 0
        self.published: list[Record] = []

    def send(self, *events: dict[str, Any]) -> list[Record]:
        """One step with these events; what it published."""
        batch = [(self.offset + i, codec.dumps(e)) for i, e in enumerate(events)]
        self.offset += len(batch)
        self.engine.process(batch)
        return self.publish()

    def idle(self, until: int) -> list[Record]:
        """The partition's watermark moves to ``until`` with no input."""
        self.engine.advance_to(until)
        return self.publish()

    def play(self, steps: Iterable[Step]) -> Partition:
        for step in steps:
            self.idle(step.until) if isinstance(step, Idle) else self.send(*step)
        return self

    def publish(self) -> list[Record]:
        entries = self.engine.pending_outbox()
        self.engine.ack([e.id for e in entries])
        out = [Record(e.topic, e.id, codec.loads(e.value)) for e in entries if e.topic != "segments"]
        self.published += out
        return out

    def user_state(self, user: str) -> UserState:
        data = self.store.user_bytes(user)
        assert data is not None
        return UserState.load(user, data)


def of(records: Iterable[Record], user: str = "u1", trigger: str | None = None) -> list[Record]:
    return [r for r in records if r.value["user_id"] == user and trigger in (None, r.value["trigger"])]


def actions(records: Iterable[Record], user: str = "u1", trigger: str | None = None) -> list[Record]:
    """What reaches a messaging system: the records on actions.<channel>."""
    return [r for r in of(records, user, trigger) if r.topic not in ("actions.audit", "actions.outcomes")]


def decisions(records: Iterable[Record], user: str = "u1", trigger: str | None = None) -> list[dict[str, Any]]:
    """The audit's decision records (not corrections)."""
    return [r.value for r in of(records, user, trigger) if r.topic == "actions.audit" and "status" in r.value]


def corrections(records: Iterable[Record], user: str = "u1") -> list[Record]:
    return [r for r in of(records, user) if "correction" in r.value]


def outcome(d: dict[str, Any]) -> tuple[str, str | None, str]:
    return d["status"], d["reason"], d["decided_at"]


def same_but_status(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """A released or cancelled record is its deferred decision with another status."""
    skip = {"status", "reason"}
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


# --------------------------------------------------------------------------- scenarios
# Each: (user, t0) -> steps in arrival order. The tests below play them one by one; the
# properties at the end play them all in one trace.


def churn_retried_day0(user: str, t0: int, delivered: str = "after day 2") -> list[Step]:
    """The issue's example: active on days 0, 1 and 2; one day-0 event re-delivered with a
    new id a day late."""
    days = [[event(user, f"{user}-d{d}-{i}", t0 + d * DAY + i * 20 * MIN, typ) for i, typ in enumerate(("app_open", "page_view", "click"))] for d in range(3)]
    retry = dict(days[0][1], event_id=f"{user}-d0-1-retry")
    if delivered == "with day 1":
        return [days[0], [*days[1], retry], days[2], Idle(t0 + 20 * DAY)]
    return [days[0], days[1], days[2], [retry], Idle(t0 + 20 * DAY)]


def late_step(user: str, t0: int, trigger: str, arrives: str) -> list[Step]:
    """A journey's step B at t0 + gap arrives on time; the older step A (t0) and B retried
    with a new id arrive late: before B's deadline, or after its decision."""
    first, second, _ = JOURNEY[trigger]
    gap = 2 * HOUR if trigger == "kyc_stalled" else 10 * MIN
    a, b = event(user, f"{user}-a", t0, first), event(user, f"{user}-b", t0 + gap, second)
    late = [a, dict(b, event_id=f"{user}-b-retry")]
    if arrives == "before the deadline":
        return [[b], Idle(t0 + gap + 5 * MIN), late, Idle(t0 + gap + WINDOW[trigger] + 2 * DAY)]
    return [[b], Idle(t0 + gap + WINDOW[trigger] + 10 * MIN), late, Idle(t0 + gap + WINDOW[trigger] + 2 * DAY)]


def deferred_cart(user: str, tz: str, day: str, then: Sequence[tuple[str, str, dict[str, Any]]] = ()) -> list[Step]:
    """A cart abandoned at 00:05 local (add_to_cart at 23:35 the evening before, in the
    user's zone): deferred by quiet hours to 08:00. ``then``: (local time, type, fields)
    of the user's later events, each arriving on time, then three days pass."""
    at = local(tz, f"{day}T23:35")
    steps: list[Step] = [[event(user, f"{user}-cart", at, "add_to_cart", tz=tz, item_id="sku-7")], Idle(at + 40 * MIN)]
    for i, (when, typ, fields) in enumerate(then):
        ts = local(tz, when)
        steps += [Idle(ts - 2 * MIN), [event(user, f"{user}-then{i}", ts, typ, tz=tz, **fields)]]
    return [*steps, Idle(at + 3 * DAY)]


# --------------------------------------------------------------------------- a late step never moves a deadline earlier


@pytest.mark.parametrize("delivered", ["with day 1", "after day 2"])
def test_a_retried_day0_event_does_not_pull_churn_back(delivered):
    steps = churn_retried_day0("u1", T0, delivered)
    last = T0 + 2 * DAY + 40 * MIN  # the latest activity: day 2's click
    p = Partition().play(steps[:-1])
    p.idle(last + WINDOW["churn_risk"])
    assert decisions(p.published, trigger="churn_risk") == []  # not at day 0 + 7 days, nor at the deadline itself
    p.idle(T0 + 20 * DAY)
    churn = decisions(p.published, trigger="churn_risk")
    assert [(outcome(d), d["evidence"]) for d in churn] == [
        (("sent", None, iso(last + CHURN_STEPS[0])), ["u1-d2-2"]),
        (("sent", None, iso(last + CHURN_STEPS[1])), ["churn_step:2", "u1-d2-2"]),  # the cadence's next step
    ]
    assert len(actions(p.published, trigger="churn_risk")) == 2


@pytest.mark.parametrize("after_deadline", [10 * MIN, 2 * DAY], ids=["within the grace", "beyond the grace"])
def test_a_late_old_event_after_churn_fired_does_not_fire_it_again(after_deadline):
    """Churn was decided from the latest activity; an older event delivered afterwards
    (a retry, a flush) must not re-arm the same deadline: no second message, and no
    second, contradicting record for the same action."""
    p = Partition().play(churn_retried_day0("u1", T0, "after day 2")[:3])
    deadline = T0 + 2 * DAY + 40 * MIN + WINDOW["churn_risk"]
    p.idle(deadline + after_deadline)
    assert [outcome(d) for d in decisions(p.published, trigger="churn_risk")] == [("sent", None, iso(deadline))]
    p.send(event("u1", "u1-d1-late", T0 + DAY + 5 * MIN, "page_view"), event("u1", "u1-d0-1-retry", T0 + 20 * MIN, "page_view"))
    p.send(event("u1", "u1-d2-2-retry", T0 + 2 * DAY + 40 * MIN, "click"))  # the latest activity again, new id
    p.idle(deadline + 60 * DAY)
    last = deadline - WINDOW["churn_risk"]
    churn = decisions(p.published, trigger="churn_risk")
    assert [outcome(d) for d in churn] == [("sent", None, iso(last + s)) for s in CHURN_STEPS]  # each step once, then quiet
    assert len(actions(p.published, trigger="churn_risk")) == len(CHURN_STEPS)
    assert len({r.id for r in p.published}) == len(p.published)  # every record id once (the worker's dedup key)


@pytest.mark.parametrize("arrives", ["before the deadline", "after the decision"])
@pytest.mark.parametrize("trigger", JOURNEYS)
def test_a_late_step_never_moves_a_deadline_earlier(trigger, arrives):
    """Cart, payment and KYC run from the journey's latest step: the older step A and a
    retry of the latest step B (new id, same time) change neither the deadline nor the
    number of messages, whenever they arrive."""
    gap = 2 * HOUR if trigger == "kyc_stalled" else 10 * MIN
    deadline = T0 + gap + WINDOW[trigger]
    steps = late_step("u1", T0, trigger, arrives)
    p = Partition().play(steps[:-1])
    if arrives == "before the deadline":
        p.idle(T0 + WINDOW[trigger] + HOUR if trigger == "kyc_stalled" else deadline - MIN)  # past A's deadline
        assert decisions(p.published, trigger=trigger) == []
    p.play(steps[-1:])
    got = decisions(p.published, trigger=trigger)
    assert [outcome(d) for d in got] == [("sent", None, iso(deadline))]
    assert "u1-b" in got[0]["evidence"]
    assert len(actions(p.published, trigger=trigger)) == 1


@pytest.mark.parametrize("trigger", JOURNEYS)
@pytest.mark.parametrize("lateness", [20 * MIN, 3 * DAY], ids=["late", "beyond the grace"])
def test_a_late_step_older_than_the_goal_does_not_reopen_the_journey(trigger, lateness):
    """A step delivered after the goal that followed it (an add_to_cart after its
    checkout's payment): nothing, not even a stale record."""
    first, _, goal = JOURNEY[trigger]
    p = Partition()
    p.send(event("u1", "u1-goal", T0 + 2 * MIN, goal))
    p.idle(T0 + lateness)
    p.send(event("u1", "u1-step", T0, first))
    p.send(event("u1", "u1-step-retry", T0, first))
    p.idle(T0 + lateness + 30 * DAY)
    assert decisions(p.published, trigger=trigger) == []


# --------------------------------------------------------------------------- late goals


@pytest.mark.parametrize("trigger", JOURNEYS)
def test_a_late_goal_cancels_the_pending_timer(trigger):
    """The goal happened before the deadline but arrives late (beyond the allowed
    lateness), while the timer is still pending: no decision, ever."""
    first, _, goal = JOURNEY[trigger]
    w = WINDOW[trigger]
    p = Partition()
    p.send(event("u1", "u1-step", T0, first))
    p.idle(T0 + w * 2 // 3)
    p.send(event("u1", "u1-goal", T0 + w // 3, goal))  # w/3 behind the horizon: late
    p.idle(T0 + 30 * DAY)
    assert decisions(p.published, trigger=trigger) == []


@pytest.mark.parametrize("trigger", ["cart_abandoned", "kyc_stalled"])
def test_a_late_goal_before_the_latest_step_does_not_cancel(trigger):
    """The user started over after the goal: the timer runs from the latest step."""
    first, _, goal = JOURNEY[trigger]
    w = WINDOW[trigger]
    p = Partition()
    p.send(event("u1", "u1-a1", T0, first))
    p.send(event("u1", "u1-a2", T0 + 20 * MIN, first))
    p.idle(T0 + 30 * MIN)
    p.send(event("u1", "u1-goal", T0 + 10 * MIN, goal))
    p.idle(T0 + 20 * MIN + w)
    assert decisions(p.published, trigger=trigger) == []
    p.idle(T0 + 30 * DAY)
    assert [outcome(d) for d in decisions(p.published, trigger=trigger)] == [("sent", None, iso(T0 + 20 * MIN + w))]


def test_a_late_visit_moves_churn_to_the_latest_activity():
    """For churn any event is the goal: a visit delivered late (the horizon already at
    day 5) cancels the day-8 deadline; churn runs from the visit."""
    p = Partition()
    p.send(event("u1", "u1-d0", T0, "page_view"))
    p.send(event("u1", "u1-d1", T0 + DAY, "page_view"))
    p.idle(T0 + 5 * DAY)
    p.send(event("u1", "u1-d3", T0 + 3 * DAY, "page_view"))
    p.idle(T0 + 3 * DAY + CHURN_STEPS[1] + MIN)
    churn = decisions(p.published, trigger="churn_risk")
    assert [(outcome(d), d["evidence"]) for d in churn] == [
        (("sent", None, iso(T0 + 3 * DAY + CHURN_STEPS[0])), ["u1-d3"]),
        (("sent", None, iso(T0 + 3 * DAY + CHURN_STEPS[1])), ["churn_step:2", "u1-d3"]),
    ]


def test_a_late_visit_older_than_a_reminder_continues_the_cadence():
    """Active on days 0 and 1; the first reminder went out on day 8. A day-3 visit
    delivered on day 9 moves the silence's start to day 3 but is no return after the
    reminder: the cadence goes on with step 2 (day 3 + 14), not a second step 1, so this
    one silence gets no more reminders than there are steps."""
    p = Partition()
    p.send(event("u1", "u1-d0", T0, "page_view"))
    p.send(event("u1", "u1-d1", T0 + DAY, "page_view"))
    p.idle(T0 + 9 * DAY)
    p.send(event("u1", "u1-d3", T0 + 3 * DAY, "page_view"))
    p.idle(T0 + 80 * DAY)
    churn = decisions(p.published, trigger="churn_risk")
    assert [(outcome(d), d["evidence"]) for d in churn] == [
        (("sent", None, iso(T0 + DAY + CHURN_STEPS[0])), ["u1-d1"]),
        (("sent", None, iso(T0 + 3 * DAY + CHURN_STEPS[1])), ["churn_step:2", "u1-d3"]),
        (("sent", None, iso(T0 + 3 * DAY + CHURN_STEPS[2])), ["churn_step:3", "u1-d3"]),
    ]
    assert len(actions(p.published, trigger="churn_risk")) == len(CHURN_STEPS)


def test_a_silence_revealed_long_after_is_recorded_stale_step_by_step():
    """A phone flushes day 1's visit on day 60: the user had been active on two days, then
    silent through every step of the cadence. Each step is a moment long past: recorded,
    suppressed as stale, never sent."""
    p = Partition()
    p.send(event("u1", "u1-d0", T0, "page_view"))
    p.idle(T0 + 60 * DAY)
    p.send(event("u1", "u1-d1", T0 + DAY, "page_view"))
    p.idle(T0 + 61 * DAY)
    churn = decisions(p.published, trigger="churn_risk")
    assert [outcome(d) for d in churn] == [("suppressed", "stale", iso(T0 + DAY + s)) for s in CHURN_STEPS]
    assert actions(p.published, trigger="churn_risk") == []


#: trigger -> (its steps, the late goal's type and time, relative to T0)
CORRECTED = {
    "cart_abandoned": ([("add_to_cart", 0)], "payment_success", 20 * MIN),
    "payment_stalled": ([("checkout_start", 0), ("payment_fail", 2 * MIN)], "payment_success", 10 * MIN),
    "kyc_stalled": ([("kyc_start", 0)], "kyc_approved", 20 * HOUR),
    "churn_risk": ([("page_view", -DAY), ("page_view", 0)], "page_view", 5 * DAY),
}


@pytest.mark.parametrize("trigger", sorted(CORRECTED))
def test_a_late_goal_before_a_sent_decision_publishes_one_correction(trigger):
    """The message was sent; then its goal turns up with an event time before the
    decision (twice, with two ids), plus a goal before the journey began and one after the
    decision: exactly one correction, on the audit topic only."""
    steps, goal, goal_at = CORRECTED[trigger]
    last = max(at for _, at in steps)
    decided = T0 + last + WINDOW[trigger]
    p = Partition()
    p.send(*(event("u1", f"u1-s{i}", T0 + at, typ) for i, (typ, at) in enumerate(steps)))
    p.idle(decided + 5 * MIN)
    sent = decisions(p.published, trigger=trigger)
    assert [outcome(d) for d in sent] == [("sent", None, iso(decided))]
    before = list(p.published)
    p.send(event("u1", "u1-goal", T0 + goal_at, goal))
    p.send(event("u1", "u1-goal-retry", T0 + goal_at, goal), event("u1", "u1-goal-2", T0 + goal_at + MIN, goal))
    if trigger != "churn_risk":  # for churn any event is a goal, and a step
        p.send(event("u1", "u1-goal-early", T0 - HOUR, goal), event("u1", "u1-goal-after", decided + MIN, goal))
    p.idle(decided + 2 * HOUR)
    new = p.published[len(before) :]
    fixes = corrections(new)
    aid = sent[0]["action_id"]
    assert [(r.topic, r.id) for r in fixes] == [("actions.audit", f"{aid}:audit:correction")]
    assert fixes[0].value == {
        "action_id": aid, "user_id": "u1", "trigger": trigger, "channel": sent[0]["channel"], "decided_at": iso(decided),
        "correction": {"reason": "goal_before_decision", "goal_event_id": "u1-goal", "goal_at": iso(T0 + goal_at)},
    }  # fmt: skip
    assert [r for r in actions(new, trigger=trigger) if r.value["action_id"] == aid] == []


def test_no_correction_once_the_correction_window_has_passed():
    window = SETTINGS.triggers.correction_window_s * 1000
    decided = T0 + WINDOW["cart_abandoned"]
    p = Partition()
    p.send(event("u1", "u1-cart", T0, "add_to_cart"))
    p.idle(decided + window + HOUR)
    p.send(event("u1", "u1-paid", T0 + 20 * MIN, "payment_success"))
    assert [outcome(d) for d in decisions(p.published, trigger="cart_abandoned")] == [("sent", None, iso(decided))]
    assert corrections(p.published) == []


# --------------------------------------------------------------------------- stale moments

STALE = {  # trigger -> (the event that arms it, how long after it the moment is)
    "cart_abandoned": ("add_to_cart", WINDOW["cart_abandoned"]),
    "payment_stalled": ("payment_submit", WINDOW["payment_stalled"]),
    "kyc_stalled": ("kyc_submit", WINDOW["kyc_stalled"]),
    "kyc_rejected": ("kyc_rejected", 0),
}


@pytest.mark.parametrize("horizon", ["the user's own events", "the partition's progress"])
@pytest.mark.parametrize("trigger", sorted(STALE))
def test_a_moment_long_past_is_recorded_stale_and_never_sent(trigger, horizon):
    """A phone flushes yesterday's events: the moment they reveal is more than
    late_timer_grace_s behind the user's horizon — recorded suppressed/stale, nothing on
    actions.*, and no cap or cooldown used: the next real occurrence is sent."""
    typ, after = STALE[trigger]
    now = T0 + 2 * DAY
    p = Partition()
    if horizon == "the user's own events":
        p.send(event("u1", "u1-today", now, "page_view"))
    else:
        p.send(*(event(f"n{i}", f"n{i}-today", now, "page_view") for i in range(3)))
    p.send(event("u1", "u1-old", T0, typ))
    p.idle(now + HOUR)
    got = decisions(p.published, trigger=trigger)
    assert [outcome(d) for d in got] == [("suppressed", "stale", iso(T0 + after))]
    assert got[0]["evidence"] == ["u1-old"] and got[0]["channel"] is None
    assert actions(p.published) == []
    p.send(event("u1", "u1-new", now + 2 * HOUR, typ))
    p.idle(now + 2 * HOUR + after + HOUR)
    assert [outcome(d)[:2] for d in decisions(p.published, trigger=trigger)] == [("suppressed", "stale"), ("sent", None)]


@pytest.mark.parametrize("behind, status", [(0, "sent"), (1, "suppressed")], ids=["at the grace", "past the grace"])
def test_the_grace_is_the_boundary_of_stale(behind, status):
    deadline = T0 + WINDOW["cart_abandoned"]
    p = Partition()
    p.idle(deadline + GRACE + behind)  # the user's horizon when the old add_to_cart arrives
    p.send(event("u1", "u1-cart", T0, "add_to_cart"))
    p.idle(deadline + GRACE + 2 * HOUR)
    assert [outcome(d)[0] for d in decisions(p.published, trigger="cart_abandoned")] == [status]
    assert len(actions(p.published)) == (status == "sent")


# --------------------------------------------------------------------------- real time and retries


def not_held_out(settings: Settings) -> str:
    fs = settings.fatigue
    return next(u for u in (f"user-{i}" for i in range(100)) if not in_holdout(u, fs.holdout_experiment, fs.holdout_share))


def test_kyc_rejected_is_decided_on_arrival_with_default_settings():
    """Default settings (allowed lateness 300 s): the decision is in the step of its event,
    on actions.<channel>, while the event still waits in the reorder buffer for the
    sessions; a retry with a new id at the same time sends nothing more."""
    settings = default_settings()
    assert settings.sessions.allowed_lateness_s == 300
    user = not_held_out(settings)
    p = Partition(settings)
    got = p.send(event(user, "k0", T0, "kyc_start"), event(user, "k1", T0 + MIN, "kyc_rejected"))
    assert [(r.topic.startswith("actions."), r.value["trigger"], r.value["status"], r.value["decided_at"]) for r in got] == [
        (True, "kyc_rejected", "sent", iso(T0 + MIN)), (True, "kyc_rejected", "sent", iso(T0 + MIN)),
    ]  # fmt: skip
    assert {r.topic for r in got} == {"actions.audit", f"actions.{got[0].value['channel']}"}
    state = p.user_state(user)
    assert [row[1] for row in state.buf] == ["k0", "k1"] and state.sess is None  # sessions have not seen them yet
    assert p.send(event(user, "k1-retry", T0 + MIN, "kyc_rejected")) == []
    p.idle(T0 + 3 * DAY)
    assert len(decisions(p.published, user, "kyc_rejected")) == 1
    p.send(event(user, "k2", T0 + 3 * DAY, "kyc_start"), event(user, "k3", T0 + 3 * DAY + MIN, "kyc_rejected"))
    assert [outcome(d)[:2] for d in decisions(p.published, user, "kyc_rejected")] == [("sent", None), ("sent", None)]


# --------------------------------------------------------------------------- deferred means held


ZONES = ["Asia/Shanghai", "America/New_York"]


@pytest.mark.parametrize("tz", ZONES)
def test_a_deferred_message_is_held_until_its_send_time_then_released(tz):
    day = "2026-01-06"
    steps = deferred_cart("u1", tz, day)
    send_at = local(tz, "2026-01-07T08:00")
    p = Partition().play(steps[:2])
    held = decisions(p.published)
    assert [(d["trigger"], d["status"], d["reason"], d["decided_at"], d["send_at"]) for d in held] == [
        ("cart_abandoned", "deferred", "quiet_hours", iso(local(tz, "2026-01-07T00:05")), iso(send_at)),
    ]
    assert actions(p.published) == []
    aid, channel = held[0]["action_id"], held[0]["channel"]
    assert channel in SETTINGS.fatigue.quiet_channels
    p.idle(send_at - 1)
    assert actions(p.published) == []
    released = p.idle(send_at)
    assert [(r.topic, r.id) for r in released] == [(f"actions.{channel}", f"{aid}:{channel}"), ("actions.audit", f"{aid}:audit:released")]
    assert all(r.value["status"] == "sent" and r.value["send_at"] == iso(send_at) and same_but_status(r.value, held[0]) for r in released)
    p.play(steps[2:])
    assert len(actions(p.published)) == 1 and len(decisions(p.published)) == 2


@pytest.mark.parametrize("goal", ["payment_success", "checkout_start"])
@pytest.mark.parametrize("tz", ZONES)
def test_a_goal_before_the_send_time_cancels_the_held_message(tz, goal):
    """The issue's example: abandoned at 00:05 local, deferred to 08:00, paid at 07:03."""
    p = Partition().play(deferred_cart("u1", tz, "2026-01-06", [("2026-01-07T07:03", goal, {})]))
    got = decisions(p.published, trigger="cart_abandoned")
    assert [(d["status"], d["reason"]) for d in got] == [("deferred", "quiet_hours"), ("cancelled", "goal_reached")]
    assert same_but_status(got[0], got[1])
    assert [r.id for r in of(p.published, trigger="cart_abandoned") if r.value["status"] == "cancelled"] == [f"{got[0]['action_id']}:audit:cancelled"]
    assert actions(p.published, trigger="cart_abandoned") == [] and corrections(p.published) == []


def test_a_goal_flushed_late_but_before_the_send_time_still_cancels():
    tz = "Asia/Shanghai"
    p = Partition().play(deferred_cart("u1", tz, "2026-01-06")[:2])
    p.idle(local(tz, "2026-01-07T07:50"))
    p.send(event("u1", "u1-paid", local(tz, "2026-01-07T07:03"), "payment_success", tz=tz))
    p.idle(local(tz, "2026-01-10T08:00"))
    assert [(d["status"], d["reason"]) for d in decisions(p.published)] == [("deferred", "quiet_hours"), ("cancelled", "goal_reached")]
    assert actions(p.published) == []


def test_a_goal_after_the_send_time_does_not_cancel():
    """Paid at 08:02, while the partition is still before 08:00: the message left at 08:00."""
    tz = "Asia/Shanghai"
    p = Partition().play(deferred_cart("u1", tz, "2026-01-06")[:2])
    p.idle(local(tz, "2026-01-07T07:58"))
    p.send(event("u1", "u1-paid", local(tz, "2026-01-07T08:02"), "payment_success", tz=tz))
    assert actions(p.published) == []
    p.idle(local(tz, "2026-01-10T08:00"))
    assert [(d["status"], d["reason"]) for d in decisions(p.published)] == [("deferred", "quiet_hours"), ("sent", None)]
    assert len(actions(p.published)) == 1 and corrections(p.published) == []


def test_a_goal_reported_after_the_release_but_dated_before_the_send_time_is_a_correction():
    """Paid at 07:03, but the payment arrives (flushed) after the 08:00 release: the
    message should have been cancelled; one correction says so."""
    tz = "Asia/Shanghai"
    p = Partition().play(deferred_cart("u1", tz, "2026-01-06")[:2])
    p.idle(local(tz, "2026-01-07T08:30"))
    assert len(actions(p.published)) == 1
    p.send(event("u1", "u1-paid", local(tz, "2026-01-07T07:03"), "payment_success", tz=tz))
    (c,) = corrections(p.published)
    assert c.value["correction"] == {"reason": "goal_before_send", "goal_event_id": "u1-paid", "goal_at": iso(local(tz, "2026-01-07T07:03"))}
    p.send(event("u1", "u1-paid-retry", local(tz, "2026-01-07T07:03"), "payment_success", tz=tz))
    assert len(corrections(p.published)) == 1 and len(actions(p.published)) == 1


def test_a_rejection_flushed_after_the_approval_is_not_news():
    user = not_held_out(SETTINGS)
    p = Partition()
    p.send(event(user, "k0", T0, "kyc_start"), event(user, "k2", T0 + 20 * MIN, "kyc_approved"))
    p.idle(T0 + 40 * MIN)
    p.send(event(user, "k1", T0 + 10 * MIN, "kyc_rejected"))  # late, older than the approval
    p.idle(T0 + 3 * DAY)
    assert decisions(p.published, user, "kyc_rejected") == [] and decisions(p.published, user, "kyc_stalled") == []


def test_segment_triggers_of_a_late_run_long_past_are_stale():
    """A flushed session of coupon views two days old: its late-run segment fires
    coupon_interest, recorded stale, never sent."""
    user = not_held_out(SETTINGS)
    p = Partition()
    p.send(event(user, "now", T0 + 2 * DAY, "page_view"))
    p.idle(T0 + 2 * DAY + 10 * MIN)
    p.send(*[event(user, f"c{i}", T0 + i * MIN, "coupon_view") for i in range(8)])  # two days late
    p.idle(T0 + 3 * DAY)
    got = decisions(p.published, user, "coupon_interest")
    assert got and all(outcome(d)[:2] == ("suppressed", "stale") for d in got)
    assert actions(p.published, user, "coupon_interest") == []


@pytest.mark.parametrize("props, cancelled", [({"channel": "push"}, True), ({}, True), ({"channel": "email"}, False)],
                         ids=["from push", "from every channel", "from email only"])  # fmt: skip
def test_an_unsubscribe_before_the_send_time_cancels_the_held_message(props, cancelled):
    tz = "Asia/Shanghai"
    p = Partition().play(deferred_cart("u1", tz, "2026-01-06", [("2026-01-07T07:03", "unsubscribe", {"props": props})]))
    got = decisions(p.published)
    assert got[0]["channel"] == "push"
    want = ("cancelled", "opt_out") if cancelled else ("sent", None)
    assert [(d["status"], d["reason"]) for d in got] == [("deferred", "quiet_hours"), want]
    assert len(actions(p.published)) == (not cancelled)


# --------------------------------------------------------------------------- the properties


def on_partition(partition: int, prefix: str, n: int = 3) -> list[str]:
    """``n`` users on ``partition`` of 6, and so on the same partition for any partition
    count dividing 6: enough (``[events] watermark_quorum``) to move its progress."""
    names = (f"{prefix}-{i}" for i in itertools.count())
    return list(itertools.islice((name for name in names if partition_for(name.encode(), 6) == partition), n))


def as_trace(user: str, steps: Sequence[Step]) -> list[dict[str, Any]]:
    """A scenario as one stream of events: an idle period becomes the events of a crowd on
    the user's partition at its end + the allowed lateness, which moves the watermark just
    as far."""
    out: list[dict[str, Any]] = []
    crowd = on_partition(partition_for(user.encode(), 6), f"{user}-n")
    for i, step in enumerate(steps):
        if isinstance(step, Idle):
            out += [event(n, f"{n}-{i}", step.until + LATENESS, "page_view") for n in crowd]
        else:
            out += step
    return out


#: each scenario in its own stretch of event time; a heartbeat on every partition a day
#: before each (new users: one active day, no churn of their own) keeps them all within
#: [events] max_future_s of each other — an event further ahead of its partition is
#: dead-lettered — as the users of a live app do
SLOT = 25 * DAY


def heartbeat(at: int) -> list[bytes]:
    return [codec.dumps(event(u, f"{u}-hb", at, "app_open")) for p in range(6) for u in on_partition(p, f"hb{at}")]


def scenarios() -> list[tuple[str, int, list[Step]]]:
    """(user, start, steps) of each scenario, the next one SLOT later."""
    out: list[tuple[str, int, list[Step]]] = []

    def add(make: Callable[[str, int], list[Step]]) -> None:
        user, t0 = f"s{len(out)}", T0 + len(out) * SLOT
        out.append((user, t0, make(user, t0)))

    for delivered in ("with day 1", "after day 2"):
        add(lambda u, t: churn_retried_day0(u, t, delivered))
    for trigger in JOURNEYS:
        for arrives in ("before the deadline", "after the decision"):
            add(lambda u, t: late_step(u, t, trigger, arrives))
    for goal, when in (("payment_success", "07:03"), ("unsubscribe", "07:03"), ("page_view", "09:00")):
        add(lambda u, t: deferred_cart(u, "Asia/Shanghai", day_of(t), [(f"{day_of(t + DAY)}T{when}", goal, {})]))
    add(lambda u, t: [[event(u, f"{u}-c", t, "add_to_cart")], Idle(t + 45 * MIN), [event(u, f"{u}-p", t + 20 * MIN, "payment_success")], Idle(t + DAY)])
    add(lambda u, t: [[event(u, f"{u}-now", t + 2 * DAY, "page_view")], [event(u, f"{u}-old", t, "add_to_cart")], Idle(t + 3 * DAY)])
    add(lambda u, t: [[event(u, f"{u}-k0", t, "kyc_start"), event(u, f"{u}-k1", t + MIN, "kyc_rejected")], [event(u, f"{u}-k1r", t + MIN, "kyc_rejected")], Idle(t + DAY)])
    return out


def day_of(ms: int) -> str:
    return format_ts(ms)[:10]


@pytest.fixture(scope="module")
def trace() -> tuple[list[bytes], dict[str, list[Record]]]:
    """All scenarios in one trace, and what each scenario's user gets when played alone
    (up to the trace's last moment)."""
    lines, alone = [], {}
    played = scenarios()
    end = max(step.until for _, _, steps in played for step in steps if isinstance(step, Idle))
    for user, t0, steps in played:
        lines += heartbeat(t0 - DAY)
        lines += [codec.dumps(e) for e in as_trace(user, steps)]
        alone[user] = of(Partition().play([*steps, Idle(end)]).published, user)
    return lines, alone


def offline(lines: list[bytes], **kw: Any) -> list[tuple[str, bytes]]:
    return list(OfflineRunner(SETTINGS, **kw).run(enumerate(lines)))


def test_the_trace_covers_every_rule(trace):
    lines, alone = trace
    assert SLOT < SETTINGS.events.max_future_s * 1000
    assert [t for t, _ in offline(lines) if t not in ("segments", "actions.audit") and not t.startswith("actions.")] == []
    records = [r for rs in alone.values() for r in rs]
    statuses = {(r.value.get("status"), r.value.get("reason")) for r in records}
    assert {("deferred", "quiet_hours"), ("cancelled", "goal_reached"), ("cancelled", "opt_out"), ("suppressed", "stale"), ("sent", None)} <= statuses
    assert any(r.id.endswith(":audit:released") for r in records) and any("correction" in r.value for r in records)


def test_each_user_gets_the_same_records_in_the_trace_as_alone(trace):
    lines, alone = trace
    got = [(t, codec.loads(v)) for t, v in offline(lines, partitions=1) if t.startswith("actions.")]
    for user, records in alone.items():
        assert sorted(codec.dumps(v) for t, v in got if v["user_id"] == user) == sorted(codec.dumps(r.value) for r in records), user


@pytest.mark.parametrize("batch_size", [1, 7])
def test_outputs_do_not_depend_on_batch_cuts(trace, batch_size):
    lines, _ = trace
    assert sorted(offline(lines, batch_size=batch_size)) == sorted(offline(lines, batch_size=500))


@pytest.mark.parametrize("partitions", [1, 2, 3])
def test_outputs_do_not_depend_on_the_number_of_partitions(trace, partitions):
    """Each user's moments, and so its records, depend only on its own events and on the
    progress of its partition — the same here for any partition count (the neighbours
    share the user's partition), so all outputs are the same."""
    lines, _ = trace
    assert sorted(offline(lines, partitions=partitions)) == sorted(offline(lines, partitions=6))


# --------------------------------------------------------------------------- real-world delivery, generated

#: the triggers a moment in time fires; segment triggers are left out: a retried event
#: counts again in its segment, and a flushed one lands in a late run (README)
MOMENTS = frozenset(WINDOW) | {"kyc_rejected"}
REALWORLD = GeneratorConfig(users=200, days=10, seed=21)


@dataclass
class Delivered:
    """The offline run of the generated trace delivered one way; each moment is
    (user, trigger, decided_at)."""

    #: the moments of MOMENTS' messages on actions.<channel>
    messages: Counter[tuple[str, str, str]]
    #: every moment a decision was made about, whatever its status
    decided: set[tuple[str, str, str]]
    #: the moments of the corrections
    corrected: set[tuple[str, str, str]]


def delivered(**delivery: Any) -> Delivered:
    lines = generate_lines(dataclasses.replace(REALWORLD, **delivery))
    out = [(t, codec.loads(v)) for t, v in OfflineRunner(SETTINGS).run(enumerate(lines)) if t.startswith("actions.")]
    audit = Counter((r["action_id"], r.get("status", "correction")) for t, r in out if t == "actions.audit")
    assert [k for k, n in audit.items() if n > 1] == []  # one record of each kind per action
    key = itemgetter("user_id", "trigger", "decided_at")
    return Delivered(
        Counter(key(r) for t, r in out if t not in ("actions.audit", "actions.outcomes") and r["trigger"] in MOMENTS),
        {key(r) for t, r in out if "status" in r},
        {key(r) for t, r in out if "correction" in r},
    )


@pytest.fixture(scope="module")
def in_time() -> Delivered:
    return delivered()


def test_uploads_retried_with_new_ids_send_no_other_message(in_time):
    assert delivered(retry_share=0.1).messages == in_time.messages


@pytest.mark.parametrize("delivery", [{"flush_share": 0.3, "flush_hours": (1.0, 30.0)}, {"order": "user"}], ids=["offline flushes", "a dump grouped by user"])
def test_late_delivery_sends_no_message_about_a_moment_the_trace_in_time_does_not_have(in_time, delivery):
    """Flushed bursts (or a whole dump) arrive late: their moments fire late or stale, their
    goals late. Every message is about a moment the in-time trace decided too (its
    fatigue outcome may differ: a stale moment uses no cooldown), or it has a correction."""
    late = delivered(**delivery)
    assert {m for m in late.messages if m not in in_time.decided} <= late.corrected
    assert late.messages != in_time.messages  # the late delivery did change something


@pytest.mark.parametrize("batch_size", [1, 7])
def test_real_world_delivery_does_not_depend_on_batch_cuts(batch_size):
    cfg = GeneratorConfig(users=60, days=6, seed=4, retry_share=0.1, flush_share=0.3, cross_device_share=0.2)
    lines = list(generate_lines(cfg))
    assert sorted(offline(lines, batch_size=batch_size)) == sorted(offline(lines, batch_size=500))


# --------------------------------------------------------------------------- crashes


class Crash(Exception):
    pass


class DiesOnce(MemorySessionStore):
    """Dies (like kill -9) in the first commit whose outbox has a record ``kind`` returns
    true for: before writing anything, or after writing it all."""

    def __init__(self, kind: Callable[[str, bytes], bool], after: bool) -> None:
        super().__init__()
        self.kind, self.after, self.armed = kind, after, True

    def commit(self, partition: int, batch: CommitBatch) -> None:
        if self.armed and any(self.kind(e.id, e.value) for e in batch.outbox):
            self.armed = False
            if self.after:
                super().commit(partition, batch)
            raise Crash("kill -9")
        super().commit(partition, batch)


CRASH_AT = {
    "deciding a deferred message": lambda i, v: i.endswith(":audit") and b'"status":"deferred"' in v,
    "releasing a held message": lambda i, v: i.endswith(":audit:released"),
    "cancelling a held message": lambda i, v: i.endswith(":audit:cancelled"),
    "a correction": lambda i, v: i.endswith(":audit:correction"),
    "a stale decision": lambda i, v: b'"reason":"stale"' in v,
}


def run_with_restarts(lines: list[bytes], store: MemorySessionStore, size: int) -> list[tuple[str, str, bytes]]:
    """The worker's loop on one partition: step, publish, ack; on a crash a new engine on
    the same store publishes what the outbox still holds, and the batch is redelivered."""
    engine = PartitionEngine(store, 0, SETTINGS)
    out: list[tuple[str, str, bytes]] = []

    def publish() -> None:
        entries = engine.pending_outbox()
        out.extend((e.topic, e.id, e.value) for e in entries)
        engine.ack([e.id for e in entries])

    batches = [list(enumerate(lines))[i : i + size] for i in range(0, len(lines), size)]
    i, crashes = 0, 0
    while i < len(batches):
        try:
            engine.process(batches[i])
        except Crash:
            crashes += 1
            engine = PartitionEngine(store, 0, SETTINGS)  # restart: same store, same ledger
            publish()
            continue
        publish()
        i += 1
    engine.advance_to(1 << 60)
    publish()
    assert crashes == isinstance(store, DiesOnce)
    return out


@pytest.mark.parametrize("after", [False, True], ids=["before the commit", "after the commit"])
@pytest.mark.parametrize("at", sorted(CRASH_AT))
def test_a_crash_changes_no_record(trace, at, after):
    """kill -9 in the step that decides a deferred message, releases or cancels a held
    one, corrects a sent one or records a stale one — before its commit or after it, before
    the outbox was published: after the restart the audit and actions.* records are the
    same, each once."""
    lines, _ = trace
    want = sorted(run_with_restarts(lines, MemorySessionStore(), 5))
    got = run_with_restarts(lines, DiesOnce(CRASH_AT[at], after), 5)
    assert sorted(got) == want
    assert len({(t, i) for t, i, _ in got}) == len(got)
