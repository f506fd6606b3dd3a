"""The secured Redis Cluster of ``up --cluster --secure``: like the Redis Cluster (3
primaries, one replica each), services redis-secure-<i> on INTENTSTREAM_STACK_REDIS_SECURE_PORT
(default the cluster's base + 20) .. + 5, with:

  * TLS only (`port 0`, `tls-port`): clients, replication (tls-replication) and the cluster
    bus (tls-cluster, port + 10000) all encrypted with the stack's CA and node certificate;
    clients are not asked for certificates (tls-auth-clients no): they authenticate with
    ACL users, which the cluster bus does not have (loopback only, like every port here);
  * ACL users (an aclfile per node, passwords as SHA-256 hashes): `default` off; `admin`
    everything; `replication` only what a replica sends its primary; `worker` only keys
    under `<prefix>:` (INTENTSTREAM_STACK_REDIS_WORKER_PREFIX, else INTENTSTREAM_REDIS__KEY_PREFIX,
    else "is") and the commands the stores and redis-py's RedisCluster need.

Measured here (load ~3): `up` 2.2 s of the 28 s of `up --cluster --secure`; ~16 MB RSS per node.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .common import REDIS_SECURE, Config, StackError, log_tail, running_pid, say, spawn
from .programs import redis_bin
from .redis_cluster import REDIS_CLUSTER_NODE_TIMEOUT_MS, REDIS_CLUSTER_PRIMARIES, RedisReplyError, resp_read
from .secure import ensure_tls_material, secure_ca, secure_password, tls_context
from .services import none_running, refuse_taken_ports, stop_all, wipe_nodes

#: the worker's commands: reads, writes and MULTI of its keys, its Lua scripts, WAIT (the
#: journal's replica acks), and the topology and command table RedisCluster reads; nothing
#: @dangerous (FLUSH*, KEYS, CONFIG, DEBUG, ...) but INFO
REDIS_WORKER_COMMANDS = (
    "-@all +@read +@write +@transaction +@connection -@dangerous +info +eval +evalsha +script|load +script|exists"
    " +wait +time +readonly +readwrite +command +cluster|slots +cluster|shards +cluster|nodes +cluster|info +cluster|myid"
)


def redis_secure_services(cfg: Config) -> list[str]:
    return [f"{REDIS_SECURE}-{i}" for i in range(2 * REDIS_CLUSTER_PRIMARIES)]


def redis_secure_port(cfg: Config, service: str) -> int:
    return cfg.redis_secure_port + int(service.rsplit("-", 1)[1])


def redis_worker_prefix() -> str:
    return (os.environ.get("INTENTSTREAM_STACK_REDIS_WORKER_PREFIX") or os.environ.get("INTENTSTREAM_REDIS__KEY_PREFIX") or "is").strip()


def redis_secure_url(cfg: Config, user: str = "worker") -> str:
    """The product's [redis] url for the secured cluster as ``user`` (the password goes in
    INTENTSTREAM_REDIS__PASSWORD); redis-py reads ``ssl_ca_certs`` from the query string."""
    return f"rediss+cluster://{user}@127.0.0.1:{cfg.redis_secure_port}?ssl_ca_certs={secure_ca(cfg)}"


def redis_secure_acl(cfg: Config) -> str:
    def pw(user: str) -> str:
        return "#" + hashlib.sha256(secure_password(cfg, user).encode()).hexdigest()

    return (
        "user default off resetkeys resetchannels -@all\n"
        f"user admin on {pw('admin')} ~* &* +@all\n"
        f"user replication on {pw('replication')} resetkeys resetchannels -@all +psync +replconf +ping\n"
        f"user worker on {pw('worker')} resetkeys ~{redis_worker_prefix()}:* resetchannels {REDIS_WORKER_COMMANDS}\n"
    )


def redis_secure_start_node(cfg: Config, service: str) -> subprocess.Popen | None:
    if running_pid(cfg, service) is not None:
        return None
    tls = ensure_tls_material(cfg)
    port = redis_secure_port(cfg, service)
    home = cfg.dir(service)
    (home / "data").mkdir(parents=True, exist_ok=True)
    acl = home / "users.acl"
    acl.touch(mode=0o600)
    acl.write_text(redis_secure_acl(cfg))
    conf = home / "redis.conf"  # a file, not arguments: it holds the replication password
    conf.touch(mode=0o600)
    conf.write_text("\n".join([
        "port 0", f"tls-port {port}", "bind 127.0.0.1", "protected-mode yes", "daemonize no",
        f"tls-cert-file {tls['cert']}", f"tls-key-file {tls['key']}", f"tls-ca-cert-file {tls['ca']}",
        "tls-auth-clients no", "tls-replication yes", "tls-cluster yes",
        f"aclfile {acl}", "masteruser replication", f"masterauth {secure_password(cfg, 'replication')}",
        f"dir {home / 'data'}", "cluster-enabled yes", "cluster-config-file nodes.conf",
        f"cluster-node-timeout {REDIS_CLUSTER_NODE_TIMEOUT_MS}", "cluster-require-full-coverage no",
        "repl-diskless-sync-delay 0", 'save ""', "appendonly yes", "appendfsync everysec", 'logfile ""',
    ]) + "\n")  # fmt: skip
    return spawn(cfg, service, [redis_bin(), str(conf)], cwd=home)


def redis_secure_command(cfg: Config, port: int, *args: str, user: str = "admin", timeout: float = 2.0) -> object:
    """AUTH as ``user`` over TLS, then one command; its decoded reply (RedisReplyError on -ERR)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with tls_context(cfg).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.settimeout(timeout)
            parts = []
            for command in (("AUTH", user, secure_password(cfg, user)), args):
                parts.append(f"*{len(command)}\r\n".encode())
                for a in command:
                    b = a.encode()
                    parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
            sock.sendall(b"".join(parts))
            fh = sock.makefile("rb")
            auth = resp_read(fh)
            if isinstance(auth, RedisReplyError):
                return auth
            return resp_read(fh)


