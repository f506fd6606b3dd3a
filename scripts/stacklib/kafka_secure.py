"""The secured Kafka cluster of ``up --cluster --secure``: three nodes like the plain
cluster's (services kafka-secure-1..3, on INTENTSTREAM_STACK_KAFKA_SECURE_PORT, default the
cluster's base + 20), with:

  * clients and inter-broker traffic: SASL_SSL, SCRAM-SHA-512 (TLS 1.2+ with the stack's CA;
    brokers talk to each other as the super user admin);
  * the controller listener (KRaft quorum, broker -> controller): SSL with mutual TLS, the
    node certificate's subject a super user (KRaft cannot use SCRAM there: its credentials
    live in the metadata log the controllers serve);
  * the SCRAM users added at format time (`kafka-storage format --add-scram`, as salted
    passwords: no password on a command line); ACLs by the StandardAuthorizer, no ACL = deny.

Nothing is plaintext on the network; the data dirs on disk are not encrypted.

Measured here (load ~3): `up --cluster --secure` 28 s from nothing, of which this cluster
22 s (the three formats included; the secured Redis Cluster 2.2 s, topics and ACLs ~3 s);
~0.3-0.35 GB RSS per JVM.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import time

from .common import KAFKA_SECURE, Config, StackError, say
from .kafka import launch_kafka, new_cluster_id
from .kafka_cluster import KAFKA_CLUSTER_NODES, KAFKA_CLUSTER_REPLICATION, kafka_cluster_properties
from .probes import kafka_secure_answers
from .secure import NODE_CN, SCRAM, SECURE_USERS, ensure_tls_material, scram_format_args, secure_ca, secure_password
from .services import Starter, bring_up, none_running, status_rows, stop_all, wipe_nodes


def kafka_secure_service(node: int) -> str:
    return f"{KAFKA_SECURE}-{node}"


KAFKA_SECURE_SERVICES = tuple(kafka_secure_service(n) for n in KAFKA_CLUSTER_NODES)


def kafka_secure_bootstrap(cfg: Config) -> str:
    return ",".join(f"127.0.0.1:{cfg.port(s)}" for s in KAFKA_SECURE_SERVICES)


def kafka_secure_env(cfg: Config, user: str = "worker", password: bool = False) -> dict[str, str]:
    """The settings that point the product at the secured cluster as ``user``; the password
    only when asked (``env`` prints a command that reads its file instead)."""
    env = {
        "INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS": kafka_secure_bootstrap(cfg),
        "INTENTSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "INTENTSTREAM_KAFKA__SASL_MECHANISM": SCRAM,
        "INTENTSTREAM_KAFKA__SASL_USERNAME": user,
        "INTENTSTREAM_KAFKA__SSL_CAFILE": str(secure_ca(cfg)),
        "INTENTSTREAM_TOPICS__REPLICATION_FACTOR": str(KAFKA_CLUSTER_REPLICATION),
    }
    if password:
        env["INTENTSTREAM_KAFKA__SASL_PASSWORD"] = secure_password(cfg, user)
    return env


def kafka_secure_properties(cfg: Config, node: int) -> dict[str, str]:
    tls = ensure_tls_material(cfg)
    service = kafka_secure_service(node)
    broker, controller = cfg.ports(service)
    voters = ",".join(f"{n}@127.0.0.1:{cfg.ports(kafka_secure_service(n))[1]}" for n in KAFKA_CLUSTER_NODES)
    props = kafka_cluster_properties(cfg, node)  # the plain cluster's, then its own ports and security
    admin_pw = secure_password(cfg, "admin")
    props.update({
        "controller.quorum.voters": voters,
        "log.dirs": str(cfg.dir(service) / "data"),
        "listeners": f"SASL_SSL://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{broker}",
        "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": SCRAM,
        "sasl.mechanism.inter.broker.protocol": SCRAM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            f'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{admin_pw}";',
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls["keystore"]),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls["ca"]),
        "ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
        "listener.name.controller.ssl.client.auth": "required",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:admin;User:CN={NODE_CN}",
        "allow.everyone.if.no.acl.found": "false",
    })  # fmt: skip
    return props


def kafka_secure_start(cfg: Config, node: int) -> subprocess.Popen | None:
    def cluster_id() -> str:
        for service in KAFKA_SECURE_SERVICES:
            with contextlib.suppress(FileNotFoundError):
                return (cfg.dir(service) / "cluster.id").read_text().strip()
        return new_cluster_id()

    return launch_kafka(cfg, kafka_secure_service(node), kafka_secure_properties(cfg, node), cfg.kafka_cluster_heap_opts,
                        cluster_id, lambda: scram_format_args(cfg))  # fmt: skip


KAFKA_SECURE_STARTERS: dict[str, Starter] = {
    kafka_secure_service(n): functools.partial(kafka_secure_start, node=n) for n in KAFKA_CLUSTER_NODES
}


def kafka_secure_up(cfg: Config) -> None:
    t0 = time.monotonic()
    ensure_tls_material(cfg)
    for user in SECURE_USERS:
        secure_password(cfg, user)
    bring_up(cfg, KAFKA_SECURE_STARTERS)
    deadline = time.monotonic() + cfg.timeout
    detail = ""
    while time.monotonic() < deadline:
        results = [kafka_secure_answers(cfg, cfg.port(s), min_brokers=len(KAFKA_CLUSTER_NODES)) for s in KAFKA_SECURE_SERVICES]
        if all(ok for ok, _ in results):
            say(f"{KAFKA_SECURE}: {len(results)} brokers registered (SASL_SSL) after {time.monotonic() - t0:.1f}s")
            return
        detail = "; ".join(d for ok, d in results if not ok)
        time.sleep(0.25)
    raise StackError(f"{KAFKA_SECURE}: not every broker registered within {cfg.timeout:.0f}s (last: {detail})")


def kafka_secure_down(cfg: Config, wipe: bool) -> None:
    stop_all(cfg, KAFKA_SECURE_SERVICES)
    if wipe:
        wipe_nodes(cfg, KAFKA_SECURE, KAFKA_SECURE_SERVICES)


def kafka_secure_status(cfg: Config) -> bool | None:
    if none_running(cfg, KAFKA_SECURE, KAFKA_SECURE_SERVICES, kafka_secure_bootstrap(cfg), "up --cluster --secure --kafka-only"):
        return None
    return status_rows(cfg, KAFKA_SECURE_SERVICES)
