"""The synthetic clickstream: determinism, delivery accidents, and honest ground truth."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import tracemalloc
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

import pytest

from intentstream.stream import codec
from intentstream.stream.cli import main
from intentstream.stream.contract.events import (
    ACCESS_CHANNELS,
    MAX_TS_MS,
    MESSAGE_CHANNELS,
    MIN_TS_MS,
    Event,
    Rejection,
    format_ts,
    parse_event,
    parse_ts,
    zone,
)
from intentstream.stream.synth.clickstream import generate_events, generate_lines, generate_truth, user_events
from intentstream.stream.synth.config import PERSONAS, GenerationStats, GeneratorConfig
from intentstream.stream.synth.delivery import iso_ts
from intentstream.stream.synth.personas import PERSONA_MODELS, persona_counts

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
KEY_TYPES = {
    "add_to_cart", "checkout_start", "payment_submit", "payment_success", "payment_fail",
    "kyc_start", "kyc_submit", "kyc_approved", "kyc_rejected", "coupon_redeem", "unsubscribe",
}  # fmt: skip
MESSAGE_TYPES = {"message_open", "message_click", "message_dismiss"}

# Ten days, so that churners can be silent for seven days at the end of the window.
CFG = GeneratorConfig(users=250, days=10, seed=11)


class Run:
    """One generation, read back through the event contract."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        self.cfg = cfg
        self.stats = GenerationStats(collect_truth=True)
        self.lines = list(generate_lines(cfg, self.stats))
        self.parsed = [parse_event(line) for line in self.lines]
        self.truth = self.stats.truth_records()
        self.by_user: dict[str, list[Event]] = defaultdict(list)  # unique events, event-time order
        seen = {r["event_id"] for t in self.truth for r in t.get("retries", ())}  # retried uploads are copies
        for ev in self.parsed:
            if isinstance(ev, Event) and ev.event_id not in seen:
                seen.add(ev.event_id)
                self.by_user[ev.user_id].append(ev)
        for evs in self.by_user.values():
            evs.sort(key=lambda e: e.ts_ms)


@pytest.fixture(scope="module")
def run() -> Run:
    return Run(CFG)


def ms(text: str) -> int:
    value = parse_ts(text)
    assert isinstance(value, int)
    return value


def between(evs: list[Event], lo: int, hi: int, types: set[str] | None = None) -> list[Event]:
    """Events with lo < ts <= hi (of the given types)."""
    return [e for e in evs if lo < e.ts_ms <= hi and (types is None or e.type in types)]


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes() -> None:
    cfg = GeneratorConfig(users=40, days=3, seed=5, invalid_share=0.02)
    assert b"".join(generate_lines(cfg)) == b"".join(generate_lines(cfg))
    assert list(generate_truth(cfg)) == list(generate_truth(cfg))


def test_different_seed_gives_different_stream() -> None:
    a = b"".join(generate_lines(GeneratorConfig(users=40, days=3, seed=5)))
    b = b"".join(generate_lines(GeneratorConfig(users=40, days=3, seed=6)))
    assert a != b


def test_delivery_shares_do_not_change_the_events() -> None:
    base = GeneratorConfig(users=30, days=3, seed=2, late_share=0.0, duplicate_share=0.0)
    noisy = GeneratorConfig(users=30, days=3, seed=2, late_share=0.1, duplicate_share=0.05, invalid_share=0.05)
    plain = sorted(generate_lines(base))
    valid = sorted(set(line for line in generate_lines(noisy) if isinstance(parse_event(line), Event)))
    assert plain == valid


def test_truth_api_matches_the_truth_collected_while_generating(run: Run) -> None:
    assert list(generate_truth(CFG)) == run.truth


def test_user_events_are_that_users_events_in_the_stream(run: Run) -> None:
    for index in (0, 7, 123):
        mine = user_events(CFG, index)
        uid = f"u{index:06d}"
        assert [e["event_id"] for e in mine] == [e.event_id for e in run.by_user[uid]]
        assert all(e["user_id"] == uid for e in mine)


# -- the stream --------------------------------------------------------------------------------


