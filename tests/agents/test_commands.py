"""The operator's Kafka commands (agents/commands/): ``replay --to-kafka``, ``tail``, ``stats``.

Unit tests for the pure helpers (topic names, pacing with a fake clock, progress, the
metrics board, argument checks) run without servers; the integration tests run the
commands against the real broker, each on topics of its own (``make_topics``).
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import io
import sys
import time
import types
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from intentstream.agents import topic_names
from intentstream.agents.commands import pacing, replay, stats, tail
from intentstream.stream.cli.progress import Progress
from intentstream.agents.kafka import kafka_python_options
from intentstream.stream import codec
from intentstream.stream.contract.events import REASONS, Event, parse_event
from intentstream.stream.cli.offline_files import measured_lines
from intentstream.stream.engine.disorder import DisorderError
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig
from intentstream.stream.settings import load_settings

# --------------------------------------------------------------------------- helpers


def parser() -> argparse.ArgumentParser:
    """These subcommands alone (as intentstream.stream.cli builds them, without the other modules)."""
    p = argparse.ArgumentParser(prog="intentstream")
    p.add_argument("--config")
    sub = p.add_subparsers(dest="command", required=True)
    for command in (replay, tail, stats):
        command.register(sub)
    return p


def cli(*argv: str) -> int:
    args = parser().parse_args(list(argv))
    return int(args.func(args) or 0)


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- unit: names


def test_short_names_map_to_configured_topics():
    s = load_settings(env={"INTENTSTREAM_TOPICS__ACTIONS_PREFIX": "out.", "INTENTSTREAM_TOPICS__METRICS": "m"})
    got = {name: topic_names.resolve_topic(name, s) for name in topic_names.SHORT_NAMES}
    assert got == {
        "clickstream": "clickstream", "dlq": "clickstream.dlq", "segments": "segments",
        "audit": "actions.audit", "outcomes": "actions.outcomes", "metrics": "m", "alerts": "ops.alerts", "push": "out.push",
        "sms": "out.sms", "email": "out.email", "in_app": "out.in_app", "coupon": "out.coupon",
    }  # fmt: skip
    assert topic_names.resolve_topic("t.some.topic", s) == "t.some.topic"


# --------------------------------------------------------------------------- unit: pacing


def test_rate_limiter_never_releases_early():
    clock = FakeClock(5.0)
    limiter = pacing.RateLimiter(100, clock=clock)
    released = []
    for _ in range(500):
        clock.now += limiter.reserve()  # the caller sleeps what it is told
        released.append(clock.now)
    assert released[0] == 5.0
    for i, t in enumerate(released):
        assert t >= 5.0 + i / 100 - 1e-9
    assert released[-1] == pytest.approx(5.0 + 499 / 100)


def test_rate_limiter_bounded_burst_after_a_stall():
    clock = FakeClock()
    limiter = pacing.RateLimiter(1000, clock=clock, burst_s=0.1)
    for _ in range(10):
        clock.now += limiter.reserve()
    clock.now += 60.0  # the broker stalled for a minute
    free = 0
    while limiter.reserve() == 0.0:
        free += 1
    assert free <= 1000 * 0.1 + 1  # at most burst_s worth of events go at once


def test_rate_limiter_rejects_nonpositive_rate():
    with pytest.raises(ValueError):
        pacing.RateLimiter(0)


def test_event_time_pacer_speed_and_late_events():
    clock = FakeClock(0.0)
    pacer = pacing.EventTimePacer(60, clock=clock)  # one event-time minute per second
    assert pacer.delay(1_000_000) == 0.0
    assert pacer.delay(1_000_000 + 120_000) == pytest.approx(2.0)
    clock.now = 2.0
    assert pacer.delay(1_000_000 + 30_000) == 0.0  # a late event goes at once
    assert pacer.delay(1_000_000 + 180_000) == pytest.approx(1.0)


def test_event_time_pacer_reanchors_instead_of_bursting():
    clock = FakeClock(0.0)
    pacer = pacing.EventTimePacer(1, clock=clock, max_lag_s=1.0)
    pacer.delay(0)
    clock.now = 100.0  # 90 s behind the schedule of the next event
    assert pacer.delay(10_000) == 0.0
    assert pacer.delay(15_000) == pytest.approx(5.0)  # paced again from the new anchor


# --------------------------------------------------------------------------- unit: progress


def test_progress_draws_a_bar_on_a_tty_at_most_five_times_a_second_then_erases_it():
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(out, clock=clock, tty=True, label="replay: ", total_bytes=1000)
    for i in range(45):
        clock.now += 0.01
        progress.update(i, i * 10)
    assert out.getvalue() == ""  # nothing in the first half second: short commands draw nothing
    for i in range(45, 200):
        clock.now += 0.01
        progress.update(i, i * 5)
    progress.finish()
    text = out.getvalue()
    assert text.count("replay: ") == 8 + 1  # 0.5 s to 2 s, every 0.2 s; the last once more as rich stops
    assert "events/s" in text and "━" in text and "%" in text
    assert text.endswith("\x1b[2K")  # erased: the summary starts on a clean line


def test_progress_is_off_in_a_pipe_and_with_no_progress(monkeypatch):
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(out, clock=clock)  # a StringIO is no terminal, like a pipe or a CI log
    for i in range(250):
        clock.now += 0.1
        progress.update(i, 0)
    progress.finish()
    assert out.getvalue() == "" and progress.bar is None
    monkeypatch.setattr("intentstream.stream.cli.progress._SHOW", False)  # what --no-progress sets
    assert not Progress(out, tty=True).on


# --------------------------------------------------------------------------- unit: CLI modes


def test_replay_modes_are_exclusive_and_required(capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["replay", "f.jsonl"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        parser().parse_args(["replay", "f.jsonl", "--to-kafka", "--offline"])
    with pytest.raises(SystemExit):
        parser().parse_args(["replay", "f.jsonl", "--to-kafka", "--speed", "2", "--rate", "5"])
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--to-kafka", "--out", "d.jsonl"], "--out only applies with --offline"),
        (["--to-kafka", "--partitions", "3"], "--partitions only applies with --offline"),
        (["--offline", "--out", "d.jsonl", "--rate", "5"], "--rate only applies with --to-kafka"),
        (["--offline", "--out", "d.jsonl", "--topic", "t", "--no-dead-letter"], "--topic, --no-dead-letter only apply"),
    ],
)
def test_replay_refuses_options_of_the_other_mode(capsys, argv, complaint):
    with pytest.raises(SystemExit) as exc:
        cli("replay", "f.jsonl", *argv)
    assert exc.value.code == 2
    assert complaint in capsys.readouterr().err


def test_replay_offline_without_the_module_exits_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "intentstream.stream.cli.replay_offline", None)  # import fails
    assert cli("replay", "f.jsonl", "--offline", "--out", "d.jsonl") == 2
    assert "intentstream.stream.cli.replay_offline" in capsys.readouterr().err


def test_replay_offline_dispatches_to_stream_offline_replay(monkeypatch):
    seen = []
    fake = types.ModuleType("intentstream.stream.cli.replay_offline")
    fake.run = lambda args: seen.append(args) or 0
    monkeypatch.setitem(sys.modules, "intentstream.stream.cli.replay_offline", fake)
    assert cli("replay", "in.jsonl", "--offline", "--out", "d.jsonl", "--dead-letter", "x.jsonl", "--partitions", "4") == 0
    (args,) = seen
    assert (args.file, args.out, args.dead_letter, args.partitions) == ("in.jsonl", "d.jsonl", "x.jsonl", 4)


def test_replay_missing_file_exits_2(capsys):
    assert cli("replay", "/nonexistent/clicks.jsonl", "--to-kafka") == 2
    assert "cannot read" in capsys.readouterr().err


def _by_user(lines: list[bytes]) -> list[bytes]:
    """A dump grouped by user (``SELECT ... ORDER BY user_id``): the valid lines only."""
    events = [(parse_event(raw), raw) for raw in lines]
    return [raw for ev, raw in sorted(((ev, raw) for ev, raw in events if isinstance(ev, Event)), key=lambda p: p[0].user_id)]


def test_replay_holds_back_a_dump_until_the_disorder_verdict():
    """No Kafka needed: the reader stops before a single line of a dump is handed on."""
    lines = [line.rstrip(b"\n") for line in generate_lines(GeneratorConfig(users=60, days=2, seed=3))]
    settings = load_settings(env={})
    replayer = replay.Replayer(settings, replay.ReplayOptions(), producer=None, partitions=3, progress=None)
    handed_on = []
    with pytest.raises(DisorderError) as exc:
        for item in measured_lines(enumerate(_by_user(lines), 1), replayer.disorder):
            handed_on.append(item)
    assert handed_on == [] and exc.value.events == settings.events.late_share_min_events
    ordered = replay.Replayer(settings, replay.ReplayOptions(), producer=None, partitions=3, progress=None)
    assert [raw for _, raw, _ in measured_lines(enumerate(lines, 1), ordered.disorder)] == lines  # all, in file order
    allowed = replay.Replayer(settings, replay.ReplayOptions(allow_disorder=True), producer=None, partitions=3, progress=None)
    assert len(list(measured_lines(enumerate(_by_user(lines), 1), allowed.disorder))) == len(_by_user(lines))
    assert allowed.disorder.tripped is not None


def test_replay_takes_the_order_flags_in_both_modes():
    args = parser().parse_args(["replay", "f.jsonl", "--to-kafka", "--sort", "--allow-disorder"])
    assert args.sort and args.allow_disorder
    args = parser().parse_args(["replay", "f.jsonl", "--offline", "--out", "d.jsonl", "--sort"])
    assert args.sort and not args.allow_disorder


# --------------------------------------------------------------------------- unit: stats board


def metrics(worker: str, ts: str, counters: dict, partitions: dict | None = None) -> bytes:
    return codec.dumps({"ts": ts, "worker": worker, "counters": counters, "partitions": partitions or {}})


def test_board_sums_latest_counters_and_rates_from_the_last_two():
    board = stats.MetricsBoard()
    board.add(metrics("w1", "2026-01-05T10:00:10Z", {"events": 300, "dlq": 1}))
    board.add(metrics("w1", "2026-01-05T10:00:00Z", {"events": 100, "dlq": 1}))  # arrives late
    board.add(metrics("w2", "2026-01-05T10:00:05Z", {"events": 50, "odd": "text"}))
    board.add(b"not json")
    assert [s.worker for s in board.latest()] == ["w1", "w2"]
    assert board.rates("w1") == {"events": 20.0, "dlq": 0.0}
    assert board.rates("w2") == {}
    text = board.render(stats.parse_iso_ms("2026-01-05T10:00:20Z"))
    assert "4 records read, 1 unreadable" in text
    assert any(line.split() == ["events", "350", "20.0"] for line in text.splitlines())


def test_board_to_dict_has_the_figures_of_the_table():
    board = stats.MetricsBoard("ops.metrics")
    board.add(metrics("w1", "2026-01-05T10:00:00Z", {"events": 100}, {"1": {"watermark": "2026-01-05T09:59:59Z", "lag": 4}}))
    board.add(metrics("w1", "2026-01-05T10:00:10Z", {"events": 300}, {"1": {"watermark": "2026-01-05T10:00:09Z", "lag": 2}}))
    board.add(metrics("w2", "2026-01-05T10:00:05Z", {"events": 50, "dlq": 3}, {"0": {"lag": 1, "open_sessions": 9}}))
    d = codec.loads(codec.dumps(board.to_dict(stats.parse_iso_ms("2026-01-05T10:00:20Z"))))  # JSON all the way
    assert (d["topic"], d["at"], d["records"], d["unreadable"]) == ("ops.metrics", "2026-01-05T10:00:20.000Z", 3, 0)
    assert [(w["worker"], w["age_s"], w["partitions"], w["lag"]) for w in d["workers"]] == [("w1", 10.0, 1, 2), ("w2", 15.0, 1, 1)]
    assert d["counters"] == {"dlq": {"total": 3, "rate_per_s": None}, "events": {"total": 350, "rate_per_s": 20.0}}
    assert d["partitions"] == [
        {"partition": "0", "worker": "w2", "lag": 1, "open_sessions": 9},
        {"partition": "1", "worker": "w1", "watermark": "2026-01-05T10:00:09Z", "lag": 2},
    ]


def test_stats_takes_json():
    assert parser().parse_args(["stats", "--once", "--json"]).json
    assert not parser().parse_args(["stats", "--once"]).json


def test_board_counter_reset_is_not_a_negative_rate():
    board = stats.MetricsBoard()
    board.add(metrics("w", "2026-01-05T10:00:00Z", {"events": 500}))
    board.add(metrics("w", "2026-01-05T10:00:10Z", {"events": 20}))  # the worker restarted
    assert board.rates("w") == {}


def test_format_record_pretty_and_non_json():
    rec = types.SimpleNamespace(partition=0, offset=7, timestamp=1767607200000, key=None, value=b"\xffoops")
    assert tail.format_record(rec) == "0:7  2026-01-05T10:00:00.000Z  -  \\xffoops"
    coloured = tail.format_record(rec, colour=True)
    assert "\x1b[" in coloured


# --------------------------------------------------------------------------- integration


def _read_all(settings, topic: str) -> list:
    """Every record of a topic, per partition in offset order (independent of the commands)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_python_options(settings.kafka), group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, "timed out reading back"
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def _keep_forever(kafka_admin, *topics: str) -> None:
    """The generated events are from January 2026: keep them from time-based retention."""
    from kafka.admin import ConfigResource, ConfigResourceType

    kafka_admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs={"retention.ms": "-1"}) for t in topics])


