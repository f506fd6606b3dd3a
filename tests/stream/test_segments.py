"""Intent segment formulas, vocabulary and the label/status invariants over generated traces."""

from __future__ import annotations

import dataclasses
import random

import pytest

from intentstream.stream import codec
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig
from intentstream.stream.sessions.segments import (
    BEHAVIOUR_STAGES,
    CLOSED_BY,
    INTENTS,
    KYC_STATUSES,
    LIFECYCLE_STAGES,
    MAIN_ACTIVITY,
    TRANSACTION_STATUSES,
    TYPE_INTENT,
    URGENCIES,
    IntentSegment,
    Labeller,
    SegmentAccumulator,
    behaviour_stage,
    dominant,
)
from intentstream.stream.state.memory import MemorySessionStore

T0 = 1767607200000


def acc_of(types, kyc="not_started", tx="not_started", step_ms=60_000):
    acc = SegmentAccumulator()
    for i, typ in enumerate(types):
        acc.add((T0 + i * step_ms, f"e{i}", typ, "ios", "app", 10.0 if typ == "payment_success" else None), kyc, tx)
    return acc


def finish(acc, **kw):
    return acc.finish("u1", "s1", 0, "introduction", "UTC", "inactivity", dataclasses.replace(Labeller.from_settings(), **kw))


@pytest.mark.parametrize(
    "w, want",
    [
        ([0, 0, 0, 0, 0], "browsing"),
        ([5, 0, 0, 0, 0], "browsing"),
        ([3, 3, 0, 0, 0], "coupon"),  # ties go to the more committal intent
        ([3, 3, 3, 0, 0], "purchase"),
        ([0, 0, 2, 2, 0], "purchase"),
        ([0, 2, 0, 2, 0], "kyc"),
        ([1, 0, 0, 0, 1], "account"),
        ([9, 1, 2, 3, 4], "browsing"),
    ],
)
def test_dominant_intent_and_its_tie_breaks(w, want):
    assert INTENTS[dominant(w)] == want


@pytest.mark.parametrize(
    "types, intent, strength",
    [
        (["page_view"] * 10, "browsing", 1.0),  # focus 1, depth 10/10
        (["page_view"] * 5, "browsing", 0.5),  # depth 5/10
        (["page_view"] * 5 + ["app_open"] * 5, "browsing", 0.25),  # generic interactions dilute focus
        (["coupon_claim"] * 2 + ["page_view"] * 2, "coupon", round(4 / 6 * 0.4, 4)),
        (["add_to_cart", "checkout_start", "payment_submit", "payment_success"], "purchase", 1.0),
        (["message_open", "message_click"], "browsing", 0.0),  # no vote at all
        (["my_custom_type"] * 3, "browsing", 0.0),  # unknown types are generic interactions
    ],
)
def test_intent_strength_is_focus_times_depth(types, intent, strength):
    seg = finish(acc_of(types))
    assert (seg.intent, seg.intent_strength) == (intent, strength)
    assert seg.main_activity == MAIN_ACTIVITY[intent]


@pytest.mark.parametrize(
    "types, kyc, tx, urgency",
    [
        (["page_view"] * 3, "not_started", "not_started", "low"),
        (["page_view"] * 10, "not_started", "not_started", "medium"),  # strength 1.0 >= 0.8
        (["coupon_view"], "not_started", "not_started", "medium"),
        (["add_to_cart"], "not_started", "not_started", "medium"),  # weak purchase intent
        (["add_to_cart", "checkout_start"], "not_started", "in_progress", "high"),  # funnel left open
        (["page_view"] * 8 + ["payment_fail"], "not_started", "failed", "high"),
        (["page_view"] * 3 + ["kyc_start"], "in_progress", "not_started", "high"),
        (["add_to_cart", "payment_success"], "not_started", "completed", "medium"),  # strength 0.5
        (["add_to_cart"] * 3 + ["checkout_start"] * 2, "not_started", "completed", "high"),  # strong purchase
        (["login", "form_start"], "not_started", "not_started", "low"),
    ],
)
def test_urgency_rules(types, kyc, tx, urgency):
    assert finish(acc_of(types, kyc, tx)).urgency == urgency


