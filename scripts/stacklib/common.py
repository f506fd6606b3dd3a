"""What every part of the stack shares: where things are, the settings read from
``INTENTSTREAM_STACK_*``, and the processes behind the pid files in the state dir.

Every service (``kafka``, ``redis``, ``kafka-cluster-2``, ``redis-secure-4``, ...) is one
background process with its own data dir (``<state>/<service>``), pid file
(``<state>/<service>.pid``) and stdout log (``<state>/<service>/<service>.out``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: the executable beside this package: ``topics`` and ``up --secure`` run it again, in the virtualenv
LAUNCHER = Path(__file__).resolve().parent.parent / "stack"
ROOT = LAUNCHER.parent.parent
KAFKA_VERSION = "4.1.1"
SERVICES = ("kafka", "redis")
#: the Kafka cluster's services are KAFKA_CLUSTER-<node id> (state dirs, pid files, logs)
KAFKA_CLUSTER = "kafka-cluster"
KAFKA_CLUSTER_HEAP = "-Xms128m -Xmx384m"
#: the secured Kafka cluster's services are KAFKA_SECURE-<node id>, the Redis Cluster's REDIS_SECURE-<i>
KAFKA_SECURE = "kafka-secure"
REDIS_SECURE = "redis-secure"


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        sys.exit(f"stack: {name}={text!r} is not an integer")


@dataclass(frozen=True)
class Config:
    state: Path
    cache: Path
    kafka_port: int
    controller_port: int
    redis_port: int
    redis_cluster_port: int
    timeout: float
    heap_opts: list[str]
    kafka_cluster_port: int
    kafka_cluster_heap_opts: list[str]
    kafka_secure_port: int
    redis_secure_port: int

    @classmethod
    def from_env(cls) -> "Config":
        return cls(
            state=Path(os.environ.get("INTENTSTREAM_STACK_DIR") or ROOT / ".stack").resolve(),
            cache=Path(os.environ.get("INTENTSTREAM_STACK_CACHE") or ROOT / ".cache").resolve(),
            kafka_port=_env_int("INTENTSTREAM_STACK_KAFKA_PORT", 19092),
            controller_port=_env_int("INTENTSTREAM_STACK_CONTROLLER_PORT", 19093),
            redis_port=_env_int("INTENTSTREAM_STACK_REDIS_PORT", 16379),
            redis_cluster_port=_env_int("INTENTSTREAM_STACK_REDIS_CLUSTER_PORT", 17000),
            timeout=float(_env_int("INTENTSTREAM_STACK_TIMEOUT", 90)),
            heap_opts=(os.environ.get("INTENTSTREAM_STACK_KAFKA_HEAP_OPTS") or "-Xms256m -Xmx768m").split(),
            kafka_cluster_port=_env_int("INTENTSTREAM_STACK_KAFKA_CLUSTER_PORT", 19192),
            kafka_cluster_heap_opts=(os.environ.get("INTENTSTREAM_STACK_KAFKA_CLUSTER_HEAP_OPTS") or KAFKA_CLUSTER_HEAP).split(),
            # the secured clusters (`up --cluster --secure`) run beside the plain ones, 20 ports up
            kafka_secure_port=_env_int("INTENTSTREAM_STACK_KAFKA_SECURE_PORT", _env_int("INTENTSTREAM_STACK_KAFKA_CLUSTER_PORT", 19192) + 20),
            redis_secure_port=_env_int("INTENTSTREAM_STACK_REDIS_SECURE_PORT", _env_int("INTENTSTREAM_STACK_REDIS_CLUSTER_PORT", 17000) + 20),
        )

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def libs(self) -> Path:
        return self.cache / "kafka" / KAFKA_VERSION / "libs"

    def dir(self, service: str) -> Path:
        return self.state / service

    def pid_file(self, service: str) -> Path:
        return self.state / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        # stdout/stderr of the process; Kafka's own log4j file is kafka/server.log
        return self.dir(service) / f"{service}.out"

    def ports(self, service: str) -> list[int]:
        """Every port the service listens on, the one clients use first."""
        if service == "kafka":
            return [self.kafka_port, self.controller_port]
        if service.startswith(KAFKA_CLUSTER):  # kafka-cluster-<node id>: broker, controller
            broker = self.kafka_cluster_port + 2 * (int(service.rsplit("-", 1)[1]) - 1)
            return [broker, broker + 1]
        if service.startswith(KAFKA_SECURE):  # kafka-secure-<node id>: SASL_SSL broker, SSL controller
            broker = self.kafka_secure_port + 2 * (int(service.rsplit("-", 1)[1]) - 1)
            return [broker, broker + 1]
        return [self.redis_port]

    def port(self, service: str) -> int:
        return self.ports(service)[0]


class StackError(Exception):
    pass


def say(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- processes


def proc_state(pid: int) -> str | None:
    """The /proc state letter (R, S, Z, ...) or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return "?"
        return "?"
    return stat.rsplit(")", 1)[1].split()[0]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


_SIGNATURE = {"kafka": "kafka.Kafka", "redis": "redis-server"}


def running_pid(cfg: Config, service: str) -> int | None:
    """The pid of our live process for this service, or None (cleaning a stale pid file)."""
    pf = cfg.pid_file(service)
    try:
        pid = int(pf.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    state = proc_state(pid)
    cmd = _cmdline(pid)
    # "redis-cluster-3" is a redis-server too
    if state is None or state in ("Z", "X") or (cmd and _SIGNATURE[service.split("-", 1)[0]] not in cmd):
        # dead, a zombie, or the pid was reused by something else: not ours any more
        pf.unlink(missing_ok=True)
        return None
    return pid


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def spawn(cfg: Config, service: str, argv: list[str], cwd: Path) -> subprocess.Popen:
    log = cfg.log_file(service)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session: no terminal signals, survives this script
            close_fds=True,
        )
    cfg.pid_file(service).write_text(f"{proc.pid}\n")
    return proc


def stop_service(cfg: Config, service: str, grace: float = 30.0) -> bool:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. True if something was stopped."""
    pid = running_pid(cfg, service)
    if pid is None:
        cfg.pid_file(service).unlink(missing_ok=True)
        return False
    say(f"{service}: stopping pid {pid}")
    send_signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc_state(pid) in (None, "Z", "X"):
            break
        time.sleep(0.1)
    else:
        say(f"{service}: still running after {grace:.0f}s, sending SIGKILL")
        send_signal(pid, signal.SIGKILL)
        for _ in range(100):
            if proc_state(pid) in (None, "Z", "X"):
                break
            time.sleep(0.1)
    # the process led its own session (start_new_session): take down any child it left
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    cfg.pid_file(service).unlink(missing_ok=True)
    return True


def kill_service(cfg: Config, service: str) -> None:
    """SIGKILL, no shutdown at all: what a crash or an OOM kill looks like (fault tests)."""
    pid = running_pid(cfg, service)
    if pid is None:
        raise StackError(f"{service}: not running")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # its own session (start_new_session)
    while proc_state(pid) not in (None, "Z", "X"):
        time.sleep(0.05)
    cfg.pid_file(service).unlink(missing_ok=True)
    say(f"{service}: killed pid {pid} (SIGKILL)")


def send_signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@contextlib.contextmanager
def file_lock(path: Path):
    """Hold an exclusive flock on ``path`` while the block runs: concurrent `up`, `down` and
    fault commands on one state dir take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
