"""Unordered input through the file commands: ``--sort`` (stream/cli/sort_by_time.py),
the disorder stop and ``--allow-disorder`` (stream/cli/offline_files.py), ``validate``."""

from __future__ import annotations

import io
import random
import sys

import pytest

from intentstream.stream import codec
from intentstream.stream.cli import main
from intentstream.stream.cli.sort_by_time import sort_by_time
from intentstream.stream.contract.events import Event, parse_event
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

#: Delivery order: 2 % late and 1 % duplicated deliveries, 1 % invalid lines.
DELIVERED = [line.rstrip(b"\n") for line in generate_lines(GeneratorConfig(users=80, days=3, seed=9, invalid_share=0.01))]


def _key(raw: bytes) -> int:
    ev = parse_event(raw)
    return ev.ts_ms if isinstance(ev, Event) else -1


TIME_ORDERED = sorted(DELIVERED, key=_key)  # stable: rejected lines first, ties in file order
SHUFFLED = random.Random(1).sample(DELIVERED, len(DELIVERED))
BY_USER = sorted(DELIVERED, key=lambda raw: (parse_event(raw).user_id if isinstance(parse_event(raw), Event) else ""))


def write(tmp_path, name, lines) -> str:
    path = tmp_path / name
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return str(path)


def numbered(lines):
    return list(enumerate(lines, 1))


def outputs(lines) -> dict[str, list[bytes]]:
    by_topic: dict[str, list[bytes]] = {}
    for topic, payload in OfflineRunner().run(lines):
        by_topic.setdefault(topic, []).append(payload)
    return by_topic


# --------------------------------------------------------------------------- the sort


def test_sort_is_stable_and_puts_rejected_lines_first_with_their_line_numbers():
    ev = b'{"event_id":"%s","user_id":"u","ts":%d,"type":"click"}'
    lines = [ev % (b"c", 3_000_000_000_000), b"bad 1", ev % (b"a", 2_000_000_000_000), ev % (b"b", 3_000_000_000_000), b"{}"]
    got = list(sort_by_time(numbered(lines)))
    assert [n for n, _ in got] == [2, 5, 3, 1, 4]
    assert [raw for _, raw in got] == [lines[n - 1] for n, _ in got]


@pytest.mark.parametrize(("run_lines", "fan_in"), [(7, 64), (50, 3), (1, 2)])
def test_many_runs_on_disk_merge_to_the_in_memory_order(tmp_path, run_lines, fan_in):
    want = list(sort_by_time(numbered(SHUFFLED)))
    assert [raw for _, raw in want] == sorted(SHUFFLED, key=_key)
    got = list(sort_by_time(numbered(SHUFFLED), run_lines=run_lines, fan_in=fan_in, tmp_dir=str(tmp_path), progress=io.StringIO()))
    assert got == want
    assert list(tmp_path.iterdir()) == []  # the runs are gone


def test_runs_are_bounded_by_bytes_too_and_removed_when_the_reader_stops(tmp_path):
    sorted_lines = sort_by_time(numbered(SHUFFLED), run_bytes=10_000, tmp_dir=str(tmp_path))
    next(sorted_lines)
    (tmp,) = tmp_path.iterdir()
    assert len(list(tmp.iterdir())) >= len(b"".join(SHUFFLED)) // 10_000
    sorted_lines.close()
    assert list(tmp_path.iterdir()) == []


def test_sorting_a_shuffled_trace_gives_the_decisions_of_the_time_ordered_one():
    want = outputs(numbered(TIME_ORDERED))
    got = outputs(sort_by_time(numbered(SHUFFLED), run_lines=100, fan_in=4))
    assert set(got) == set(want) and want["actions.audit"]
    for topic in want:  # equal ticks may come out in another order across users
        assert sorted(got[topic]) == sorted(want[topic]), topic
    # a time-ordered file is its own sort: byte for byte, in order
    assert outputs(sort_by_time(numbered(TIME_ORDERED), run_lines=100)) == want


# --------------------------------------------------------------------------- the commands


