"""The command line of ``scripts/stack``: the subcommands, their options, and the exit
status (a StackError: its message on stderr and 2; Ctrl-C: 130)."""

from __future__ import annotations

import argparse
import sys

from .commands import (
    cmd_down, cmd_env, cmd_info, cmd_kafka_node, cmd_logs, cmd_one, cmd_prometheus, cmd_redis_node, cmd_status, cmd_topics,
    cmd_up,
)  # fmt: skip
from .common import SERVICES, Config, StackError
from .kafka_cluster import KAFKA_CLUSTER_NODES, KAFKA_CLUSTER_SERVICES
from .kafka_secure import KAFKA_SECURE_SERVICES
from .redis_cluster import REDIS_CLUSTER_PRIMARIES
from .secure import SECURE_USERS


def main(usage: str, argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line), run the subcommand; its exit status.
    ``usage`` is the launcher's docstring: its first paragraph heads ``--help``, the rest ends it."""
    parser = argparse.ArgumentParser(prog="scripts/stack", description=usage.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=usage.split("\n\n", 1)[1])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def only_flags(p: argparse.ArgumentParser) -> None:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--kafka-only", action="store_true")
        g.add_argument("--redis-only", action="store_true")

    def cluster_flag(p: argparse.ArgumentParser, what: str = "the clusters instead of the single servers") -> argparse.ArgumentParser:
        p.add_argument("--cluster", action="store_true", help=what)
        return p

    p = sub.add_parser("up", help="start Kafka and Redis (idempotent) and wait until they answer")
    only_flags(p)
    cluster_flag(p, "the clusters instead (with --kafka-only / --redis-only: that one)")
    p.add_argument("--secure", action="store_true", help="with --cluster: the secured clusters (TLS, SASL/SCRAM, ACLs)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the export lines")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop Kafka and Redis (and the clusters)")
    only_flags(p)
    cluster_flag(p, "only the (plain) clusters")
    p.add_argument("--secure", action="store_true", help="only the secured clusters (with or without --cluster)")
    p.add_argument("--wipe", action="store_true", help="also delete their data and logs")
    p.set_defaults(func=cmd_down)
    sub.add_parser("status", help="what runs where; exit 1 unless both are up (and the clusters, if started)").set_defaults(func=cmd_status)
    p = sub.add_parser("env", help="print the export lines for this stack")
    only_flags(p)
    cluster_flag(p)
    p.add_argument("--secure", action="store_true", help="the secured clusters' settings (passwords read from their files)")
    p.add_argument("--user", default="worker", choices=SECURE_USERS, help="with --secure: as this user (default worker)")
    p.set_defaults(func=cmd_env)
    sub.add_parser("info", help="state dir, ports, pids and health as JSON").set_defaults(func=cmd_info)
    p = sub.add_parser("topics", help="create the product's topics (tolerates existing ones)")
    p.add_argument("--bootstrap", help="bootstrap servers (default: this stack's Kafka)")
    cluster_flag(p)
    p.add_argument("--secure", action="store_true", help="on the secured cluster, as admin, and grant the users' ACLs")
    p.set_defaults(func=cmd_topics)
    sub.add_parser("prometheus", help="install promtool and prometheus if missing (apt-get); print their paths as JSON").set_defaults(func=cmd_prometheus)
    p = sub.add_parser("logs", help="show the last log lines")
    p.add_argument("service", nargs="?", choices=(*SERVICES, *KAFKA_CLUSTER_SERVICES, *KAFKA_SECURE_SERVICES))
    p.add_argument("-n", "--lines", type=int, default=40)
    p.add_argument("-f", "--follow", action="store_true")
    p.set_defaults(func=cmd_logs)
    for action in ("start", "stop", "restart"):
        for service in SERVICES:
            sub.add_parser(f"{action}-{service}", help=f"{action} {service} only").set_defaults(func=cmd_one)
    p = sub.add_parser("kafka-node", help="kill -9, stop, start or restart one node of the Kafka cluster")
    p.add_argument("action", choices=("kill", "stop", "start", "restart"))
    p.add_argument("node", type=int, choices=KAFKA_CLUSTER_NODES)
    p.add_argument("--secure", action="store_true", help="a node of the secured cluster")
    p.set_defaults(func=cmd_kafka_node)
    add_redis_node_commands(sub)

    args = parser.parse_args(argv)
    cfg = Config.from_env()
    try:
        return args.func(cfg, args)
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def add_redis_node_commands(sub) -> None:
    """start-, stop- and kill-redis-node N (of the Redis Cluster, or with --secure of the secured one)."""
    for action, what in (("start", "start one node again (it rejoins; a former primary comes back as a replica)"),
                         ("stop", "stop one node (SIGTERM)"), ("kill", "kill -9 one node")):
        p = sub.add_parser(f"{action}-redis-node", help=f"Redis Cluster: {what}")
        p.add_argument("node", type=int, help=f"node index 0..{2 * REDIS_CLUSTER_PRIMARIES - 1} (port = base + index)")
        p.add_argument("--secure", action="store_true", help="a node of the secured Redis Cluster")
        p.set_defaults(func=cmd_redis_node)
