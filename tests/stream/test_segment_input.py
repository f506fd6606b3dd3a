"""The worker's Segment / RudderStack input (``[events] input_format = "segment"``,
stream/ingest/input_formats.py) through the offline runner, which drives the live
worker's engine: a cart journey in Segment calls yields ``cart_abandoned``; calls the
product has no use for are counted, not dead-lettered; the default format is untouched."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from intentstream.stream import codec
from intentstream.stream.cli import main
from intentstream.stream.contract.events import parse_event
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.ingest.input_formats import parse_segment, parser_for
from intentstream.stream.settings import EventSettings, Settings, SettingsError
from intentstream.stream.state.memory import MemorySessionStore

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "import" / "segment.jsonl"
SEGMENT = Settings.defaults(events=EventSettings.defaults(input_format="segment"))


def lines(path: Path = SAMPLE) -> list[tuple[int, bytes]]:
    return [(n, raw) for n, raw in enumerate(path.read_bytes().splitlines(), 1) if raw.strip()]


def run(settings: Settings, numbered: list[tuple[int, bytes]]) -> tuple[OfflineRunner, dict[str, list[dict]], list[dict]]:
    runner = OfflineRunner(settings, partitions=1)  # carol's and dave's later calls move alice's watermark
    runner.dead_letter = io.BytesIO()
    by_topic: dict[str, list[dict]] = {}
    for topic, payload in runner.run(numbered):
        by_topic.setdefault(topic, []).append(codec.loads(payload))
    dead = [codec.loads(line) for line in runner.dead_letter.getvalue().splitlines()]
    return runner, by_topic, dead


def audit(by_topic: dict[str, list[dict]]) -> list[tuple[str, str]]:
    return sorted((r["user_id"], r["trigger"]) for r in by_topic.get("actions.audit", []) if "trigger" in r)


def test_a_segment_cart_journey_yields_cart_abandoned_through_the_offline_runner():
    runner, by_topic, dead = run(SEGMENT, lines())
    decided = audit(by_topic)
    # alice added sku-9 and never checked out; anon-7 (no userId) likewise; bob paid
    assert ("alice", "cart_abandoned") in decided and ("anon-7", "cart_abandoned") in decided
    assert ("bob", "cart_abandoned") not in decided
    # identify and an unlisted track event are skipped, not dead-lettered
    assert runner.counters["skipped"] == 2
    assert dict(runner.invalid) == {"bad_ts": 1, "not_json": 1, "missing_field": 1}
    assert sorted(d["reason"] for d in dead) == ["bad_ts", "missing_field", "not_json"]
    assert runner.counters["events"] == 13


def test_the_worker_format_and_an_import_give_the_same_decisions(tmp_path):
    out = tmp_path / "events.jsonl"
    assert main(["import", str(SAMPLE), "--format", "segment", "--out", str(out)]) == 0
    _, direct, _ = run(SEGMENT, lines())
    _, imported, _ = run(Settings.defaults(), lines(out))
    assert audit(direct) == audit(imported) and audit(direct)


def test_the_engine_parses_with_the_configured_format_and_skips_without_dead_letters():
    eng = PartitionEngine(MemorySessionStore(), 0, SEGMENT)
    raw = [raw for _, raw in lines()]
    res = eng.process(list(enumerate(raw)))
    assert res.counters["skipped"] == 2 and res.counters["events"] == 13
    assert res.invalid == {"bad_ts": 1, "not_json": 1, "missing_field": 1}
    assert len(res.rejections) == 3  # the skipped ones never reach clickstream.dlq


def test_the_default_format_is_the_contract_parser_itself():
    assert parser_for("contract") is parse_event
    assert PartitionEngine(MemorySessionStore(), 0).parse is parse_event
    with pytest.raises(SettingsError, match="input_format"):
        parser_for("avro")


def test_parse_segment_maps_one_message():
    ev = parse_segment(
        b'{"type":"track","event":"order_completed","anonymousId":"a1","originalTimestamp":"2026-01-05T11:00:00+01:00",'
        b'"properties":{"total":30,"currency":"EUR","order_id":"o9"},"context":{"timezone":"Asia/Tokyo","device":{"type":"android"}}}'
    )
    assert (ev.user_id, ev.type, ev.amount, ev.currency, ev.tz, ev.device) == ("a1", "payment_success", 30.0, "EUR", "Asia/Tokyo", "android")
    assert ev.ts_ms == parse_event(b'{"event_id":"x","user_id":"u","ts":"2026-01-05T10:00:00Z","type":"click"}').ts_ms
    assert ev.props == {"order_id": "o9"}
    assert parse_segment(b"[1]").reason == "not_object"
    assert parse_segment(b'{"type":"track","event":"Product Added","userId":"u","timestamp":"2026-01-05T10:00:00Z","context":{"timezone":"Mars/Base"}}').reason == "bad_tz"
    # no messageId: the id is a hash of the message, the same every time
    raw = b'{"type":"page","userId":"u","timestamp":"2026-01-05T10:00:00Z"}'
    assert parse_segment(raw).event_id == parse_segment(raw).event_id != parse_segment(raw + b" ").event_id
