"""Replay throughput into the real broker: ``intentstream replay --to-kafka`` (read the
file line by line, parse, key, event-time timestamp, dead-letter, bounded in-flight
records) against a same-run baseline: a bare kafka-python producer with the same
settings sending the same bytes with the same keys and timestamps, already in memory.
Cases alternate, every repeat into fresh topics; medians of ``--repeats``.

    python -m bench.replay [--users 5000] [--days 1] [--repeats 3]

Kafka is ``[kafka] bootstrap_servers`` of the settings; when it does not answer, the
local stack is started with ``scripts/stack up`` and stopped again at the end.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import Result, print_table
from intentstream.stream.contract.events import Event, parse_event
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig
from intentstream.stream.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 6


def answering(bootstrap: str) -> bool:
    """True if the first bootstrap address accepts a TCP connection."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False


def stack(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "stack"), *args], check=True, cwd=ROOT)


def write_file(cfg: GeneratorConfig, path: Path) -> int:
    """Generate the clickstream into ``path``; its line count."""
    n = 0
    with open(path, "wb") as fh:
        for line in generate_lines(cfg):
            fh.write(line)
            n += 1
    return n


def preload(path: Path) -> list[tuple[bytes, bytes, int]]:
    """(key, value, timestamp) of each valid line: what the bare producer sends."""
    out = []
    with open(path, "rb") as fh:
        for line in fh:
            raw = line.rstrip(b"\r\n")
            ev = parse_event(raw)
            if isinstance(ev, Event):
                out.append((ev.user_id.encode(), raw, ev.ts_ms))
    return out


def bare_producer(settings: Settings, topic: str, records: list[tuple[bytes, bytes, int]]) -> int:
    """The baseline: send everything, flush, close; records sent."""
    from intentstream.agents.kafka import make_producer

    producer = make_producer(settings)
    for key, value, ts in records:
        producer.send(topic, value=value, key=key, timestamp_ms=ts)
    producer.flush(timeout=120)
    producer.close(timeout=10)
    return len(records)


def replay(settings: Settings, topic: str, path: Path) -> int:
    """The tool: lines replayed (valid and dead-lettered)."""
    from intentstream.agents.commands.replay import ReplayOptions, replay_to_kafka

    stats = replay_to_kafka(settings, str(path), ReplayOptions(topic=topic), progress=False)
    if not stats.ok:
        raise RuntimeError(stats.summary())
    return stats.lines


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    from intentstream.agents.admin import ensure_topics
    from intentstream.agents.kafka import admin_client

    settings = load_settings()
    started_stack = not answering(settings.kafka.bootstrap_servers)
    if started_stack:
        stack("up", "-q")
    run_id = uuid.uuid4().hex[:8]
    topics: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "clickstream.jsonl"
            n_lines = write_file(GeneratorConfig(users=args.users, days=args.days, seed=1, invalid_share=0.005), path)
            records = preload(path)
            dlq = f"bench.replay.{run_id}.dlq"
            settings = load_settings(env={**_env(), "INTENTSTREAM_TOPICS__DEAD_LETTER": dlq})
            topics.append(dlq)
            bare_rates, tool_rates = [], []
            for i in range(args.repeats):
                t_bare, t_tool = f"bench.replay.{run_id}.bare{i}", f"bench.replay.{run_id}.tool{i}"
                ensure_topics(settings, {t_bare: PARTITIONS, t_tool: PARTITIONS, dlq: PARTITIONS})
                topics += [t_bare, t_tool]
                bare_rates.append(_rate(lambda: bare_producer(settings, t_bare, records)))
                tool_rates.append(_rate(lambda: replay(settings, t_tool, path)))
    finally:
        if topics:
            admin = admin_client(settings)
            admin.delete_topics(topics, timeout_ms=30000, raise_errors=False)
            admin.close()
        if started_stack:
            stack("down")
    base = "bare KafkaProducer.send, preloaded (baseline)"
    results = [
        Result(base, "events/s", bare_rates),
        Result("intentstream replay --to-kafka (file, parse, DLQ, bounded in-flight)", "lines/s", tool_rates, base),
    ]
    print_table(f"Replay into Kafka ({PARTITIONS} partitions, idempotent, acks=all), {n_lines:,} lines", results)
    return results


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k.startswith("INTENTSTREAM_")}


def _rate(fn) -> float:
    started = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
