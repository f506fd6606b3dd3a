"""One function a subcommand of ``scripts/stack`` (cli.py parses the arguments): each
takes the settings and the parsed arguments and returns the exit status; a StackError
becomes ``stack: <message>`` and exit status 2."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .common import (
    KAFKA_VERSION, LAUNCHER, ROOT, SERVICES, Config, StackError, file_lock, kill_service, log_tail, proc_state,
    running_pid, say, send_signal, stop_service,
)  # fmt: skip
from .kafka import start_kafka
from .kafka_cluster import (
    KAFKA_CLUSTER_MIN_ISR, KAFKA_CLUSTER_NODES, KAFKA_CLUSTER_REPLICATION, KAFKA_CLUSTER_SERVICES, KAFKA_CLUSTER_STARTERS,
    kafka_cluster_bootstrap, kafka_cluster_down, kafka_cluster_env, kafka_cluster_service, kafka_cluster_status, kafka_cluster_up,
)  # fmt: skip
from .kafka_secure import (
    KAFKA_SECURE_SERVICES, KAFKA_SECURE_STARTERS, kafka_secure_bootstrap, kafka_secure_down, kafka_secure_env,
    kafka_secure_service, kafka_secure_status, kafka_secure_up,
)  # fmt: skip
from .probes import answers, kafka_secure_answers
from .programs import prometheus_bins
from .redis import start_redis
from .redis_cluster import (
    redis_cluster_down, redis_cluster_info_json, redis_cluster_services, redis_cluster_status, redis_cluster_up, redis_cluster_url,
)  # fmt: skip
from .redis_secure import (
    redis_secure_down, redis_secure_info, redis_secure_port, redis_secure_services, redis_secure_status, redis_secure_up,
    redis_secure_url, redis_worker_prefix,
)  # fmt: skip
from .secure import SECURE_USERS, password_file, secure_ca, secure_dir
from .services import Starter, bring_up, status_rows, stop_all

#: every service's starter, by name: what `up`, `start-*` and `kafka-node start` start
STARTERS: dict[str, Starter] = {"kafka": start_kafka, "redis": start_redis, **KAFKA_CLUSTER_STARTERS, **KAFKA_SECURE_STARTERS}


def print_env(cfg: Config, services: list[str]) -> None:
    if "kafka" in services:
        print(f"export INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS={cfg.kafka_bootstrap}")
    if "redis" in services:
        print(f"export INTENTSTREAM_REDIS__URL={cfg.redis_url}")


def print_cluster_env(cfg: Config, services: list[str]) -> None:
    """The export lines for the clusters of these services."""
    if "kafka" in services:
        for name, value in kafka_cluster_env(cfg).items():
            print(f"export {name}={value}")
    if "redis" in services:
        print(f"export INTENTSTREAM_REDIS__URL={redis_cluster_url(cfg)}")


def _services(args: argparse.Namespace) -> list[str]:
    if getattr(args, "kafka_only", False):
        return ["kafka"]
    if getattr(args, "redis_only", False):
        return ["redis"]
    return list(SERVICES)


def secure_topics(cfg: Config) -> None:
    """`topics --cluster --secure` in the virtualenv's Python (kafka-python): the product's
    topics and the users' ACLs, as admin."""
    python = ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        say("secure: no .venv yet: create the topics and ACLs later with `scripts/stack topics --cluster --secure`")
        return
    out = subprocess.run([str(python), str(LAUNCHER), "topics", "--cluster", "--secure"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        raise StackError(f"topics --cluster --secure failed:\n{out.stdout}{out.stderr}")
    say(out.stdout.rstrip())


def print_secure_env(cfg: Config, services: list[str], user: str = "worker") -> None:
    """The export lines for the secured clusters as ``user``: passwords are read from their
    files by the shell, never printed."""
    pw = password_file(cfg, user)
    if "kafka" in services:
        for name, value in kafka_secure_env(cfg, user).items():
            print(f"export {name}={value}")
        print(f'export INTENTSTREAM_KAFKA__SASL_PASSWORD="$(cat {pw})"')
    if "redis" in services and user != "messaging":  # no Redis user: it only reads actions.push
        print(f"export INTENTSTREAM_REDIS__URL='{redis_secure_url(cfg, user)}'")
        print(f'export INTENTSTREAM_REDIS__PASSWORD="$(cat {pw})"')
        if user == "worker":
            print(f"export INTENTSTREAM_REDIS__KEY_PREFIX={redis_worker_prefix()}  # the worker's ACL allows only keys {redis_worker_prefix()}:*")


def secure_info_json(cfg: Config) -> dict:
    kafka_nodes = {}
    for node, service in zip(KAFKA_CLUSTER_NODES, KAFKA_SECURE_SERVICES):
        pid = running_pid(cfg, service)
        broker, controller = cfg.ports(service)
        kafka_nodes[str(node)] = {"port": broker, "controller_port": controller, "pid": pid,
                                  "up": pid is not None and kafka_secure_answers(cfg, broker)[0]}
    redis_nodes = [{"name": s, "index": int(s.rsplit("-", 1)[1]), "port": redis_secure_port(cfg, s), "pid": running_pid(cfg, s)}
                   for s in redis_secure_services(cfg)]  # fmt: skip
    redis_up = all(n["pid"] for n in redis_nodes) and redis_secure_info(cfg, redis_nodes[0]["port"]).get("cluster_state") == "ok"
    return {
        "ca_file": str(secure_ca(cfg)),
        "users": {u: {"password_file": str(password_file(cfg, u))} for u in SECURE_USERS},
        "kafka": {"bootstrap": kafka_secure_bootstrap(cfg), "env": kafka_secure_env(cfg), "nodes": kafka_nodes,
                  "up": all(n["up"] for n in kafka_nodes.values())},
        "redis": {"url": redis_secure_url(cfg), "port": cfg.redis_secure_port, "worker_key_prefix": redis_worker_prefix(),
                  "nodes": redis_nodes, "up": bool(redis_up)},
    }  # fmt: skip


def cmd_up(cfg: Config, args: argparse.Namespace) -> int:
    services = _services(args)
    if args.secure and not args.cluster:
        raise StackError("--secure goes with --cluster (only the clusters have a secured flavour)")
    if args.cluster:
        if args.secure:
            kafka_up, redis_up, show_env, what = kafka_secure_up, redis_secure_up, print_secure_env, "secured clusters are up; point the worker"
        else:
            kafka_up, redis_up, show_env, what = kafka_cluster_up, redis_cluster_up, print_cluster_env, "clusters are up; point the product"
        cfg.state.mkdir(parents=True, exist_ok=True)
        with file_lock(cfg.state / ".lock"):
            if "kafka" in services:
                kafka_up(cfg)
            if "redis" in services:
                redis_up(cfg)
        if args.secure and "kafka" in services:  # the product's topics and the users' ACLs, as admin
            secure_topics(cfg)
        if not args.quiet:
            say(f"\n# the {what} at them with:")
            show_env(cfg, services)
        return 0
    with file_lock(cfg.state / ".lock"):
        bring_up(cfg, {s: STARTERS[s] for s in services})
    if not args.quiet:
        say("\n# the stack is up; point the product at it with:")
        print_env(cfg, services)
    return 0


def cmd_down(cfg: Config, args: argparse.Namespace) -> int:
    services = _services(args)
    with file_lock(cfg.state / ".lock"):
        if args.cluster or args.secure or len(services) > 1:  # plain `down`: whatever runs
            # `down --cluster` the plain clusters, `down --secure` the secured ones
            secured, plain = args.secure or not args.cluster, not args.secure
            if "redis" in services:
                if secured:
                    redis_secure_down(cfg, args.wipe)
                if plain:
                    redis_cluster_down(cfg, args.wipe)
            if "kafka" in services:
                if secured:
                    kafka_secure_down(cfg, args.wipe)
                if plain:
                    kafka_cluster_down(cfg, args.wipe)
            if args.wipe and secured and len(services) > 1:
                shutil.rmtree(secure_dir(cfg), ignore_errors=True)  # the CA and the passwords
        if args.cluster or args.secure:
            return 0
        stopped = stop_all(cfg, services)
        for s in services:
            if s not in stopped:
                say(f"{s}: not running")
        if args.wipe:
            for s in services:
                shutil.rmtree(cfg.dir(s), ignore_errors=True)
                say(f"{s}: data deleted ({cfg.dir(s)})")
    return 0


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    all_ok = status_rows(cfg, SERVICES)
    # None: never started, not part of the verdict
    clusters_ok = [kafka_cluster_status(cfg), redis_cluster_status(cfg), kafka_secure_status(cfg), redis_secure_status(cfg)]
    say(f"state dir {cfg.state}")
    if all_ok:
        print_env(cfg, list(SERVICES))
    if clusters_ok[0]:
        print("# the Kafka cluster:")
        print_cluster_env(cfg, ["kafka"])
    if clusters_ok[1]:
        print(f"# the Redis Cluster: export INTENTSTREAM_REDIS__URL={redis_cluster_url(cfg)}")
    return 0 if all_ok and False not in clusters_ok else 1


def cmd_logs(cfg: Config, args: argparse.Namespace) -> int:
    services = [args.service] if args.service else list(SERVICES)
    files = []
    for s in services:
        files.append(cfg.log_file(s))
        if s.startswith("kafka"):
            files.append(cfg.dir(s) / "server.log")
    if args.follow:
        existing = [str(f) for f in files if f.exists()]
        if not existing:
            say("no logs yet")
            return 1
        os.execvp("tail", ["tail", "-n", str(args.lines), "-F", *existing])
    for f in files:
        say(f"==> {f} <==")
        say(log_tail(f, args.lines))
    return 0


def one_service(cfg: Config, action: str, service: str) -> None:
    with file_lock(cfg.state / ".lock"):
        if action == "kill":
            kill_service(cfg, service)
        if action in ("stop", "restart") and not stop_service(cfg, service):
            say(f"{service}: not running")
        if action in ("start", "restart"):
            bring_up(cfg, {service: STARTERS[service]})


def cmd_one(cfg: Config, args: argparse.Namespace) -> int:
    one_service(cfg, *args.command.split("-", 1))
    return 0


def cmd_kafka_node(cfg: Config, args: argparse.Namespace) -> int:
    one_service(cfg, args.action, (kafka_secure_service if args.secure else kafka_cluster_service)(args.node))
    return 0


def cmd_redis_node(cfg: Config, args: argparse.Namespace) -> int:
    """stop-/kill-/start-redis-node N: one node, for fault tests (kill = SIGKILL, no grace)."""
    action = args.command.split("-", 1)[0]
    services = (redis_secure_services if args.secure else redis_cluster_services)(cfg)
    if not 0 <= args.node < len(services):
        raise StackError(f"node {args.node}: the cluster has nodes 0..{len(services) - 1}")
    service = services[args.node]
    with file_lock(cfg.state / ".lock"):
        if action == "kill":
            pid = running_pid(cfg, service)
            if pid is None:
                say(f"{service}: not running")
                return 0
            send_signal(pid, signal.SIGKILL)
            while proc_state(pid) not in (None, "Z", "X"):
                time.sleep(0.02)
            cfg.pid_file(service).unlink(missing_ok=True)
            say(f"{service}: killed pid {pid}")
        elif action == "stop":
            if not stop_service(cfg, service, grace=10):
                say(f"{service}: not running")
        elif args.secure:
            redis_secure_up(cfg, only=[service])
        else:
            redis_cluster_up(cfg, only=[service])
    return 0


def cmd_info(cfg: Config, args: argparse.Namespace) -> int:
    """Machine-readable status (JSON), for tests/conftest.py and other tools."""
    import json

    info: dict = {"state_dir": str(cfg.state), "cache_dir": str(cfg.cache), "kafka_version": KAFKA_VERSION}
    for service in SERVICES:
        pid = running_pid(cfg, service)
        ok = pid is not None and answers(cfg, service)[0]
        info[service] = {"port": cfg.port(service), "pid": pid, "up": ok}
    info["kafka"].update(bootstrap=cfg.kafka_bootstrap, controller_port=cfg.controller_port)
    info["redis"].update(url=cfg.redis_url)
    nodes = {}
    for node, service in zip(KAFKA_CLUSTER_NODES, KAFKA_CLUSTER_SERVICES):
        pid = running_pid(cfg, service)
        broker, controller = cfg.ports(service)
        nodes[str(node)] = {"port": broker, "controller_port": controller, "pid": pid, "up": pid is not None and answers(cfg, service)[0]}
    info["kafka_cluster"] = {
        "bootstrap": kafka_cluster_bootstrap(cfg), "env": kafka_cluster_env(cfg), "nodes": nodes,
        "up": all(n["up"] for n in nodes.values()), "replication_factor": KAFKA_CLUSTER_REPLICATION,
        "min_insync_replicas": KAFKA_CLUSTER_MIN_ISR,
    }  # fmt: skip
    info["redis_cluster"] = redis_cluster_info_json(cfg)
    info["secure"] = secure_info_json(cfg)
    print(json.dumps(info, indent=2))
    return 0


def cmd_env(cfg: Config, args: argparse.Namespace) -> int:
    services = _services(args)
    if args.secure:
        print_secure_env(cfg, services, args.user)
        return 0
    if args.cluster:
        print_cluster_env(cfg, services)
        return 0
    print_env(cfg, services)
    print(f"# Redis Cluster (scripts/stack up --cluster): export INTENTSTREAM_REDIS__URL={redis_cluster_url(cfg)}")
    return 0


def cmd_prometheus(cfg: Config, args: argparse.Namespace) -> int:
    """Make sure promtool and prometheus are installed; print their paths and version."""
    import json

    with file_lock(cfg.state / ".apt.lock"):  # concurrent sessions: one apt-get at a time
        bins = prometheus_bins()
    version = subprocess.run([bins["promtool"], "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(json.dumps({**bins, "version": version}, indent=2))
    return 0


def cmd_topics(cfg: Config, args: argparse.Namespace) -> int:
    try:
        import kafka.admin  # noqa: F401
    except ImportError:
        venv_python = ROOT / ".venv" / "bin" / "python"
        in_venv = Path(sys.prefix).resolve() == venv_python.parent.parent.resolve()
        if venv_python.exists() and not in_venv and not os.environ.get("_INTENTSTREAM_STACK_REEXEC"):
            os.environ["_INTENTSTREAM_STACK_REEXEC"] = "1"
            os.execv(str(venv_python), [str(venv_python), str(LAUNCHER), *sys.argv[1:]])
        raise StackError("`topics` needs kafka-python: create the virtualenv (pip install -e '.[dev]') first")
    sys.path.insert(0, str(ROOT))
    from intentstream.agents.admin import ensure_topics, product_topics
    from intentstream.stream.settings import load_settings

    env = dict(os.environ)
    env.setdefault("INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", args.bootstrap or cfg.kafka_bootstrap)
    if args.cluster:  # the cluster's brokers, and three replicas of each topic
        env.update(kafka_cluster_env(cfg))
    if args.secure:  # the secured cluster, as its admin; then the users' ACLs
        env.update(kafka_secure_env(cfg, "admin", password=True))
    settings = load_settings(env=env)
    wanted = product_topics(settings)
    try:
        result = ensure_topics(settings, wanted)
    except Exception as exc:  # NoBrokersAvailable, timeouts, ...: one line, not a traceback
        raise StackError(
            f"creating topics on {settings.kafka.bootstrap_servers} failed: {type(exc).__name__}: {exc} "
            "(is Kafka up? `scripts/stack status`)"
        ) from exc
    for name, status in result.items():
        say(f"{name:24} {wanted[name]:3} partitions  {status}")
    if args.secure:
        from intentstream.agents.admin import grant_acls, reader_acls, worker_acls

        grant_acls(settings, worker_acls(settings, "User:worker"))
        grant_acls(settings, reader_acls([settings.topics.actions_prefix + "push"], "messaging", "User:messaging"))
        say("ACLs: User:worker as the worker (agents/admin.worker_acls), User:messaging reads actions.push (group messaging)")
    return 0