def _write(path: Path, cfg: GeneratorConfig) -> list[bytes]:
    lines = list(generate_lines(cfg))
    path.write_bytes(b"".join(lines))
    return [line.rstrip(b"\n") for line in lines]


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_replay_lands_every_line_once_with_key_timestamp_and_order(stack, kafka_admin, make_topics, tmp_path):
    click, dlq = make_topics({"click": 3, "dlq": 1})
    _keep_forever(kafka_admin, click, dlq)
    settings = stack.settings(
        INTENTSTREAM_TOPICS__CLICKSTREAM=click, INTENTSTREAM_TOPICS__DEAD_LETTER=dlq, INTENTSTREAM_TOPICS__PARTITIONS="3"
    )
    path = tmp_path / "clicks.jsonl"
    lines = _write(path, GeneratorConfig(users=200, days=1, seed=11, invalid_share=0.01))
    parsed = [(raw, parse_event(raw)) for raw in lines]
    valid = [(raw, ev) for raw, ev in parsed if isinstance(ev, Event)]
    invalid = [(n, raw, ev) for n, (raw, ev) in enumerate(parsed, 1) if not isinstance(ev, Event)]
    assert invalid, "the generator should have planted invalid lines"

    check = importlib.util.find_spec("intentstream.stream.engine.partitioning") is not None  # the offline runner's partitioner
    done = replay.replay_to_kafka(settings, str(path), replay.ReplayOptions(partitions_check=check), progress_stream=io.StringIO())
    assert done.ok, done.summary()
    assert (done.lines, done.sent, done.acked) == (len(lines), len(valid), len(valid))
    assert sum(done.invalid.values()) == done.acked_dead_letter == len(invalid)
    assert done.misplaced == (0 if check else None)
    assert sum(done.by_partition.values()) == len(valid)

    records = _read_all(settings, click)
    assert Counter(r.value for r in records) == Counter(raw for raw, _ in valid)  # every line, exactly once
    by_value = {raw: ev for raw, ev in valid}
    per_user: dict[bytes, list[bytes]] = defaultdict(list)
    partition_of: dict[bytes, set[int]] = defaultdict(set)
    for r in records:
        ev = by_value[r.value]
        assert r.key == ev.user_id.encode()
        assert r.timestamp == ev.ts_ms
        per_user[r.key].append(r.value)
        partition_of[r.key].add(r.partition)
    assert all(len(ps) == 1 for ps in partition_of.values())
    file_order: dict[bytes, list[bytes]] = defaultdict(list)
    for raw, ev in valid:
        file_order[ev.user_id.encode()].append(raw)
    assert per_user == file_order  # each user's events in file order

    dead = [codec.loads(r.value) for r in _read_all(settings, dlq)]  # one partition: file order
    assert len(dead) == len(invalid)
    for d, (n, raw, rejection) in zip(dead, invalid):
        assert (d["reason"], d["source"]) == (rejection.reason, f"{path}:{n}")
        assert d["reason"] in REASONS
        original = base64.b64decode(d["raw"]) if d["raw_encoding"] == "base64" else d["raw"].encode()
        assert original == raw


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_replay_rate_cap_and_no_dead_letter(stack, make_topics, tmp_path, monkeypatch, capsys):
    (click,) = make_topics({"rate": 2})
    monkeypatch.setenv("INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", stack.kafka_bootstrap)
    path = tmp_path / "clicks.jsonl"
    lines = _write(path, GeneratorConfig(users=10, days=1, seed=2, invalid_share=0.05))[:60]
    path.write_bytes(b"\n".join(lines) + b"\n")
    n_invalid = sum(1 for raw in lines if not isinstance(parse_event(raw), Event))
    rate = 100.0
    started = time.monotonic()
    assert cli("replay", str(path), "--to-kafka", "--topic", click, "--rate", str(rate), "--no-dead-letter") == 0
    elapsed = time.monotonic() - started
    assert elapsed >= (len(lines) - 1) / rate * 0.95  # a coarse lower bound only
    out = capsys.readouterr().out
    assert f"lines      {len(lines)}" in out
    assert f"invalid    {n_invalid} skipped (--no-dead-letter)" in out


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_replay_of_a_dump_stops_before_sending_and_sort_sends_it_in_time_order(stack, kafka_admin, make_topics, tmp_path, monkeypatch, capsys):
    click, dlq = make_topics({"click": 3, "dlq": 1})
    _keep_forever(kafka_admin, click, dlq)
    monkeypatch.setenv("INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", stack.kafka_bootstrap)
    monkeypatch.setenv("INTENTSTREAM_TOPICS__DEAD_LETTER", dlq)
    path = tmp_path / "dump.jsonl"
    dump = _by_user(_write(path, GeneratorConfig(users=60, days=2, seed=3)))
    path.write_bytes(b"".join(raw + b"\n" for raw in dump))

    from intentstream.stream.cli import main

    assert main(["replay", str(path), "--to-kafka", "--topic", click]) == 2
    err = capsys.readouterr().err
    assert "ordered by user, not by time" in err and "--sort" in err and "Traceback" not in err
    settings = load_settings()
    assert _read_all(settings, click) == []  # held back: nothing sent

    assert main(["replay", str(path), "--to-kafka", "--topic", click, "--sort"]) == 0
    records = _read_all(settings, click)
    assert sorted(r.value for r in records) == sorted(dump)
    for p in {r.partition for r in records}:  # each partition in event-time order
        times = [r.timestamp for r in records if r.partition == p]
        assert times == sorted(times)
    capsys.readouterr()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_tail_pretty_raw_last_key_and_max(stack, make_topics, monkeypatch, capsys):
    from kafka import KafkaProducer

    (topic,) = make_topics({"tail": 2})
    monkeypatch.setenv("INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", stack.kafka_bootstrap)
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    sent = []
    for i in range(30):
        value = codec.dumps({"i": i, "user_id": f"u{i % 3}"})
        producer.send(topic, key=f"u{i % 3}".encode(), value=value, partition=i % 2)
        sent.append(value)
    producer.send(topic, key=b"bad", value=b"not json", partition=0)
    producer.flush()
    producer.close()

    assert cli("tail", topic, "--from-beginning") == 0
    pretty = capsys.readouterr().out.splitlines()
    assert len(pretty) == 31
    first = pretty[0].split("  ")
    assert first[0] == "0:0" and first[1].endswith("Z") and first[2] == "u0" and first[3] == '{"i":0,"user_id":"u0"}'
    assert "not json" in pretty[-1] or any(line.endswith("not json") for line in pretty)

    assert cli("tail", topic) == 0  # the last 10 per partition
    assert len(capsys.readouterr().out.splitlines()) == 20

    assert cli("tail", topic, "--from-beginning", "--raw", "--partition", "1") == 0
    raw = capsys.readouterr().out.splitlines()
    assert [codec.loads(line)["i"] for line in raw] == list(range(1, 30, 2))

    assert cli("tail", topic, "--from-beginning", "--key", "u1", "--raw") == 0
    assert {codec.loads(line)["user_id"] for line in capsys.readouterr().out.splitlines()} == {"u1"}

    assert cli("tail", topic, "--from-beginning", "--max", "5") == 0
    assert len(capsys.readouterr().out.splitlines()) == 5

    assert cli("tail", topic + ".missing") == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_stats_once_renders_the_metrics_table(stack, make_topics):
    from kafka import KafkaProducer

    (topic,) = make_topics({"metrics": 1})
    settings = stack.settings(INTENTSTREAM_TOPICS__METRICS=topic)
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    for value in (
        metrics("worker-a", "2026-01-05T10:00:00Z", {"events": 1000, "decisions": 10},
                {"0": {"watermark": "2026-01-05T09:59:58Z", "lag": 5}, "1": {"watermark": "2026-01-05T09:59:57Z", "lag": 0}}),
        metrics("worker-a", "2026-01-05T10:00:10Z", {"events": 1500, "decisions": 12},
                {"0": {"watermark": "2026-01-05T10:00:08Z", "lag": 7, "open_sessions": 42}, "1": {"watermark": "2026-01-05T10:00:09Z", "lag": 1}}),
        metrics("worker-b", "2026-01-05T10:00:09Z", {"events": 200}, {"2": {"watermark": "2026-01-05T10:00:01Z", "lag": 3}}),
        b"{oops",
    ):  # fmt: skip
        producer.send(topic, value=value)
    producer.flush()
    producer.close()

    out = io.StringIO()
    assert stats.stats(settings, once=True, out=out) == 0
    text = out.getvalue()
    assert "2 worker(s), 4 records read, 1 unreadable" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["events", "1,700", "50.0"] in rows  # 1500 + 200; (1500 - 1000) / 10 s
    assert ["decisions", "12", "0.2"] in rows
    assert ["0", "worker-a", "2026-01-05T10:00:08Z", "7", "42"] in rows
    assert ["2", "worker-b", "2026-01-05T10:00:01Z", "3", "-"] in rows

    out = io.StringIO()
    assert stats.stats(settings, once=True, out=out, as_json=True) == 0
    (line,) = out.getvalue().splitlines()
    d = codec.loads(line)
    assert (len(d["workers"]), d["records"], d["unreadable"]) == (2, 4, 1)
    assert d["counters"]["events"] == {"total": 1700, "rate_per_s": 50.0}
    assert any(r[:2] == ["worker-a", "2026-01-05T10:00:10.000Z"] and r[-2:] == ["2", "8"] for r in rows)
