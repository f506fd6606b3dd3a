"""The event contract: every valid form of ts, every rejection reason."""

from __future__ import annotations

import json

import pytest

from intentstream.stream import codec
from intentstream.stream.contract.events import (
    CANONICAL_TYPES,
    MAX_EVENT_BYTES,
    REASONS,
    Event,
    Rejection,
    format_ts,
    parse_event,
    parse_ts,
)

BASE = {"event_id": "e1", "user_id": "u1", "ts": "2026-01-05T10:00:00Z", "type": "page_view"}
T0 = 1767607200000  # 2026-01-05T10:00:00Z


def ev(**over):
    obj = {**BASE, **over}
    return parse_event(json.dumps({k: v for k, v in obj.items() if v is not ...}).encode())


@pytest.mark.parametrize(
    "ts",
    [
        "2026-01-05T10:00:00Z",
        "2026-01-05T10:00:00.000Z",
        "2026-01-05T10:00:00+00:00",
        "2026-01-05T18:00:00+08:00",
        "2026-01-05T05:00:00-05:00",
        "2026-01-05T15:30:00+05:30",
        "2026-01-05T10:00:00.000000+00:00",
        "2026-01-05 10:00:00Z",
        T0,
    ],
)
def test_every_valid_ts_form_gives_the_same_instant(ts):
    result = ev(ts=ts)
    assert isinstance(result, Event), result
    assert result.ts_ms == T0


def test_sub_second_precision_is_kept_to_the_millisecond():
    assert ev(ts="2026-01-05T10:00:00.123456Z").ts_ms == T0 + 123
    assert ev(ts=T0 + 7).ts_ms == T0 + 7


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not_json"),
        (b"\xff\xfe{}", "not_json"),
        (b"", "not_json"),
        (b'{"event_id": "e1",', "not_json"),
        (b"[1,2]", "not_object"),
        (b'"a string"', "not_object"),
        (b"null", "not_object"),
        (b"x" * (MAX_EVENT_BYTES + 1), "too_large"),
    ],
)
def test_structural_rejections(raw, reason):
    result = parse_event(raw)
    assert isinstance(result, Rejection) and result.reason == reason
    assert not result


@pytest.mark.parametrize("field", ["event_id", "user_id", "ts", "type"])
def test_missing_or_null_required_field(field):
    assert ev(**{field: ...}).reason == "missing_field"
    assert ev(**{field: None}).reason == "missing_field"
    assert ev(**{field: ...}).detail == field


@pytest.mark.parametrize("field", ["event_id", "user_id", "type"])
@pytest.mark.parametrize("value", [1, 1.5, True, [], {}, ""])
def test_ill_typed_or_empty_required_string(field, value):
    assert ev(**{field: value}).reason == "bad_field_type"


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("yesterday", "bad_ts"),
        ("2026-01-05T10:00:00", "bad_ts"),  # no offset
        ("2026-13-05T10:00:00Z", "bad_ts"),
        (1767607200000.0, "bad_ts"),  # epoch must be an integer
        (True, "bad_ts"),
        ([T0], "bad_ts"),
        ({"ms": T0}, "bad_ts"),
        ("1999-12-31T23:59:59Z", "ts_out_of_range"),
        ("2101-01-01T00:00:00Z", "ts_out_of_range"),
        (1767607200, "ts_out_of_range"),  # seconds, not milliseconds: year 1970
        (-1, "ts_out_of_range"),
        (10**18, "ts_out_of_range"),
    ],
)
def test_bad_ts(ts, reason):
    assert ev(ts=ts).reason == reason


def test_range_bounds_are_inclusive_years_2000_to_2100():
    assert isinstance(ev(ts="2000-01-01T00:00:00Z"), Event)
    assert isinstance(ev(ts="2100-12-31T23:59:59.999Z"), Event)


@pytest.mark.parametrize("amount", [-1, -0.01, "12", True, [1], {"v": 1}])
def test_bad_amount(amount):
    assert parse_event(codec.dumps({**BASE, "amount": amount})).reason == "bad_amount"


def test_non_finite_numbers_are_not_json():
    # orjson refuses 1e999 / NaN literals, so they never reach the amount check
    raw = b'{"event_id":"e1","user_id":"u1","ts":1767607200000,"type":"payment_success","amount":1e999}'
    assert parse_event(raw).reason == "not_json"


