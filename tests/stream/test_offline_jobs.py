"""The offline runner spread over forked processes answers exactly what one process does."""

from __future__ import annotations

import io

import pytest

from intentstream.stream import codec
from intentstream.stream.contract.events import format_ts
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.engine.offline_jobs import BATCH, ForkedJobs, JobFailed, can_fork
from intentstream.stream.settings import load_settings
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

pytestmark = pytest.mark.skipif(not can_fork(), reason="needs POSIX fork")

# a generated trace with malformed lines, plus a clock far ahead (the engine's own dead letter)
LINES = [line.rstrip(b"\n") for line in generate_lines(GeneratorConfig(users=80, days=3, seed=9, invalid_share=0.01))]
LINES.insert(len(LINES) // 2, codec.dumps({"event_id": "far", "user_id": "skewed", "ts": format_ts(4_102_444_800_000), "type": "page_view"}))


def replay(jobs: int, after: int, close_open: bool) -> tuple[list[tuple[str, bytes]], bytes, dict[str, int], dict[str, int]]:
    settings = load_settings(env={
        "INTENTSTREAM_SESSIONS__OFFLINE_JOBS": str(jobs),
        "INTENTSTREAM_SESSIONS__OFFLINE_PARALLEL_AFTER_EVENTS": str(after),
        "INTENTSTREAM_SESSIONS__BATCH_SIZE": "50",
    })  # fmt: skip
    runner = OfflineRunner(settings)
    runner.dead_letter = dlq = io.BytesIO()
    out = list(runner.run(enumerate(LINES, 1), close_open=close_open))
    return out, dlq.getvalue(), dict(runner.counters), dict(runner.invalid)


@pytest.mark.parametrize("close_open", [False, True])
def test_forked_jobs_give_the_same_outputs_in_the_same_order(close_open):
    one = replay(1, 0, close_open)
    assert len(one[0]) > 100 and one[1]  # decisions, segments and dead letters to compare
    for jobs, after in ((2, 1), (3, 700), (2, 10**9)):  # forked at once, mid-input, never
        assert replay(jobs, after, close_open) == one


class _Exploding:
    """A stand-in engine whose step fails (pure plumbing test: no engine logic involved)."""

    def process_parsed(self, batch):
        raise ValueError("boom in the child")


def test_a_failing_child_raises_instead_of_hanging():
    jobs = ForkedJobs([_Exploding(), _Exploding()], 2)  # type: ignore[list-item]
    try:
        jobs.submit(1, BATCH, [(0, b"{}", None)])
        with pytest.raises(JobFailed, match="boom in the child"):
            jobs.drain()
    finally:
        jobs.close()


def test_the_segments_command_writes_each_output_once_when_forked(tmp_path, monkeypatch):
    """Buffered output files are not written twice by the children (they exit without
    flushing the parent's buffers)."""
    from intentstream.stream.cli import main

    src = tmp_path / "events.jsonl"
    src.write_bytes(b"".join(line + b"\n" for line in LINES))
    outs = []
    for jobs in ("1", "2"):
        monkeypatch.setenv("INTENTSTREAM_SESSIONS__OFFLINE_JOBS", jobs)
        monkeypatch.setenv("INTENTSTREAM_SESSIONS__OFFLINE_PARALLEL_AFTER_EVENTS", "1")
        out, dlq = tmp_path / f"seg{jobs}.jsonl", tmp_path / f"dlq{jobs}.jsonl"
        assert main(["segments", str(src), "--out", str(out), "--dead-letter", str(dlq), "--no-progress"]) == 0
        outs.append((out.read_bytes(), dlq.read_bytes()))
    assert outs[0] == outs[1] and outs[0][0].count(b"\n") > 50
