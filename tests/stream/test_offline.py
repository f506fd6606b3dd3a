"""``intentstream segments``: the engine on a file, partitioned like Kafka, deterministic."""

from __future__ import annotations

from collections import defaultdict

from intentstream.stream import codec
from intentstream.stream.cli import main
from intentstream.stream.engine.partition import PartitionEngine
from intentstream.stream.contract.events import parse_event
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig
from intentstream.stream.engine.partitioning import partition_for
from intentstream.stream.state.memory import MemorySessionStore

LINES = [line.rstrip(b"\n") for line in generate_lines(GeneratorConfig(users=60, days=2, seed=4, invalid_share=0.01))]


def write(tmp_path, lines):
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"".join(line + b"\n" for line in lines))
    return src


def test_output_is_deterministic_and_dead_letters_are_written(tmp_path, capsys):
    src = write(tmp_path, LINES + [b"", b"not json at all"])
    outs = []
    for n in (1, 2):
        out, dlq = tmp_path / f"seg{n}.jsonl", tmp_path / f"dlq{n}.jsonl"
        assert main(["segments", str(src), "--out", str(out), "--dead-letter", str(dlq)]) == 0
        outs.append((out.read_bytes(), dlq.read_bytes()))
    assert outs[0] == outs[1]
    segs = [codec.loads(line) for line in outs[0][0].splitlines()]
    dead = [codec.loads(line) for line in outs[0][1].splitlines()]
    assert len(segs) > 50 and all(s["segment_id"].startswith(s["session_id"]) for s in segs)
    assert dead and dead[-1]["reason"] == "not_json" and dead[-1]["source"].endswith(f":{len(LINES) + 2}")
    err = capsys.readouterr().err
    assert f"{len(dead)} rejected" in err and "rejected not_json" in err


def test_batch_size_does_not_change_the_segments(tmp_path):
    src = write(tmp_path, LINES)
    got = []
    for size in ("1", "500"):
        out = tmp_path / f"s{size}.jsonl"
        main(["segments", str(src), "--out", str(out), "--batch-size", size, "--partitions", "3"])
        got.append(sorted(out.read_bytes().splitlines()))
    assert got[0] == got[1]


def test_equals_one_engine_per_kafka_partition(tmp_path):
    """What the live workers would publish: each user on murmur2(user_id) % n, offsets per partition."""
    src = write(tmp_path, LINES)
    out = tmp_path / "seg.jsonl"
    main(["segments", str(src), "--out", str(out), "--partitions", "4"])
    per_partition: dict[int, list[bytes]] = defaultdict(list)
    for raw in LINES:
        ev = parse_event(raw)
        if ev:
            per_partition[partition_for(ev.user_id.encode(), 4)].append(raw)
    engines = {p: PartitionEngine(MemorySessionStore(), p) for p in per_partition}
    for p, lines in per_partition.items():
        engines[p].process(list(enumerate(lines)))
    # at the end, idle partitions adopt the highest watermark, as the live worker's do
    top = max(eng.meta.wm for eng in engines.values())
    for eng in engines.values():
        eng.advance_to(top)
    want = [x.value for eng in engines.values() for x in eng.pending_outbox() if x.topic == "segments"]
    assert sorted(out.read_bytes().splitlines()) == sorted(want)
    closed = tmp_path / "closed.jsonl"
    main(["segments", str(src), "--out", str(closed), "--partitions", "4", "--close-open"])
    for eng in engines.values():
        eng.flush()
    want = [x.value for eng in engines.values() for x in eng.pending_outbox() if x.topic == "segments"]
    assert sorted(closed.read_bytes().splitlines()) == sorted(want)


def test_stdout_and_empty_input(tmp_path, capsys):
    src = write(tmp_path, [])
    assert main(["segments", str(src), "--out", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "0 lines" in captured.err


def test_a_missing_input_file_is_one_line_and_status_2(tmp_path, capsys):
    for args in (["segments", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "s.jsonl")],
                 ["validate", str(tmp_path / "nope.jsonl")],
                 ["replay", str(tmp_path / "nope.jsonl"), "--offline", "--out", str(tmp_path / "d.jsonl")]):  # fmt: skip
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert "nope.jsonl" in err and "Traceback" not in err and len(err.splitlines()) == 1