def test_valid_optional_fields_are_kept():
    result = ev(
        page="/cart", category="shoes", item_id="sku1", amount=0, currency="CNY", device="ios",
        channel="mini_program", tz="Asia/Shanghai", props={"x": 1},
    )
    assert isinstance(result, Event)
    assert (result.amount, result.channel, result.tz, result.props) == (0.0, "mini_program", "Asia/Shanghai", {"x": 1})


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"channel": "tv"}, "bad_channel"),
        ({"channel": 3}, "bad_channel"),
        ({"tz": "Mars/Olympus"}, "bad_tz"),
        ({"tz": "../../etc/passwd"}, "bad_tz"),
        ({"tz": 8}, "bad_tz"),
        ({"page": 5}, "bad_field_type"),
        ({"device": ["ios"]}, "bad_field_type"),
        ({"props": [1]}, "bad_field_type"),
        ({"type": "unsubscribe", "props": {"channel": "fax"}}, "bad_message_channel"),
        ({"type": "message_open", "props": {"channel": 1}}, "bad_message_channel"),
    ],
)
def test_bad_optional_fields(over, reason):
    assert ev(**over).reason == reason


def test_every_reason_code_is_documented_and_exercised():
    # the parametrized tests above cover each of these; keep REASONS the single list
    assert set(REASONS) == {
        "too_large", "not_json", "not_object", "missing_field", "bad_field_type", "bad_ts",
        "ts_out_of_range", "bad_amount", "bad_channel", "bad_tz", "bad_message_channel",
        "ts_in_future",  # the engine's, against the partition's progress (tests/stream/test_clock_skew.py)
    }


def test_unknown_types_are_accepted_as_generic_interactions():
    result = ev(type="wishlist_add")
    assert isinstance(result, Event) and not result.is_canonical
    assert all(isinstance(ev(type=t), Event) and ev(type=t).is_canonical for t in CANONICAL_TYPES)


def test_message_channel_only_for_feedback_types():
    assert ev(type="unsubscribe", props={"channel": "sms"}).message_channel == "sms"
    assert ev(type="click", props={"channel": "sms"}).message_channel is None


def test_str_input_and_to_dict_round_trip():
    result = parse_event(json.dumps({**BASE, "ts": "2026-01-05T18:00:00.5+08:00", "amount": 3}))
    assert isinstance(result, Event)
    again = parse_event(codec.dumps(result.to_dict()))
    assert again == result
    assert result.to_dict()["ts"] == "2026-01-05T10:00:00.500Z"


def test_format_ts_is_the_inverse_of_parse_ts():
    for ms in (T0, T0 + 1, 946684800000, 4133980799999):
        assert parse_ts(format_ts(ms)) == ms


def test_schema_file_matches_the_contract():
    from intentstream.stream.settings import CONFIG_DIR

    schema = json.loads((CONFIG_DIR / "event.schema.json").read_text())
    assert schema["required"] == ["event_id", "user_id", "ts", "type"]
    assert set(schema["properties"]) == {
        "event_id", "user_id", "ts", "type", "page", "category", "item_id", "amount",
        "currency", "device", "channel", "tz", "props",
    }
    assert set(schema["properties"]["channel"]["enum"]) == {"app", "web", "mini_program"}
    assert set(schema["properties"]["type"]["examples"]) == CANONICAL_TYPES


def test_the_fast_path_for_common_utc_timestamps_agrees_with_the_full_parse():
    """Every string the fast path accepts gives the full parse's result, and every string
    it refuses is then parsed in full: random valid times in both common forms, each also
    with one character replaced."""
    import random
    from datetime import datetime, timezone

    from intentstream.stream.contract.events import MAX_TS_MS, MIN_TS_MS, Rejection, _epoch_ms, _utc_millis

    def full(v: str):
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            return None
        return _epoch_ms(dt) if dt.tzinfo is not None and dt.utcoffset() is not None else None

    rng = random.Random(7)
    accepted = 0
    for _ in range(20_000):
        t = rng.randrange(946684800000, 3786912000000)  # 2000-2090: inside the accepted range
        v = datetime.fromtimestamp(t / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + (f".{t % 1000:03d}Z" if rng.random() < 0.5 else "Z")
        for s in (v, v[: (j := rng.randrange(len(v)))] + rng.choice("0123456789:-TZ.+ x١") + v[j + 1 :]):
            fast = _utc_millis(s)
            if fast is not None:
                accepted += 1
                assert fast == full(s), s
            ts, want = parse_ts(s), full(s)
            if want is not None and not MIN_TS_MS <= want <= MAX_TS_MS:
                want = None  # out of the accepted range: refused either way
            assert (ts if not isinstance(ts, Rejection) else None) == want, s
    assert accepted > 20_000