def test_every_line_parses_and_stays_in_the_window(run: Run) -> None:
    assert all(isinstance(ev, Event) for ev in run.parsed), Counter(r.reason for r in run.parsed if isinstance(r, Rejection))
    assert all(CFG.start_ms <= ev.ts_ms < CFG.end_ms for ev in run.parsed if isinstance(ev, Event))
    assert len(run.lines) == run.stats.lines == run.stats.events + run.stats.duplicates
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in run.lines)


def test_iso_ts_is_format_ts() -> None:
    rng = random.Random(0)
    samples = [rng.randrange(MIN_TS_MS, MAX_TS_MS) for _ in range(2000)]
    samples += [CFG.start_ms, CFG.start_ms - 1, CFG.end_ms - 1, MIN_TS_MS, MAX_TS_MS, 951_782_400_000]
    assert [iso_ts(t) for t in samples] == [format_ts(t) for t in samples]


def test_generate_events_yields_contract_dicts(run: Run) -> None:
    events = list(generate_events(CFG))
    assert [codec.dumps_line(e) for e in events] == run.lines
    assert all(e["ts"].endswith("Z") for e in events[:100])


def test_event_ids_are_unique_except_byte_identical_duplicates(run: Run) -> None:
    first: dict[str, bytes] = {}
    repeats = 0
    for line, ev in zip(run.lines, run.parsed):
        assert isinstance(ev, Event)
        if ev.event_id in first:
            assert first[ev.event_id] == line  # a redelivery: same id, same payload
            repeats += 1
        else:
            first[ev.event_id] = line
    assert repeats == run.stats.duplicates
    assert Counter(ev.user_id for ev in run.parsed if isinstance(ev, Event)).keys() <= {t["user_id"] for t in run.truth}


@pytest.mark.parametrize(("late", "dup"), [(0.02, 0.01), (0.06, 0.03)])
def test_late_and_duplicate_shares_are_roughly_honoured(late: float, dup: float) -> None:
    stats = GenerationStats()
    lines = list(generate_lines(GeneratorConfig(users=150, days=4, seed=3, late_share=late, duplicate_share=dup), stats))
    assert stats.events > 5000
    assert stats.late == pytest.approx(late * stats.events, rel=0.25)
    assert stats.duplicates == pytest.approx(dup * stats.events, rel=0.25)
    assert 0.1 * stats.late < stats.very_late < 0.4 * stats.late
    assert len(lines) - len(set(lines)) == stats.duplicates


def test_delivery_order_is_event_time_except_planted_late_events(run: Run) -> None:
    newest, seen = 0, set()
    out_of_order = too_late = 0
    for ev in run.parsed:
        assert isinstance(ev, Event)
        if ev.event_id in seen:  # a duplicate: redelivered within 5 minutes of its event time
            assert ev.ts_ms <= newest and newest - ev.ts_ms <= 5 * MIN + 30 * MIN
            continue
        seen.add(ev.event_id)
        if ev.ts_ms < newest:
            out_of_order += 1
            lag = newest - ev.ts_ms
            assert lag <= 30 * MIN
            if lag > CFG.allowed_lateness_s * 1000:
                too_late += 1
                assert ev.type not in KEY_TYPES  # journeys never hinge on a dropped event
        newest = max(newest, ev.ts_ms)
    # every out-of-order event is a planted late one, and most planted ones do show
    assert 0.7 * run.stats.late <= out_of_order <= run.stats.late
    assert 0.7 * run.stats.very_late <= too_late <= run.stats.very_late
    assert sum(t["late"] for t in run.truth) == run.stats.late


def test_generation_streams_instead_of_holding_the_trace() -> None:
    cfg = GeneratorConfig(users=100, days=20, seed=1)
    tracemalloc.start()
    try:
        size = sum(len(line) for line in generate_lines(cfg))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > 3_000_000
    assert peak < size / 3  # a list of the event dicts alone would be several times the text