@pytest.mark.parametrize(
    "intent, kyc, tx, stage",
    [
        ("browsing", "not_started", "completed", "transacted"),
        ("purchase", "rejected", "in_progress", "transacting"),
        ("kyc", "completed", "failed", "transacting"),
        ("coupon", "in_progress", "not_started", "verifying"),
        ("browsing", "rejected", "not_started", "verifying"),
        ("coupon", "completed", "not_started", "considering"),
        ("purchase", "not_started", "not_started", "considering"),
        ("account", "completed", "not_started", "exploring"),
        ("kyc", "not_started", "not_started", "exploring"),
    ],
)
def test_behaviour_stage_table(intent, kyc, tx, stage):
    assert behaviour_stage(intent, kyc, tx) == stage
    assert stage in BEHAVIOUR_STAGES


def test_amount_interactions_and_counts():
    seg = finish(acc_of(["page_view", "add_to_cart", "payment_success", "payment_success", "app_open"]))
    assert seg.amount == 20.0
    assert seg.interactions == 5 == sum(seg.type_counts.values())
    assert seg.devices == {"ios": 5} and seg.channels == {"app": 5}
    assert (seg.first_event_id, seg.last_event_id, seg.duration_min) == ("e0", "e4", 4.0)


def test_merge_equals_adding_in_order():
    types = ["page_view", "coupon_view", "coupon_claim", "app_open", "add_to_cart", "kyc_start"]
    whole = acc_of(types)
    head, tail = SegmentAccumulator(), SegmentAccumulator()
    for i, typ in enumerate(types):
        (head if i < 3 else tail).add((T0 + i * 60_000, f"e{i}", typ, "ios", "app", None))
    head.merge(tail)
    assert finish(head) == finish(whole)
    assert SegmentAccumulator.load(codec.loads(codec.dumps(head.dump()))).dump() == head.dump()


def test_to_dict_is_json_with_iso_times_and_round_trips():
    seg = finish(acc_of(["coupon_view", "coupon_claim"]))
    d = codec.loads(codec.dumps(seg.to_dict()))
    assert d["start"] == "2026-01-05T10:00:00.000Z" and d["end"] == "2026-01-05T10:01:00.000Z"
    assert IntentSegment.from_dict(d) == seg
    assert set(d) == {f for f in IntentSegment.__dataclass_fields__} | {"start", "end"}


def test_every_voting_type_is_canonical():
    from intentstream.stream.contract.events import CANONICAL_TYPES

    assert set(TYPE_INTENT) <= CANONICAL_TYPES
    assert CANONICAL_TYPES - set(TYPE_INTENT) == {"app_open", "message_open", "message_click", "message_dismiss"}


# ---------------------------------------------------------------- invariants over traces

FUNNEL = [
    ["add_to_cart", "checkout_start", "payment_submit", "payment_success"],
    ["add_to_cart", "checkout_start", "payment_submit", "payment_fail"],
    ["checkout_start"],
    ["kyc_start", "kyc_submit", "kyc_approved"],
    ["kyc_start", "kyc_submit", "kyc_rejected"],
    ["kyc_start"],
    ["coupon_view", "coupon_claim", "coupon_redeem"],
    ["login", "form_start", "form_submit"],
    ["page_view", "click", "search", "page_view"],
    ["app_open", "message_open", "message_click", "custom_thing", "unsubscribe"],
]


def random_trace(seed: int, users: int = 6, events: int = 400) -> list[bytes]:
    """Random users doing random flows at random paces, delivered with some disorder,
    lateness and duplicates (events as contract JSON lines)."""
    rng = random.Random(seed)
    clock = {f"u{i}": T0 + rng.randrange(0, 3_600_000) for i in range(users)}
    evs = []
    n = 0
    while n < events:
        u = rng.choice(list(clock))
        for typ in rng.choice(FUNNEL):
            clock[u] += rng.choice([5_000, 30_000, 120_000, 600_000, 2_400_000, 20_000_000])
            ev = {"event_id": f"{u}-{n}", "user_id": u, "ts": clock[u], "type": typ, "device": rng.choice(["ios", "web"])}
            if typ == "payment_success":
                ev["amount"] = rng.choice([9.5, 120.0])
            evs.append(ev)
            n += 1
    evs.sort(key=lambda e: e["ts"] + rng.choice([0, 0, 0, 60_000, 250_000, 900_000]))  # disorder, some late
    lines = []
    for e in evs:
        lines.append(codec.dumps(e))
        if rng.random() < 0.05:
            lines.append(codec.dumps(e))  # duplicate
    return lines


