"""The Kafka cluster of ``up --cluster``: three JVMs, each a broker and a controller of
one 3-voter KRaft quorum, node n listening on INTENTSTREAM_STACK_KAFKA_CLUSTER_PORT +
2(n-1) (broker) and the port after it (controller). The rest of the stack treats each node
as a service of its own (state dir, pid file, log): kafka-cluster-1, -2, -3.

Measured here (2 cores shared with other work): `up --cluster --kafka-only` 12-13 s from
nothing (the three storage formats included) at load ~2, 17-27 s at load 7-9; `down
--cluster --kafka-only` ~9 s (all nodes at once: the last one alone would wait 30 s for a
lost quorum). RSS of the three JVMs (-Xmx384m each): 210-240 MB each after start; 440, 630
and 460 MB (1.5 GB in all) after the fault tests and the scaling bench (heap + metaspace,
code cache, direct buffers). Idle they use little CPU; under the scaling bench ~0.55-0.75
of a core together.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import time

from .common import KAFKA_CLUSTER, Config, StackError, say
from .kafka import kafka_properties, launch_kafka, new_cluster_id
from .probes import kafka_answers
from .services import Starter, bring_up, none_running, status_rows, stop_all, wipe_nodes

KAFKA_CLUSTER_NODES = (1, 2, 3)
#: three replicas of every topic, an acks=all write acknowledged once two have it: one
#: broker can die (or be killed) without losing an acknowledged record or availability
KAFKA_CLUSTER_REPLICATION = len(KAFKA_CLUSTER_NODES)
KAFKA_CLUSTER_MIN_ISR = 2


def kafka_cluster_service(node: int) -> str:
    return f"{KAFKA_CLUSTER}-{node}"


KAFKA_CLUSTER_SERVICES = tuple(kafka_cluster_service(n) for n in KAFKA_CLUSTER_NODES)


def kafka_cluster_bootstrap(cfg: Config) -> str:
    return ",".join(f"127.0.0.1:{cfg.port(s)}" for s in KAFKA_CLUSTER_SERVICES)


def kafka_cluster_env(cfg: Config) -> dict[str, str]:
    """The settings that point the product at the cluster: its brokers, and the replication
    factor of the topics it creates (agents/admin.ensure_topics and Faust's own)."""
    return {
        "INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS": kafka_cluster_bootstrap(cfg),
        "INTENTSTREAM_TOPICS__REPLICATION_FACTOR": str(KAFKA_CLUSTER_REPLICATION),
    }


def kafka_cluster_properties(cfg: Config, node: int) -> dict[str, str]:
    voters = ",".join(f"{n}@127.0.0.1:{cfg.ports(kafka_cluster_service(n))[1]}" for n in KAFKA_CLUSTER_NODES)
    props = kafka_properties(cfg, kafka_cluster_service(node), node, voters)
    rf, isr = str(KAFKA_CLUSTER_REPLICATION), str(KAFKA_CLUSTER_MIN_ISR)
    props.update({
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        # the controllers move a killed broker's leaderships after this long without a
        # heartbeat (Kafka's default: 9 s); long enough for a GC pause on a loaded box
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "6000",
        # Kafka's default, named because the fault tests rely on it: a replica that missed
        # acknowledged records never becomes leader
        "unclean.leader.election.enable": "false",
        # three JVMs share 2 cores here: fewer threads each
        "num.io.threads": "2",
        "num.replica.fetchers": "1",
        "background.threads": "2",
    })  # fmt: skip
    return props


def kafka_cluster_id(cfg: Config) -> str:
    """The id the first node was formatted with (nodes are formatted in turn), else a new one."""
    for service in KAFKA_CLUSTER_SERVICES:
        with contextlib.suppress(FileNotFoundError):
            return (cfg.dir(service) / "cluster.id").read_text().strip()
    return new_cluster_id()


def kafka_cluster_start(cfg: Config, node: int) -> subprocess.Popen | None:
    return launch_kafka(
        cfg, kafka_cluster_service(node), kafka_cluster_properties(cfg, node), cfg.kafka_cluster_heap_opts,
        lambda: kafka_cluster_id(cfg),
    )


KAFKA_CLUSTER_STARTERS: dict[str, Starter] = {
    kafka_cluster_service(n): functools.partial(kafka_cluster_start, node=n) for n in KAFKA_CLUSTER_NODES
}


def kafka_cluster_up(cfg: Config) -> None:
    """Start the nodes that do not run (in parallel), then wait until all brokers registered."""
    t0 = time.monotonic()
    bring_up(cfg, KAFKA_CLUSTER_STARTERS)
    kafka_cluster_wait_registered(cfg, t0)


def kafka_cluster_down(cfg: Config, wipe: bool) -> None:
    stop_all(cfg, KAFKA_CLUSTER_SERVICES)
    if wipe:
        wipe_nodes(cfg, KAFKA_CLUSTER, KAFKA_CLUSTER_SERVICES)


def kafka_cluster_status(cfg: Config) -> bool | None:
    """A line per node; None when no node runs (the cluster is optional), else whether all answer."""
    if none_running(cfg, KAFKA_CLUSTER, KAFKA_CLUSTER_SERVICES, kafka_cluster_bootstrap(cfg), "up --cluster --kafka-only"):
        return None
    return status_rows(cfg, KAFKA_CLUSTER_SERVICES)


def kafka_cluster_wait_registered(cfg: Config, t0: float) -> None:
    """Until every node's metadata lists all brokers: topics with 3 replicas can be made."""
    deadline = time.monotonic() + cfg.timeout
    detail = ""
    while time.monotonic() < deadline:
        results = [kafka_answers(cfg.port(s), min_brokers=len(KAFKA_CLUSTER_NODES)) for s in KAFKA_CLUSTER_SERVICES]
        if all(ok for ok, _ in results):
            say(f"{KAFKA_CLUSTER}: {len(results)} brokers registered after {time.monotonic() - t0:.1f}s")
            return
        detail = "; ".join(d for ok, d in results if not ok)
        time.sleep(0.25)
    raise StackError(f"{KAFKA_CLUSTER}: not every broker registered within {cfg.timeout:.0f}s (last: {detail})")