def test_invalid_lines_are_rejected_and_counted() -> None:
    stats = GenerationStats(collect_truth=True)
    lines = list(generate_lines(GeneratorConfig(users=60, days=3, seed=4, invalid_share=0.03), stats))
    rejected = [r for r in map(parse_event, lines) if isinstance(r, Rejection)]
    assert len(rejected) == stats.invalid == sum(t["invalid"] for t in stats.truth_records())
    assert stats.invalid == pytest.approx(0.03 * stats.events, rel=0.3)
    assert len({r.reason for r in rejected}) >= 5
    assert len(lines) == stats.lines == stats.events + stats.duplicates + stats.invalid


def test_fields_are_realistic(run: Run) -> None:
    events = [ev for evs in run.by_user.values() for ev in evs]
    assert {e.device for e in events} == {"ios", "android", "desktop"}
    assert {e.channel for e in events} == ACCESS_CHANNELS
    for e in events:
        if e.type in ("add_to_cart", "checkout_start", "payment_submit", "payment_success", "payment_fail"):
            assert e.amount is not None and e.amount > 0 and e.currency in ("CNY", "USD", "EUR")
        if e.type in MESSAGE_TYPES:
            assert e.message_channel in MESSAGE_CHANNELS and e.props["action_id"]
        if e.type == "unsubscribe":
            assert e.message_channel in MESSAGE_CHANNELS
    with_tz = [t for t in run.truth if t["tz"]]
    assert 0.75 * len(run.truth) < len(with_tz) < len(run.truth)
    for t in run.truth:
        assert {e.tz for e in run.by_user[t["user_id"]]} == {t["tz"]}
    types = Counter(e.type for e in events)
    assert types["page_view"] > types["add_to_cart"] > types["payment_success"] > 0
    assert all(types[name] > 0 for name in KEY_TYPES | MESSAGE_TYPES | {"search", "click", "coupon_claim"})


