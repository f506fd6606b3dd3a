"""The Redis Cluster of ``up --cluster --redis-only``: REDIS_CLUSTER_PRIMARIES primaries
with one replica each, on cfg.redis_cluster_port .. + 2*primaries - 1 (cluster bus: port +
10000). Nodes are services named "redis-cluster-<i>" (pid file, data dir and log like the
others); `up` starts them and `redis-cli --cluster create`s the cluster once (nodes.conf
keeps the topology across restarts). Also the RESP client the stack's Redis checks use.

Sized for a 2-core 24 GiB dev box (measured there, redis-server 7.0): 6 nodes take ~13 MB
RSS each empty (~80 MB together); `up` takes ~2.3 s from nothing and ~2.2 s from stopped
nodes; cluster-node-timeout is 2 s, so a killed primary's replica is promoted ~4 s later.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from .common import Config, StackError, log_tail, running_pid, say, spawn, stop_service
from .probes import redis_answers
from .programs import redis_bin
from .services import none_running, refuse_taken_ports, wipe_nodes

REDIS_CLUSTER_PRIMARIES = 3
REDIS_CLUSTER_NODE_TIMEOUT_MS = 2000  # failure detection; a failover takes ~2-3x this


def redis_cluster_services(cfg: Config) -> list[str]:
    return [f"redis-cluster-{i}" for i in range(2 * REDIS_CLUSTER_PRIMARIES)]


def redis_cluster_node_port(cfg: Config, service: str) -> int:
    return cfg.redis_cluster_port + int(service.rsplit("-", 1)[1])


def redis_cluster_url(cfg: Config) -> str:
    """The product's setting for this cluster: a seed node under the cluster scheme
    (stream/settings.py, RedisSettings.cluster)."""
    return f"redis+cluster://127.0.0.1:{cfg.redis_cluster_port}"


def redis_cluster_command(port: int, *args: str, timeout: float = 2.0) -> object:
    """One command in RESP; the decoded reply (str, int, list, or RedisReplyError)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        sock.sendall(b"".join(parts))
        return resp_read(sock.makefile("rb"))


class RedisReplyError(Exception):
    pass


def resp_read(fh) -> object:
    line = fh.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    kind, body = line[:1], line[1:-2].decode(errors="replace")
    if kind == b"+":
        return body
    if kind == b"-":
        return RedisReplyError(body)
    if kind == b":":
        return int(body)
    if kind == b"$":
        n = int(body)
        return None if n < 0 else fh.read(n + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(body)
        return None if n < 0 else [resp_read(fh) for _ in range(n)]
    raise ConnectionError(f"unexpected reply {line[:40]!r}")


def redis_cluster_info(port: int) -> dict[str, str]:
    """CLUSTER INFO as a dict ({} when the node does not answer)."""
    try:
        text = redis_cluster_command(port, "CLUSTER", "INFO")
    except OSError:
        return {}
    if not isinstance(text, str):
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def redis_cluster_role(port: int) -> str:
    """"master", "slave" or "down" (ROLE's first field)."""
    try:
        reply = redis_cluster_command(port, "ROLE")
    except OSError:
        return "down"
    return str(reply[0]) if isinstance(reply, list) and reply else "down"


def redis_cluster_replica_link(port: int) -> str:
    """A replica's master_link_status ("up", "down"), "" for a primary or no answer."""
    try:
        text = redis_cluster_command(port, "INFO", "replication")
    except OSError:
        return ""
    fields = dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)
    return fields.get("master_link_status", "").strip() if fields.get("role") == "slave" else ""


def redis_cluster_answers(port: int) -> tuple[bool, str]:
    ok, detail = redis_answers(port)
    if not ok:
        return ok, detail
    info = redis_cluster_info(port)
    state = info.get("cluster_state", "?")
    return state == "ok", f"cluster_state:{state} {redis_cluster_role(port)}"


