"""The worker on the 3-node Kafka cluster: 1, 2 and 3 worker processes in one group.

    python -m bench cluster           (or: python -m bench.cluster [--users N] [--repeats N])

Starts the cluster if it is not up (``scripts/stack up --cluster --kafka-only``; stopped
again at the end then); Redis is the local stack's single server (``scripts/stack info``,
whatever ``INTENTSTREAM_REDIS__URL`` says). A generated trace
(``--users`` x 1 day, ~14 events per user) is pre-loaded once, with ``acks=all``, into a
6-partition input topic with 3 replicas. Each run is the worker bench's scaling case
(bench/worker.py ``throughput_run``) on the cluster: a fresh deployment (its own group,
output topics with 3 replicas, Redis prefix), N ``intentstream worker`` processes,
events/s between the first and the last committed-offset observation once the group is
stable with N members. One more case runs one worker on the local stack's single broker
(replication factor 1, the same trace on its own topic): what replication costs a worker.
The ratios are against one worker on the cluster measured in the same run, the order of
the cases rotated between repeats. Also printed: the CPU cores the workers, the brokers,
Redis and the benchmark used in the timed window (2 cores here: more workers compete
with three broker JVMs for them).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from bench import _harness as h
from bench.common import Result, print_table
from bench.worker import PARTITIONS, Run, cpu_note, throughput_run, trace_records
from intentstream.stream.synth.config import GeneratorConfig

#: (Kafka, worker processes) of each case; the single broker's one worker is the price of replication
CASES = (("single", 1), ("cluster", 1), ("cluster", 2), ("cluster", 3))


def label(kafka: str, n: int) -> str:
    if kafka == "single":
        return "1 worker process, single broker (replication factor 1)"
    if n == 1:
        return f"1 worker process, {PARTITIONS} partitions (baseline)"
    return f"{n} worker processes, {PARTITIONS // n} partitions each"


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster")
    ap.add_argument("--users", type=int, default=5000, help="trace: users x 1 day (~14 events each; default %(default)s)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each case (default %(default)s)")
    args = ap.parse_args(argv)
    info = h.stack_info()
    started_here = not info["kafka_cluster"]["up"]
    if started_here:
        subprocess.run([sys.executable, str(h.ROOT / "scripts" / "stack"), "up", "--cluster", "--kafka-only", "-q"], check=True)
        info = h.stack_info()
    redis = {"INTENTSTREAM_REDIS__URL": info["redis"]["url"]}  # the stack's, whatever the environment says
    cluster = info["kafka_cluster"]
    envs = {  # the brokers, and the replication factor of every topic the runs create
        "cluster": {**cluster["env"], **redis},
        "single": {"INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS": info["kafka"]["bootstrap"], "INTENTSTREAM_TOPICS__REPLICATION_FACTOR": "1", **redis},
    }
    pids = {
        "cluster": {"kafka": [n["pid"] for n in cluster["nodes"].values()], "redis": [info["redis"]["pid"]]},
        "single": {"kafka": [info["kafka"]["pid"]], "redis": [info["redis"]["pid"]]},
    }
    records = trace_records(GeneratorConfig(users=args.users, days=1, seed=7))
    topics = {kafka: f"bench.cluster.{h.run_id()}.{kafka}.click" for kafka in envs}
    runs: dict[tuple[str, int], list[Run]] = {case: [] for case in CASES}
    try:
        with h.stack_lease(info):
            ends = {}
            try:
                for kafka, topic in topics.items():
                    h.create_topic(h.settings_for(envs[kafka]), topic, PARTITIONS)
                    h.produce(h.settings_for(envs[kafka]), topic, records)
                    ends[kafka] = h.end_offsets(h.settings_for(envs[kafka]), topic)
                timeout = max(180.0, sum(ends["cluster"].values()) / 200)
                for i in range(args.repeats):
                    for kafka, n in CASES[i % len(CASES):] + CASES[: i % len(CASES)]:  # the order rotates
                        run = throughput_run(topics[kafka], ends[kafka], "full", pids[kafka], timeout, workers=n, env=envs[kafka])
                        runs[(kafka, n)].append(run)
            finally:
                for kafka, topic in topics.items():
                    h.delete_topics(h.settings_for(envs[kafka]), [topic])
    finally:
        if started_here:
            subprocess.run([sys.executable, str(h.ROOT / "scripts" / "stack"), "down", "--cluster", "--kafka-only"], check=False)
    base = label("cluster", 1)
    results = [Result(label(*case), "events/s", [r.rate for r in runs[case]], None if label(*case) == base else base) for case in CASES]
    print_table(
        f"Scaling on the 3-node Kafka cluster (replication factor 3, min.insync.replicas=2, acks=all): intentstream "
        f"worker, 1/2/3 processes in one group, and one on the single broker; the same {len(records):,} pre-loaded events, "
        f"{args.repeats} runs",
        results,
    )
    for case in CASES:
        peak = statistics.median(r.peak_rss for r in runs[case]) / 2**20
        print(f"- {label(*case)}: {cpu_note(runs[case])}; peak RSS of the workers {peak:,.0f} MB")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
