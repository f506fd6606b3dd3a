"""The single Kafka broker (service ``kafka``: KRaft, broker and controller in one JVM),
the jars every Kafka node runs (from Maven Central through ``mvn``, cached under
INTENTSTREAM_STACK_CACHE), and the launch that every node shares: the cluster's and the
secured cluster's nodes are the same JVM with other properties."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from .common import KAFKA_VERSION, ROOT, Config, StackError, file_lock, log_tail, running_pid, say, spawn
from .programs import apt_install, java_bin, which

POM = ROOT / "scripts" / "kafka-pom" / "pom.xml"


def ensure_kafka_libs(cfg: Config) -> Path:
    """Copy the broker's runtime jars from Maven Central once; a marker file (holding the
    pom's hash) says the copy finished, so an interrupted download is redone."""
    libs = cfg.libs
    marker = libs.parent / "COMPLETE"
    want = hashlib.sha256(POM.read_bytes()).hexdigest()
    if marker.exists() and marker.read_text().strip() == want and libs.is_dir():
        return libs
    with file_lock(libs.parent / ".lock"):
        if marker.exists() and marker.read_text().strip() == want and libs.is_dir():
            return libs
        mvn = which("INTENTSTREAM_STACK_MVN", "mvn")
        if not mvn:
            apt_install("maven")
            mvn = shutil.which("mvn") or "mvn"
        marker.unlink(missing_ok=True)
        tmp = libs.parent / "libs.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(libs, ignore_errors=True)
        tmp.mkdir(parents=True)
        say(f"kafka: fetching Apache Kafka {KAFKA_VERSION} jars with Maven into {libs} (once)")
        t0 = time.monotonic()
        mvn_log = libs.parent / "mvn.log"
        with open(mvn_log, "wb") as out:
            rc = subprocess.run(
                [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=POM.parent,
            ).returncode
        if rc != 0 or not any(tmp.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
            raise StackError(f"mvn failed (exit {rc}); last lines of {mvn_log}:\n{log_tail(mvn_log)}")
        tmp.rename(libs)
        marker.write_text(want + "\n")
        say(f"kafka: {len(list(libs.glob('*.jar')))} jars in {time.monotonic() - t0:.1f}s")
    return libs


def kafka_properties(cfg: Config, service: str = "kafka", node_id: int = 1, voters: str | None = None) -> dict[str, str]:
    """The broker+controller's server.properties: one node that is its own quorum, or
    node ``node_id`` of the quorum ``voters`` (the cluster overrides a few more)."""
    broker, controller = cfg.ports(service)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters or f"{node_id}@127.0.0.1:{controller}",
        "listeners": f"PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(cfg.dir(service) / "data"),
        "num.partitions": "1",
        # the product creates every topic explicitly (agents/admin.ensure_topics)
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # small and quick for a dev box with 2 cores: fewer internal partitions (the first
        # consumer group / transaction creates them), small segments and indexes
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.num.partitions": "1",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "4",
        "log.segment.bytes": str(16 * 1024 * 1024),
        "log.index.size.max.bytes": str(1024 * 1024),
        # replays stamp records with their (historical) event time: time-based retention
        # would delete them at the next check, so this dev broker keeps data until `down --wipe`
        "log.retention.ms": "-1",
        "log.retention.check.interval.ms": "300000",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "log.cleaner.backoff.ms": "5000",
        "auto.leader.rebalance.enable": "false",
        "delete.topic.enable": "true",
    }
    return props


LOG4J2_YAML = """\
Configuration:
  name: intentstream-stack
  status: warn
  Appenders:
    File:
      name: FILE
      fileName: "{file}"
      append: true
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: FILE
    Logger:
      # one INFO line when the server has started or stopped
      - name: kafka.server.KafkaRaftServer
        level: INFO
        additivity: false
        AppenderRef:
          - ref: FILE
"""


def new_cluster_id() -> str:
    """Like Kafka's Uuid.randomUuid().toString(): URL-safe base64 of 16 random bytes."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def start_kafka(cfg: Config) -> subprocess.Popen | None:
    return launch_kafka(cfg, "kafka", kafka_properties(cfg), cfg.heap_opts, new_cluster_id)


def launch_kafka(
    cfg: Config, service: str, properties: dict[str, str], heap_opts: list[str], cluster_id: Callable[[], str],
    format_args: Callable[[], list[str]] = list,
) -> subprocess.Popen | None:
    """Write the service's properties, format its data dir once (with ``cluster_id()``
    and ``format_args()``, e.g. the SCRAM users), start the JVM; None when it already runs."""
    if running_pid(cfg, service) is not None:
        return None
    java = java_bin()
    libs = ensure_kafka_libs(cfg)
    home = cfg.dir(service)
    data = Path(properties["log.dirs"])
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    props.touch(mode=0o600)  # a secured node's file holds its inter-broker password
    props.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
    yaml = home / "log4j2.yaml"
    yaml.write_text(LOG4J2_YAML.format(file=home / "server.log"))
    cp = f"{libs}/*"
    if not (data / "meta.properties").exists():
        shutil.rmtree(data, ignore_errors=True)  # a half-formatted dir from an interrupted start
        cid = cluster_id()
        fmt = subprocess.run(
            [java, "-Xmx256m", f"-Dlog4j2.configurationFile={yaml}", "-cp", cp,
             "kafka.tools.StorageTool", "format", "-t", cid, "-c", str(props), *format_args()],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        if fmt.returncode != 0:
            raise StackError(f"{service} storage format failed:\n{fmt.stdout}{fmt.stderr}")
        (home / "cluster.id").write_text(cid + "\n")
    argv = [
        java, *heap_opts, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={yaml}", f"-Dkafka.logs.dir={home}",
        "-cp", cp, "kafka.Kafka", str(props),
    ]
    return spawn(cfg, service, argv, cwd=home)
