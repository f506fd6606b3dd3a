"""Groups of services: start the ones that do not run and wait until they answer, stop
them all at once, and the status line of each."""

from __future__ import annotations

import concurrent.futures
import functools
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping

from .common import Config, StackError, log_tail, port_open, running_pid, say, stop_service
from .probes import answers

#: starts one service's process (None when it already runs); kafka.start_kafka, ...
Starter = Callable[[Config], subprocess.Popen | None]


def wait_until_answers(cfg: Config, service: str, proc: subprocess.Popen | None, started: float) -> None:
    """Until the service answers; StackError (with its last log lines) when its process
    exits first, or when it does not answer within the timeout (it is stopped then)."""
    deadline = started + cfg.timeout
    detail = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            cfg.pid_file(service).unlink(missing_ok=True)
            raise StackError(
                f"{service} exited with status {proc.returncode} while starting; "
                f"last lines of {cfg.log_file(service)}:\n{log_tail(cfg.log_file(service))}"
                + _extra_log(cfg, service)
            )
        ok, detail = answers(cfg, service)
        if ok:
            return
        time.sleep(0.25)
    pid = running_pid(cfg, service)
    if pid is not None:
        stop_service(cfg, service, grace=10)
    raise StackError(
        f"{service} did not answer on 127.0.0.1:{cfg.port(service)} within {cfg.timeout:.0f}s "
        f"(last: {detail}); it was stopped. Last lines of {cfg.log_file(service)}:\n"
        f"{log_tail(cfg.log_file(service))}" + _extra_log(cfg, service)
    )


def _extra_log(cfg: Config, service: str) -> str:
    if not service.startswith("kafka"):
        return ""
    path = cfg.dir(service) / "server.log"
    return f"\nLast lines of {path}:\n{log_tail(path)}"


def _check_port_free(cfg: Config, service: str) -> None:
    for port in cfg.ports(service):
        if port_open(port):
            raise StackError(
                f"{service}: port 127.0.0.1:{port} is already taken by a process this stack "
                f"({cfg.state}) did not start. Stop it, or pick other ports with "
                "INTENTSTREAM_STACK_KAFKA_PORT / INTENTSTREAM_STACK_CONTROLLER_PORT / INTENTSTREAM_STACK_REDIS_PORT."
            )


def bring_up(cfg: Config, starters: Mapping[str, Starter]) -> None:
    """Start each service that does not run yet with its starter, then wait until all answer."""
    cfg.state.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    pending: dict[str, subprocess.Popen | None] = {}
    for service in starters:  # refuse before starting anything
        if running_pid(cfg, service) is None:
            _check_port_free(cfg, service)
    for service in starters:
        pid = running_pid(cfg, service)
        if pid is not None:
            ok, detail = answers(cfg, service)
            if ok:
                say(f"{service}: already running (pid {pid}) and answering on 127.0.0.1:{cfg.port(service)}")
                continue
            say(f"{service}: pid {pid} is running but not answering yet ({detail}); waiting")
            pending[service] = None
            continue
        proc = starters[service](cfg)
        say(f"{service}: started pid {proc.pid} on 127.0.0.1:{cfg.port(service)}, log {cfg.log_file(service)}")
        pending[service] = proc
    waiting_since = time.monotonic()  # the timeout counts from here, not from a jar download
    for service, proc in pending.items():
        wait_until_answers(cfg, service, proc, waiting_since)
        say(f"{service}: answering after {time.monotonic() - t0:.1f}s")


def stop_all(cfg: Config, services: list[str] | tuple[str, ...]) -> list[str]:
    """Stop these services all at once (a cluster node stopped last would wait for a
    quorum that is gone); the ones that were running."""
    with concurrent.futures.ThreadPoolExecutor(max(1, len(services))) as pool:
        return [s for s, done in zip(services, pool.map(functools.partial(stop_service, cfg), services)) if done]


def refuse_taken_ports(cfg: Config, services: list[str], port_of: Callable[[Config, str], int], setting: str) -> None:
    """Before starting a cluster's nodes: none of their ports may be held by a process this
    stack did not start (``setting``: the environment variable that moves them)."""
    for s in services:
        if running_pid(cfg, s) is None and port_open(port_of(cfg, s)):
            raise StackError(f"{s}: port 127.0.0.1:{port_of(cfg, s)} is already taken by a process "
                             f"this stack did not start; pick others with {setting}")  # fmt: skip


def wipe_nodes(cfg: Config, name: str, services: list[str] | tuple[str, ...], *files: str) -> None:
    """``down --wipe`` of a cluster: its nodes' directories and ``files`` in the state dir."""
    for s in services:
        shutil.rmtree(cfg.dir(s), ignore_errors=True)
    for f in files:
        (cfg.state / f).unlink(missing_ok=True)
    say(f"{name}: data deleted")


def none_running(cfg: Config, name: str, services: list[str] | tuple[str, ...], where: str, up_command: str) -> bool:
    """Whether no node of an optional cluster runs; if so, ``status`` says so in one line."""
    if any(running_pid(cfg, s) for s in services):
        return False
    say(f"{name:16} down       {where}  (optional: `{up_command}`)")
    return True


def status_rows(cfg: Config, services: list[str] | tuple[str, ...]) -> bool:
    """One line per service; whether all of them answer."""
    all_ok = True
    for service in services:
        pid = running_pid(cfg, service)
        where = f"127.0.0.1:{cfg.port(service)}"
        if pid is None:
            all_ok = False
            taken = " (port taken by another process!)" if port_open(cfg.port(service)) else ""
            say(f"{service:6} down       {where}{taken}")
            continue
        ok, detail = answers(cfg, service)
        all_ok &= ok
        say(f"{service:6} {'up' if ok else 'not-ready':10} {where}  pid {pid}  ({detail})  log {cfg.log_file(service)}")
    return all_ok