def redis_cluster_start_node(cfg: Config, service: str) -> subprocess.Popen | None:
    if running_pid(cfg, service) is not None:
        return None
    port = redis_cluster_node_port(cfg, service)
    home = cfg.dir(service)
    (home / "data").mkdir(parents=True, exist_ok=True)
    argv = [
        redis_bin(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--dir", str(home / "data"),
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",  # in --dir: the topology survives restarts
        "--cluster-node-timeout", str(REDIS_CLUSTER_NODE_TIMEOUT_MS),
        # a primary that is down stops only its own slots, not the whole cluster
        "--cluster-require-full-coverage", "no",
        # a replica syncs at once (the default waits 5 s to batch replicas): one that never
        # synced may not fail over (cluster-replica-validity-factor), so `up` waits for it
        "--repl-diskless-sync-delay", "0",
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--logfile", "",
    ]
    return spawn(cfg, service, argv, cwd=home)


def redis_cluster_wait_ping(cfg: Config, service: str, proc: subprocess.Popen | None, deadline: float) -> None:
    port = redis_cluster_node_port(cfg, service)
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            cfg.pid_file(service).unlink(missing_ok=True)
            raise StackError(f"{service} exited with status {proc.returncode} while starting; last lines of "
                             f"{cfg.log_file(service)}:\n{log_tail(cfg.log_file(service))}")
        if redis_answers(port)[0]:
            return
        time.sleep(0.1)
    raise StackError(f"{service} did not answer on 127.0.0.1:{port} within {cfg.timeout:.0f}s; "
                     f"last lines of {cfg.log_file(service)}:\n{log_tail(cfg.log_file(service))}")


def redis_cluster_create(cfg: Config) -> None:
    """`redis-cli --cluster create` the nodes (first half primaries, one replica each)."""
    cli = shutil.which("redis-cli") or str(Path(redis_bin()).with_name("redis-cli"))
    nodes = [f"127.0.0.1:{redis_cluster_node_port(cfg, s)}" for s in redis_cluster_services(cfg)]
    say(f"redis-cluster: creating {REDIS_CLUSTER_PRIMARIES} primaries + {REDIS_CLUSTER_PRIMARIES} replicas")
    out = subprocess.run([cli, "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True)
    log = cfg.state / "redis-cluster-create.log"
    log.write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise StackError(f"redis-cli --cluster create failed (exit {out.returncode}); see {log}:\n{log_tail(log)}")


def redis_cluster_wait_ok(cfg: Config, services: list[str], deadline: float) -> None:
    """Until every running node says cluster_state:ok, every slot is assigned and every
    replica's link to its primary is up (so the next kill of a primary fails over)."""
    detail = ""
    while time.monotonic() < deadline:
        infos = [redis_cluster_info(redis_cluster_node_port(cfg, s)) for s in services]
        if all(i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == "16384" for i in infos):
            links = [redis_cluster_replica_link(redis_cluster_node_port(cfg, s)) for s in services]
            if all(link in ("", "up") for link in links):
                return
            detail = "replicas syncing"
            time.sleep(0.1)
            continue
        detail = ", ".join(f"{s}:{i.get('cluster_state', 'down')}" for s, i in zip(services, infos))
        time.sleep(0.2)
    raise StackError(f"the Redis Cluster did not reach cluster_state:ok within {cfg.timeout:.0f}s ({detail})")


def redis_cluster_up(cfg: Config, only: list[str] | None = None) -> None:
    """Start the nodes (``only``: these), create the cluster if it never was, wait for ok."""
    t0 = time.monotonic()
    services = only or redis_cluster_services(cfg)
    refuse_taken_ports(cfg, services, redis_cluster_node_port, "INTENTSTREAM_STACK_REDIS_CLUSTER_PORT")
    procs = {s: redis_cluster_start_node(cfg, s) for s in services}
    deadline = time.monotonic() + cfg.timeout
    for s, proc in procs.items():
        redis_cluster_wait_ping(cfg, s, proc, deadline)
    first = redis_cluster_node_port(cfg, redis_cluster_services(cfg)[0])
    if only is None and redis_cluster_info(first).get("cluster_slots_assigned", "0") == "0":
        redis_cluster_create(cfg)
    redis_cluster_wait_ok(cfg, [s for s in redis_cluster_services(cfg) if running_pid(cfg, s)], deadline)
    say(f"redis-cluster: cluster_state:ok on 127.0.0.1:{first}-{first + len(redis_cluster_services(cfg)) - 1} "
        f"after {time.monotonic() - t0:.1f}s ({redis_cluster_url(cfg)})")


def redis_cluster_down(cfg: Config, wipe: bool) -> None:
    for s in reversed(redis_cluster_services(cfg)):
        if not stop_service(cfg, s, grace=10):
            continue
    if wipe:
        wipe_nodes(cfg, "redis-cluster", redis_cluster_services(cfg), "redis-cluster-create.log")


def redis_cluster_status(cfg: Config) -> bool | None:
    """Print one line per node; None when no node runs (the cluster is optional), else
    whether all are up."""
    services = redis_cluster_services(cfg)
    where = f"127.0.0.1:{cfg.redis_cluster_port}-{cfg.redis_cluster_port + len(services) - 1}"
    if none_running(cfg, "redis-cluster", services, where, "up --cluster --redis-only"):
        return None
    all_ok = True
    for s in services:
        port, pid = redis_cluster_node_port(cfg, s), running_pid(cfg, s)
        if pid is None:
            all_ok = False
            say(f"{s:16} down       127.0.0.1:{port}")
            continue
        ok, detail = redis_cluster_answers(port)
        all_ok &= ok
        say(f"{s:16} {'up' if ok else 'not-ready':10} 127.0.0.1:{port}  pid {pid}  ({detail})")
    return all_ok


def redis_cluster_info_json(cfg: Config) -> dict:
    nodes = []
    for s in redis_cluster_services(cfg):
        port, pid = redis_cluster_node_port(cfg, s), running_pid(cfg, s)
        nodes.append({"name": s, "index": int(s.rsplit("-", 1)[1]), "port": port, "pid": pid,
                      "role": redis_cluster_role(port) if pid else "down"})
    up = all(n["pid"] for n in nodes) and redis_cluster_info(nodes[0]["port"]).get("cluster_state") == "ok"
    return {"url": redis_cluster_url(cfg), "port": cfg.redis_cluster_port, "up": bool(up), "nodes": nodes}
