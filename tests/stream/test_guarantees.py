"""What a message recipient can count on, checked on what the engine published for
messy input (retried uploads, offline buffers flushed hours later, cross-device clocks,
late and duplicated deliveries), with the default settings:

* no user gets more messages, all channels together, than a global cap allows in any
  rolling window (counted at the moment each message went: sent at once, or released);
* no first-transaction nudge goes to a user who had already bought — unless the purchase
  arrived after the message, and then a correction says so;
* ``churn_risk`` sends at most one message per step of the cadence in any one silence.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

import pytest

from intentstream.stream import codec
from intentstream.stream.contract.events import Event, parse_event, parse_ts
from intentstream.stream.decisions.contract import split_audit
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.outcomes.record import NOT_A_VISIT
from intentstream.stream.settings import default_settings
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

MESSY = GeneratorConfig(
    users=600, days=28, seed=21, late_share=0.03, duplicate_share=0.02,
    retry_share=0.05, flush_share=0.05, cross_device_share=0.05,
)  # fmt: skip
SETTINGS = default_settings()


@pytest.fixture(scope="module")
def run():
    lines = [line.rstrip(b"\n") for line in generate_lines(MESSY)]
    events = [ev for ev in map(parse_event, lines) if type(ev) is Event]
    audit = [codec.loads(v) for t, v in OfflineRunner(SETTINGS).run(enumerate(lines, 1)) if t == SETTINGS.topics.audit]
    return events, audit


def ms(text: str) -> int:
    value = parse_ts(text)
    assert isinstance(value, int)
    return value


def sent_times(audit) -> dict[str, list[tuple[int, dict]]]:
    """user -> (moment it went, first record) of every message that went out."""
    decided, later, _ = split_audit(audit)
    first = {d["action_id"]: d for d in decided}
    out: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for r in decided:
        if r["status"] == "sent":
            out[r["user_id"]].append((ms(r["decided_at"]), r))
    for r in later:
        if r["status"] == "sent":
            out[r["user_id"]].append((ms(r["send_at"]), first[r["action_id"]]))
    return out


def test_no_user_gets_more_than_the_global_caps_in_any_rolling_window(run):
    _, audit = run
    caps = SETTINGS.fatigue.global_caps
    assert caps
    users = sent_times(audit)
    assert sum(map(len, users.values())) > 500
    worst = {}
    for window_s, cap in caps:
        w = window_s * 1000
        most = 0
        for sends in users.values():
            times = sorted(t for t, _ in sends)
            for i, t in enumerate(times):  # every window ending at a send
                most = max(most, i + 1 - bisect.bisect_right(times, t - w))
        worst[window_s] = most
        assert most <= cap, (window_s, most, cap)
    assert worst[86400] == 2  # the cap binds: it is not met by accident


def test_no_first_transaction_nudge_to_a_buyer_without_a_correction(run):
    events, audit = run
    bought: dict[str, int] = {}
    for ev in events:
        if ev.type == "payment_success":
            bought[ev.user_id] = min(bought.get(ev.user_id, ev.ts_ms), ev.ts_ms)
    corrected = {r["action_id"] for r in audit if "correction" in r}
    nudges = [(t, r) for sends in sent_times(audit).values() for t, r in sends if r["trigger"] == "first_transaction_nudge"]
    assert len(nudges) > 50
    to_buyers = [r for t, r in nudges if r["user_id"] in bought and bought[r["user_id"]] < t]
    assert all(r["action_id"] in corrected for r in to_buyers), [r["action_id"] for r in to_buyers if r["action_id"] not in corrected]


def test_churn_sends_at_most_one_message_per_cadence_step_in_a_silence(run):
    events, audit = run
    visits: dict[str, list[int]] = defaultdict(list)
    for ev in events:
        if ev.type not in NOT_A_VISIT:
            visits[ev.user_id].append(ev.ts_ms)
    steps = len(SETTINGS.triggers.churn_steps_s)
    churn = [r for r in split_audit(audit)[0] if r["trigger"] == "churn_risk" and r["status"] in ("sent", "deferred", "holdout")]
    assert churn
    per_silence: dict[tuple[str, int], int] = defaultdict(int)
    for r in churn:
        times = sorted(visits[r["user_id"]])
        last_visit = times[bisect.bisect_right(times, ms(r["decided_at"])) - 1]
        per_silence[(r["user_id"], last_visit)] += 1
    assert max(per_silence.values()) <= steps