def test_sessions_are_separated_by_more_than_the_inactivity_gap(run: Run) -> None:
    sessions = active_days = 0
    for evs in run.by_user.values():
        for a, b in zip(evs, evs[1:]):
            gap = b.ts_ms - a.ts_ms
            assert gap <= 10 * MIN or gap >= 40 * MIN  # inside a session, or between two
            sessions += gap >= 40 * MIN
        sessions += 1
        active_days += len({e.ts_ms // DAY for e in evs})
    assert 1.3 < sessions / active_days < 3.5
    per_user_day = sum(map(len, run.by_user.values())) / len(run.truth) / CFG.days
    assert 4 < per_user_day < 20


# -- personas and ground truth -------------------------------------------------------------------


def test_every_persona_has_a_behaviour_model() -> None:
    assert tuple(PERSONA_MODELS) == PERSONAS


def test_persona_mix_is_exact_and_complete(run: Run) -> None:
    assert all(n >= 1 for n in persona_counts(200).values())
    assert sum(persona_counts(200).values()) == 200
    assert Counter(t["persona"] for t in run.truth) == Counter(run.stats.personas)
    assert set(run.stats.personas) == set(PERSONAS)
    assert [t["user_id"] for t in run.truth] == sorted(t["user_id"] for t in run.truth)
    assert len(run.truth) == CFG.users


def test_every_journey_in_the_truth_is_in_the_events(run: Run) -> None:
    check_every_journey_in_the_truth_is_in_the_events(run)


def check_every_journey_in_the_truth_is_in_the_events(run: Run) -> None:
    end = run.cfg.end_ms
    for t in run.truth:
        evs = run.by_user[t["user_id"]]
        assert t["events"] == len(evs)
        for j in t["journeys"]:
            at = ms(j["at"])
            here = [e for e in evs if e.ts_ms == at]
            name = j["journey"]
            if "due" in j:
                assert ms(j["due"]) <= end
            if name == "cart_abandoned":
                assert here[0].type == "add_to_cart"
                assert not between(evs, at, at + 30 * MIN)  # nothing at all, let alone a checkout
            elif name == "payment_stalled":
                assert here[0].type in ("checkout_start", "payment_submit", "payment_fail")
                assert not between(evs, at, at + 15 * MIN)
                assert between(evs, at - 15 * MIN, at, {"checkout_start"}) or here[0].type == "checkout_start"
            elif name == "kyc_stalled":  # from the last step, as the trigger rule reads it
                assert here[0].type in ("kyc_start", "kyc_submit")
                assert not between(evs, at, at + DAY, {"kyc_start", "kyc_submit", "kyc_approved", "kyc_rejected"})
            elif name in ("kyc_completed", "kyc_rejected"):
                assert here[0].type == ("kyc_approved" if name == "kyc_completed" else "kyc_rejected")
                assert between(evs, at - DAY, at, {"kyc_start"})
            elif name == "purchase":
                assert here[0].type == "payment_success" and here[0].amount == j["amount"]
            elif name == "unsubscribe":
                assert here[0].type == "unsubscribe" and here[0].message_channel == j["channel"]
                later = [e for e in evs if e.ts_ms > at and e.type in MESSAGE_TYPES]
                assert all(e.message_channel != j["channel"] for e in later)
            elif name == "churn":
                assert at == ms(j["last_active"]) and not between(evs, at, at + 7 * DAY)
                assert at + 7 * DAY <= end and active_days_before(evs, at) >= 2
            else:
                pytest.fail(f"unknown journey {name}")


def test_the_truth_lists_every_journey_the_events_contain(run: Run) -> None:
    """An independent pass over the raw events finds exactly the journeys of the truth."""
    check_the_truth_lists_every_journey_the_events_contain(run)


def check_the_truth_lists_every_journey_the_events_contain(run: Run) -> None:
    end = run.cfg.end_ms
    for t in run.truth:
        evs = run.by_user[t["user_id"]]
        found: Counter[str] = Counter()
        for e in evs:
            if e.type == "add_to_cart" and e.ts_ms + 30 * MIN <= end:
                found["cart_abandoned"] += not between(evs, e.ts_ms, e.ts_ms + 30 * MIN, {"add_to_cart", "checkout_start", "payment_success"})
            if e.type in ("checkout_start", "payment_submit", "payment_fail") and e.ts_ms + 15 * MIN <= end:
                steps = {"checkout_start", "payment_submit", "payment_fail", "payment_success"}
                found["payment_stalled"] += not between(evs, e.ts_ms, e.ts_ms + 15 * MIN, steps)
            found["purchase"] += e.type == "payment_success"
            found["unsubscribe"] += e.type == "unsubscribe"
            found["kyc_completed"] += e.type == "kyc_approved"
            found["kyc_rejected"] += e.type == "kyc_rejected"
            if e.type in ("kyc_start", "kyc_submit") and e.ts_ms + DAY <= end:
                steps = {"kyc_start", "kyc_submit", "kyc_approved", "kyc_rejected"}
                found["kyc_stalled"] += not between(evs, e.ts_ms, e.ts_ms + DAY, steps)
            if e.ts_ms + 7 * DAY <= end and not between(evs, e.ts_ms, e.ts_ms + 7 * DAY):
                found["churn"] += active_days_before(evs, e.ts_ms) >= 2
        listed = Counter(j["journey"] for j in t["journeys"])
        assert +found == listed, t["user_id"]


def active_days_before(evs: list, at: int) -> int:
    """Distinct UTC days with events in the 30 days up to ``at`` (the churn rule's window)."""
    day = at // DAY
    return len({e.ts_ms // DAY for e in evs if day - 30 < e.ts_ms // DAY <= day and e.ts_ms <= at})


def journeys_of(t: dict[str, Any]) -> set[str]:
    return {j["journey"] for j in t["journeys"]}


@pytest.mark.parametrize(
    ("persona", "must", "must_not"),
    [
        ("explorer", set(), {"purchase", "cart_abandoned", "payment_stalled", "kyc_stalled", "unsubscribe"}),
        ("coupon_hunter", {"purchase"}, {"cart_abandoned", "payment_stalled"}),
        ("buyer_complete", {"purchase"}, {"cart_abandoned", "payment_stalled"}),
        ("cart_abandoner", {"cart_abandoned"}, {"payment_stalled"}),
        ("payment_failer", {"payment_stalled"}, {"cart_abandoned"}),
        ("kyc_finisher", {"kyc_completed"}, {"kyc_stalled", "kyc_rejected"}),
        ("kyc_staller", {"kyc_stalled"}, {"kyc_completed", "kyc_rejected"}),
        ("kyc_rejected", {"kyc_rejected"}, {"kyc_stalled", "kyc_completed"}),
        ("churner", {"churn"}, set()),
        ("unsubscriber", {"unsubscribe"}, set()),
        ("night_owl", set(), {"cart_abandoned", "payment_stalled", "kyc_stalled"}),
    ],
)
def test_each_persona_plants_its_journeys(run: Run, persona: str, must: set[str], must_not: set[str]) -> None:
    users = [t for t in run.truth if t["persona"] == persona]
    assert users
    for t in users:
        assert must <= journeys_of(t), (t["user_id"], t["journeys"])
        assert not must_not & journeys_of(t), (t["user_id"], t["journeys"])
    non_churners = [t for t in run.truth if t["persona"] != "churner"]
    assert sum("churn" in journeys_of(t) for t in non_churners) < 0.05 * len(non_churners)


def test_explorers_browse_long_and_never_buy(run: Run) -> None:
    sizes: dict[str, list[int]] = defaultdict(list)
    for t in run.truth:
        evs = run.by_user[t["user_id"]]
        sizes[t["persona"]].append(len(evs))
        if t["persona"] == "explorer":
            assert not {e.type for e in evs} & {"add_to_cart", "checkout_start", "payment_success", "kyc_start"}
    mean = {p: sum(v) / len(v) for p, v in sizes.items()}
    assert mean["explorer"] > mean["buyer_complete"]


def test_coupon_hunters_live_on_coupons(run: Run) -> None:
    share: dict[str, list[float]] = defaultdict(list)
    for t in run.truth:
        evs = run.by_user[t["user_id"]]
        share[t["persona"]].append(sum(e.type.startswith("coupon_") for e in evs) / len(evs))
        if t["persona"] == "coupon_hunter":
            assert any(e.type == "coupon_redeem" for e in evs)
    hunters = sum(share.pop("coupon_hunter")) / 25
    assert all(hunters > 2 * sum(v) / len(v) for v in share.values())


def test_churners_are_active_on_two_days_then_silent_for_a_week(run: Run) -> None:
    for t in run.truth:
        if t["persona"] == "churner":
            evs = run.by_user[t["user_id"]]
            assert len({e.ts_ms // DAY for e in evs}) >= 2
            assert CFG.end_ms - evs[-1].ts_ms >= 7 * DAY
            (churn,) = [j for j in t["journeys"] if j["journey"] == "churn"]
            assert churn["active_days"] >= 2


def test_night_owls_are_active_from_20_to_24_in_their_own_zone(run: Run) -> None:
    owls = [t for t in run.truth if t["persona"] == "night_owl"]
    total = at_night = 0
    for t in owls:
        assert t["tz"] in ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "America/Sao_Paulo")
        tz = zone(t["tz"])
        evs = run.by_user[t["user_id"]]
        night = sum(datetime.fromtimestamp(e.ts_ms / 1000, tz).hour >= 20 for e in evs)
        assert night >= 0.6 * len(evs), t["user_id"]  # the odd daytime glance of a quiet user
        total, at_night = total + len(evs), at_night + night
    assert at_night >= 0.85 * total
    others = [e for t in run.truth if t["persona"] == "buyer_complete" and t["tz"] for e in run.by_user[t["user_id"]]]
    night = sum(datetime.fromtimestamp(e.ts_ms / 1000, zone(e.tz or "UTC")).hour >= 20 for e in others)
    assert night < 0.4 * len(others)


def test_kyc_and_payment_timings_follow_the_rules(run: Run) -> None:
    for t in run.truth:
        evs = run.by_user[t["user_id"]]
        if t["persona"] == "kyc_finisher":
            start = next(e for e in evs if e.type == "kyc_start").ts_ms
            done = next(e for e in evs if e.type == "kyc_approved").ts_ms
            assert 0 < done - start < DAY
        if t["persona"] == "buyer_complete":  # checkout to success well inside 15 minutes
            for e in evs:
                if e.type == "checkout_start":
                    assert between(evs, e.ts_ms, e.ts_ms + 10 * MIN, {"payment_success"})


# -- configuration and CLI --------------------------------------------------------------------


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(users=0)
    with pytest.raises(ValueError):
        GeneratorConfig(late_share=1.5)
    with pytest.raises(ValueError):
        GeneratorConfig(start="2026-01-05T00:00:00")
    with pytest.raises(ValueError):
        GeneratorConfig(mix=(("wizard", 1.0),))


def test_start_moves_the_window() -> None:
    cfg = GeneratorConfig(users=20, days=2, seed=1, start="2026-03-01T00:00:00+08:00")
    times = [ms(e["ts"]) for e in generate_events(cfg)]
    assert datetime(2026, 2, 28, 16, tzinfo=timezone.utc).timestamp() * 1000 <= min(times)
    assert max(times) < cfg.end_ms


def test_cli_writes_stream_and_truth(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out, truth = tmp_path / "g.jsonl", tmp_path / "t.jsonl"
    argv = ["generate", "--users", "40", "--days", "2", "--seed", "9", "--out", str(out), "--truth", str(truth)]
    assert main(argv) == 0
    cfg = GeneratorConfig(users=40, days=2, seed=9)
    assert out.read_bytes() == b"".join(generate_lines(cfg))
    assert truth.read_bytes() == b"".join(codec.dumps_line(t) for t in generate_truth(cfg))
    err = capsys.readouterr().err
    assert "duplicates" in err and "late" in err and "explorer" in err
    assert main(argv[:-2] + ["--invalid-share", "0.05", "--late-share", "0.1", "--duplicate-share", "0"]) == 0
    assert main(["generate", "--users", "4", "--days", "1", "--seed", "1", "--out", "x", "--start", "soon"]) == 2


def test_cli_writes_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["generate", "--users", "5", "--days", "1", "--seed", "2", "--out", "-"]) == 0
    captured = capsysbinary.readouterr()
    assert captured.out == b"".join(generate_lines(GeneratorConfig(users=5, days=1, seed=2)))
    assert b"events" in captured.err


# -- real-world delivery (retried uploads, offline flushes, cross-device sessions, dumps) ------

REAL = GeneratorConfig(
    users=150, days=9, seed=21, late_share=0.03, duplicate_share=0.02, invalid_share=0.01,
    retry_share=0.03, flush_share=0.08, flush_hours=(2, 12), cross_device_share=0.08,
)  # fmt: skip
MODES = {
    "retry": {"retry_share": 0.05},
    "flush": {"flush_share": 0.1},
    "cross_device": {"cross_device_share": 0.1},
    "dump": {"order": "user"},
    "all": {"retry_share": 0.05, "flush_share": 0.1, "cross_device_share": 0.1, "order": "user"},
}
# The default stream, taken before real-world delivery existed: it must never move.
DEFAULT_DIGEST = "024af05e92b051180c5142e3802b361ddb3bed8fa58d7d2dc7897b8e670682c1"  # users=40 days=2 seed=9


@pytest.fixture(scope="module")
def real() -> Run:
    return Run(REAL)


def test_real_world_delivery_is_off_by_default() -> None:
    cfg = GeneratorConfig(users=40, days=2, seed=9)
    assert (cfg.retry_share, cfg.flush_share, cfg.cross_device_share, cfg.order) == (0.0, 0.0, 0.0, "time")
    stats = GenerationStats(collect_truth=True)
    assert hashlib.sha256(b"".join(generate_lines(cfg, stats))).hexdigest() == DEFAULT_DIGEST
    assert not {"retries", "flushes", "cross_device"} & set(stats.truth_records()[0])
    assert "real-world" not in stats.summary()
    explicit = dataclasses.replace(cfg, retry_share=0, flush_share=0, cross_device_share=0, order="time")
    assert b"".join(generate_lines(explicit)) == b"".join(generate_lines(cfg))


@pytest.mark.parametrize("mode", sorted(MODES))
def test_each_real_world_mode_is_deterministic_and_does_something(mode: str) -> None:
    cfg = GeneratorConfig(users=40, days=3, seed=5, **MODES[mode])
    first = b"".join(generate_lines(cfg))
    assert first == b"".join(generate_lines(cfg))
    assert list(generate_truth(cfg)) == list(generate_truth(cfg))
    assert first != b"".join(generate_lines(GeneratorConfig(users=40, days=3, seed=5)))
    stats = GenerationStats(collect_truth=True)
    assert b"".join(generate_lines(cfg, stats)) == first
    assert stats.truth_records() == list(generate_truth(cfg))  # collected while generating = the API's
    assert (stats.retries > 0) == ("retry_share" in MODES[mode])
    assert (stats.flushes > 0 < stats.flushed) == ("flush_share" in MODES[mode])
    assert (stats.cross_device > 0) == ("cross_device_share" in MODES[mode])
    assert "real-world delivery" in stats.summary() and f"order: {cfg.order}" in stats.summary()


def test_retry_and_flush_never_change_the_events() -> None:
    base = GeneratorConfig(users=40, days=3, seed=2, late_share=0.0, duplicate_share=0.0)
    noisy = dataclasses.replace(base, retry_share=0.1, flush_share=0.2)
    stats = GenerationStats(collect_truth=True)
    lines = list(generate_lines(noisy, stats))
    retried = {r["event_id"] for t in stats.truth_records() for r in t["retries"]}
    assert sorted(generate_lines(base)) == sorted(line for line in lines if codec.loads(line)["event_id"] not in retried)
    assert [{k: v for k, v in t.items() if k not in ("retries", "flushes")} for t in stats.truth_records()] == list(generate_truth(base))


def test_a_retried_upload_has_a_new_id_and_the_same_event_later(real: Run) -> None:
    where: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, (line, ev) in enumerate(zip(real.lines, real.parsed)):
        if isinstance(ev, Event):
            where.setdefault(ev.event_id, (i, codec.loads(line)))
    copies = Counter(real.lines)
    retries = [(t["user_id"], r) for t in real.truth for r in t["retries"]]
    assert len(retries) == real.stats.retries == real.stats.lines - real.stats.events - real.stats.duplicates - real.stats.invalid
    assert real.stats.retries == pytest.approx(REAL.retry_share * real.stats.events, rel=0.25)
    for uid, r in retries:
        (i, copy), (j, original) = where[r["event_id"]], where[r["of"]]
        assert r["event_id"] != r["of"] and copy["user_id"] == uid
        assert {k: v for k, v in copy.items() if k != "event_id"} == {k: v for k, v in original.items() if k != "event_id"}
        assert j < i and copies[real.lines[i]] == 1  # after the original, once
        assert MIN <= ms(r["delivered"]) - ms(copy["ts"]) <= 2 * DAY


def test_an_offline_flush_is_one_later_burst_in_original_order() -> None:
    cfg = GeneratorConfig(users=150, days=5, seed=21, late_share=0.0, duplicate_share=0.0, flush_share=0.1, flush_hours=(2, 12))
    stats = GenerationStats(collect_truth=True)
    lines = list(generate_lines(cfg, stats))
    evs = [codec.loads(line) for line in lines]
    pos = {e["event_id"]: i for i, e in enumerate(evs)}
    bursts = [f for t in stats.truth_records() for f in t["flushes"]]
    assert len(bursts) == stats.flushes > 10 and sum(len(f["event_ids"]) for f in bursts) == stats.flushed
    held = {i for f in bursts for i in f["event_ids"]}
    live = [(i, ms(e["ts"])) for i, e in enumerate(evs) if e["event_id"] not in held]
    for f in bursts:
        idx = [pos[i] for i in f["event_ids"]]
        assert idx == list(range(idx[0], idx[0] + len(idx)))  # contiguous, in original order
        members = [evs[i] for i in idx]
        assert [ms(e["ts"]) for e in members] == sorted(ms(e["ts"]) for e in members)
        assert {e["device"] for e in members} == {f["device"]} <= {"ios", "android"}
        delivered = ms(f["delivered"])
        assert 2 * HOUR <= f["delay_s"] * 1000 <= 12 * HOUR and delivered - ms(members[0]["ts"]) >= 2 * HOUR
        # later than real time: every other event comes in real time around the burst
        assert all(ts < delivered for i, ts in live if i < idx[0]) and all(ts >= delivered for i, ts in live if i > idx[-1])
        # the phone was offline: all its events before the burst arrived ride in it
        uid = members[0]["user_id"]
        offline = [e["event_id"] for e in evs if e["user_id"] == uid and e["device"] == f["device"] and ms(members[0]["ts"]) <= ms(e["ts"]) < delivered]
        assert offline == f["event_ids"]


def test_a_cross_device_session_comes_from_two_sources(real: Run) -> None:
    switches = [(t["user_id"], s) for t in real.truth for s in t["cross_device"]]
    assert len(switches) == real.stats.cross_device > 10
    assert {s["to"] for _, s in switches} >= {"desktop/web", "ios/app", "android/app"}
    for uid, s in switches:
        evs = sorted(real.by_user[uid], key=lambda e: e.event_id)  # ids follow the true time
        k = next(i for i, e in enumerate(evs) if e.event_id == s["first_event_id"])
        before, after = evs[k - 1], evs[k : k + s["events"]]
        assert f"{before.device}/{before.channel}" == s["from"] != s["to"]
        assert {f"{e.device}/{e.channel}" for e in after} == {s["to"]} and after[0].type in ("app_open", "page_view")
        assert 1000 <= abs(s["skew_ms"]) <= 5000
        assert all(abs(a.ts_ms - b.ts_ms) <= 10 * MIN + 5000 for a, b in zip(evs[k - 1 : k + s["events"]], evs[k : k + s["events"]]))


def test_the_truth_holds_under_real_world_delivery(real: Run) -> None:
    """Journeys and deadlines follow the events' own ts, whatever their delivery."""
    check_every_journey_in_the_truth_is_in_the_events(real)
    check_the_truth_lists_every_journey_the_events_contain(real)
    assert list(generate_truth(REAL)) == real.truth
    assert sum(isinstance(ev, Rejection) for ev in real.parsed) == real.stats.invalid
    assert sum(t["late"] for t in real.truth) == real.stats.late > 0 and real.stats.duplicates > 0


def test_a_dump_is_grouped_by_user_and_holds_exactly_the_time_ordered_lines(real: Run) -> None:
    dump = list(generate_lines(dataclasses.replace(REAL, order="user")))
    assert sorted(dump) == sorted(real.lines)
    users = [ev.user_id for ev in map(parse_event, dump) if isinstance(ev, Event)]
    assert users == sorted(users) and len(set(users)) == REAL.users
    by_user: dict[str, list[bytes]] = defaultdict(list)
    for line, ev in zip(real.lines, real.parsed):
        if isinstance(ev, Event):
            by_user[ev.user_id].append(line)
    assert [line for line in dump if isinstance(parse_event(line), Event)] == [line for uid in sorted(by_user) for line in by_user[uid]]


def test_cli_real_world_flags(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out, truth = tmp_path / "g.jsonl", tmp_path / "t.jsonl"
    flags = ["--retry-share", "0.05", "--flush-share", "0.1", "--flush-hours", "2-6", "--cross-device-share", "0.1", "--order", "user"]
    argv = ["generate", "--users", "30", "--days", "2", "--seed", "9", "--out", str(out), "--truth", str(truth)]
    assert main(argv + flags) == 0
    cfg = GeneratorConfig(users=30, days=2, seed=9, retry_share=0.05, flush_share=0.1, flush_hours=(2, 6), cross_device_share=0.1, order="user")
    assert out.read_bytes() == b"".join(generate_lines(cfg))
    assert truth.read_bytes() == b"".join(codec.dumps_line(t) for t in generate_truth(cfg))
    assert "real-world delivery" in capsys.readouterr().err
    for bad in (["--flush-hours", "6-2"], ["--flush-hours", "soon"], ["--order", "random"], ["--retry-share", "2"]):
        with pytest.raises(SystemExit):
            main(argv + bad)
    for kwargs in ({"flush_hours": (0, 1)}, {"order": "random"}, {"cross_device_share": -0.1}):
        with pytest.raises(ValueError):
            GeneratorConfig(**kwargs)  # type: ignore[arg-type]