def segments_of(lines: list[bytes], batch: int = 37) -> tuple[list[IntentSegment], PartitionEngine]:
    eng = PartitionEngine(MemorySessionStore(), 0)
    out = []
    for start in range(0, len(lines), batch):
        out += eng.process([(start + i, raw) for i, raw in enumerate(lines[start : start + batch])]).segments
    return out + eng.flush().segments, eng


def check_invariants(segs: list[IntentSegment]) -> None:
    by_session: dict[str, list[int]] = {}
    for s in segs:
        assert s.intent in INTENTS and s.urgency in URGENCIES and s.kyc_status in KYC_STATUSES
        assert s.transaction_status in TRANSACTION_STATUSES and s.lifecycle_stage in LIFECYCLE_STAGES
        assert s.closed_by in CLOSED_BY and s.behaviour_stage in BEHAVIOUR_STAGES
        assert s.main_activity == MAIN_ACTIVITY[s.intent]
        # labels never contradict statuses
        assert (s.behaviour_stage == "transacted") == (s.transaction_status == "completed")
        assert (s.behaviour_stage == "transacting") == (s.transaction_status in ("in_progress", "failed"))
        assert (s.behaviour_stage == "verifying") == (
            s.transaction_status == "not_started" and s.kyc_status in ("in_progress", "rejected")
        )
        if s.behaviour_stage == "considering":
            assert s.intent in ("purchase", "coupon")
        if s.behaviour_stage in ("considering", "exploring"):
            assert s.transaction_status == "not_started" and s.kyc_status in ("not_started", "completed")
        # urgency: an open funnel in the segment is always high
        if s.transaction_status in ("in_progress", "failed") and any(
            t in s.type_counts for t in ("checkout_start", "payment_submit", "payment_fail")
        ):
            assert s.urgency == "high"
        if s.urgency == "low":
            assert s.intent in ("browsing", "account")
        assert 0.0 <= s.intent_strength <= 1.0
        assert s.interactions == sum(s.type_counts.values()) >= 1
        assert sum(s.devices.values()) <= s.interactions and sum(s.channels.values()) <= s.interactions
        assert 0 <= s.late <= s.interactions
        assert s.start_ms <= s.end_ms and s.duration_min == (s.end_ms - s.start_ms) / 60000
        assert s.segment_id == f"{s.session_id}:{s.seq}"
        assert s.amount == round(s.amount, 2) >= 0
        if s.amount > 0:
            assert "payment_success" in s.type_counts
        if s.closed_by == "late_flush":
            assert s.late == s.interactions and s.seq == 0
        by_session.setdefault(s.session_id, []).append(s.seq)
    for seqs in by_session.values():
        assert sorted(seqs) == list(range(len(seqs)))  # each session's segments are 0..n-1, none lost


@pytest.mark.parametrize("seed", range(25))
def test_label_and_status_invariants_on_random_traces(seed):
    lines = random_trace(seed)
    segs, eng = segments_of(lines)
    check_invariants(segs)
    unique = {codec.loads(raw)["event_id"] for raw in lines}
    assert sum(s.interactions for s in segs) == len(unique)  # nothing dropped, nothing twice


def test_label_and_status_invariants_on_the_generator():
    lines = list(generate_lines(GeneratorConfig(users=120, days=4, seed=11)))
    segs, _ = segments_of(lines, batch=500)
    check_invariants(segs)
    assert {s.behaviour_stage for s in segs} >= {"exploring", "transacted", "verifying", "considering"}
    assert {s.urgency for s in segs} == set(URGENCIES)