def redis_secure_info(cfg: Config, port: int, section: str = "") -> dict[str, str]:
    try:
        text = redis_secure_command(cfg, port, *(("CLUSTER", "INFO") if not section else ("INFO", section)))
    except (OSError, ConnectionError):
        return {}
    if not isinstance(text, str):
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def redis_secure_up(cfg: Config, only: list[str] | None = None) -> None:
    """Start the nodes (``only``: these), create the cluster if it never was, wait for ok."""
    t0 = time.monotonic()
    services = only or redis_secure_services(cfg)
    refuse_taken_ports(cfg, services, redis_secure_port, "INTENTSTREAM_STACK_REDIS_SECURE_PORT")
    procs = {s: redis_secure_start_node(cfg, s) for s in services}
    deadline = time.monotonic() + cfg.timeout
    for s, proc in procs.items():
        while not redis_secure_info(cfg, redis_secure_port(cfg, s)):
            if proc is not None and proc.poll() is not None:
                cfg.pid_file(s).unlink(missing_ok=True)
                raise StackError(f"{s} exited with status {proc.returncode} while starting; last lines of "
                                 f"{cfg.log_file(s)}:\n{log_tail(cfg.log_file(s))}")
            if time.monotonic() > deadline:
                raise StackError(f"{s} did not answer over TLS within {cfg.timeout:.0f}s; see {cfg.log_file(s)}")
            time.sleep(0.1)
    services = [s for s in redis_secure_services(cfg) if running_pid(cfg, s)]
    first = redis_secure_port(cfg, redis_secure_services(cfg)[0])
    if only is None and redis_secure_info(cfg, first).get("cluster_slots_assigned", "0") == "0":
        cli = shutil.which("redis-cli") or str(Path(redis_bin()).with_name("redis-cli"))
        nodes = [f"127.0.0.1:{redis_secure_port(cfg, s)}" for s in services]
        say(f"{REDIS_SECURE}: creating {REDIS_CLUSTER_PRIMARIES} primaries + {REDIS_CLUSTER_PRIMARIES} replicas (TLS)")
        out = subprocess.run([cli, "--tls", "--cacert", str(secure_ca(cfg)), "--user", "admin", "--cluster", "create",
                              *nodes, "--cluster-replicas", "1", "--cluster-yes"],
                             env={**os.environ, "REDISCLI_AUTH": secure_password(cfg, "admin")},
                             stdin=subprocess.DEVNULL, capture_output=True, text=True)  # fmt: skip
        log = cfg.state / "redis-secure-create.log"
        log.write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            raise StackError(f"redis-cli --cluster create (TLS) failed (exit {out.returncode}); see {log}:\n{log_tail(log)}")
    detail = ""
    while time.monotonic() < deadline:
        infos = [redis_secure_info(cfg, redis_secure_port(cfg, s)) for s in services]
        if all(i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == "16384" for i in infos):
            repl = [redis_secure_info(cfg, redis_secure_port(cfg, s), "replication") for s in services]
            if all(r.get("role") == "master" or r.get("master_link_status", "").strip() == "up" for r in repl):
                say(f"{REDIS_SECURE}: cluster_state:ok (TLS, ACL users) on 127.0.0.1:{first}-{first + len(services) - 1} "
                    f"after {time.monotonic() - t0:.1f}s")
                return
            detail = "replicas syncing"
        else:
            detail = ", ".join(f"{s}:{i.get('cluster_state', 'down')}" for s, i in zip(services, infos))
        time.sleep(0.2)
    raise StackError(f"the secured Redis Cluster did not reach cluster_state:ok within {cfg.timeout:.0f}s ({detail})")


def redis_secure_down(cfg: Config, wipe: bool) -> None:
    stop_all(cfg, redis_secure_services(cfg))
    if wipe:
        wipe_nodes(cfg, REDIS_SECURE, redis_secure_services(cfg), "redis-secure-create.log")


def redis_secure_status(cfg: Config) -> bool | None:
    services = redis_secure_services(cfg)
    where = f"127.0.0.1:{cfg.redis_secure_port}-{cfg.redis_secure_port + len(services) - 1}"
    if none_running(cfg, REDIS_SECURE, services, where, "up --cluster --secure --redis-only"):
        return None
    all_ok = True
    for s in services:
        port, pid = redis_secure_port(cfg, s), running_pid(cfg, s)
        state = redis_secure_info(cfg, port).get("cluster_state", "?") if pid else "down"
        all_ok &= state == "ok"
        say(f"{s:16} {'up' if state == 'ok' else 'not-ready':10} 127.0.0.1:{port}  pid {pid}  (TLS, cluster_state:{state})")
    return all_ok