def test_replay_offline_stops_on_a_dump_grouped_by_user(tmp_path, capsys):
    dump = write(tmp_path, "dump.jsonl", BY_USER)
    assert main(["replay", dump, "--offline", "--out", str(tmp_path / "d.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("intentstream replay: ") and "Traceback" not in err
    assert "% of the first 1,000 events are more than 300 s behind the newest event" in err
    assert "ordered by user, not by time" in err
    assert "--sort" in err and "allowed_lateness_s" in err and "--allow-disorder" in err


def test_allow_disorder_runs_it_anyway_and_sort_fixes_it(tmp_path, capsys):
    dump = write(tmp_path, "dump.jsonl", BY_USER)
    ordered = write(tmp_path, "ordered.jsonl", TIME_ORDERED)
    got = {}
    for name, argv in {"sorted": [dump, "--sort"], "ordered": [ordered]}.items():
        out = tmp_path / f"{name}.decisions"
        assert main(["replay", *argv, "--offline", "--out", str(out)]) == 0, capsys.readouterr().err
        got[name] = sorted(out.read_bytes().splitlines())
    assert got["sorted"] == got["ordered"]
    for name, argv in {"allowed": [dump, "--allow-disorder"], "ordered": [ordered]}.items():
        out = tmp_path / f"{name}.seg"
        assert main(["segments", *argv, "--out", str(out)]) == 0, capsys.readouterr().err
        got[name] = sorted(out.read_bytes().splitlines())
    assert got["allowed"] != got["ordered"]  # what the check protects against
    assert "late" in capsys.readouterr().err


def test_segments_sort_keeps_dead_letters_and_equals_the_unsorted_run_on_ordered_input(tmp_path, capsys):
    ordered = write(tmp_path, "ordered.jsonl", TIME_ORDERED)
    shuffled = write(tmp_path, "shuffled.jsonl", SHUFFLED)
    runs = {}
    for name, argv in {"plain": [ordered], "sorted": [ordered, "--sort"], "shuffled": [shuffled, "--sort"]}.items():
        out, dlq = tmp_path / f"{name}.seg", tmp_path / f"{name}.dlq"
        assert main(["segments", *argv, "--out", str(out), "--dead-letter", str(dlq), "--close-open"]) == 0
        runs[name] = (out.read_bytes(), [codec.loads(line) for line in dlq.read_bytes().splitlines()])
    assert runs["sorted"] == runs["plain"]  # a time-ordered file: byte-identical
    assert sorted(runs["shuffled"][0].splitlines()) == sorted(runs["plain"][0].splitlines())
    dead = runs["shuffled"][1]
    assert len(dead) == len(runs["plain"][1]) > 0  # every rejected line still reaches the dead letters
    for d in dead:  # with the line number it has in the shuffled file
        n = int(d["source"].rsplit(":", 1)[1])
        assert SHUFFLED[n - 1].decode() == d["raw"]
    assert main(["segments", shuffled, "--out", str(tmp_path / "x.seg")]) == 2  # unsorted: stopped
    capsys.readouterr()


def test_sort_reads_standard_input(tmp_path, monkeypatch, capsys):
    data = b"".join(line + b"\n" for line in BY_USER)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    out = tmp_path / "from-stdin.jsonl"
    assert main(["replay", "-", "--offline", "--sort", "--out", str(out)]) == 0
    ordered = write(tmp_path, "ordered.jsonl", TIME_ORDERED)
    assert main(["replay", ordered, "--offline", "--out", str(tmp_path / "o.jsonl")]) == 0
    assert sorted(out.read_bytes().splitlines()) == sorted((tmp_path / "o.jsonl").read_bytes().splitlines())
    capsys.readouterr()


def test_report_input_stops_on_a_dump_and_sorts_it(tmp_path, capsys):
    dump = write(tmp_path, "dump.jsonl", BY_USER)
    assert main(["report", "--input", dump, "--lang", "en"]) == 2
    assert "ordered by user, not by time" in capsys.readouterr().err
    assert main(["report", "--input", dump, "--lang", "en", "--sort", "--out", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text()
    assert main(["report", "--segments", dump, "--sort"]) == 2
    assert "only apply with --input" in capsys.readouterr().err


def test_validate_reports_the_disorder_and_does_not_stop(tmp_path, capsys):
    assert main(["validate", write(tmp_path, "dump.jsonl", BY_USER)]) == 0
    out = capsys.readouterr().out
    assert f"of {sum(isinstance(parse_event(r), Event) for r in BY_USER):,} events are more than 300 s behind" in out
    assert "past the limit (0.2) at event 1,000" in out and "--sort" in out
    assert main(["validate", write(tmp_path, "delivered.jsonl", DELIVERED)]) == 0
    assert "under the limit (0.2)" in capsys.readouterr().out
