"""The programs the stack runs, found on PATH (or named by ``INTENTSTREAM_STACK_JAVA``,
``_MVN``, ``_REDIS_SERVER``, ``_PROMTOOL``, ``_PROMETHEUS``); redis-server, mvn and
prometheus are installed with apt-get when missing and this runs as root (java is not)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .common import StackError, say


def which(env_name: str, program: str) -> str | None:
    explicit = os.environ.get(env_name)
    if explicit:
        return explicit
    return shutil.which(program)


def apt_install(package: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(f"{package} is not installed; install it (e.g. `sudo apt-get install -y {package}`)")
    say(f"stack: installing {package} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", package]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL, check=False)
        if subprocess.run(cmd, env=env).returncode != 0:
            raise StackError(f"apt-get install {package} failed")


def java_bin() -> str:
    java = which("INTENTSTREAM_STACK_JAVA", "java")
    if not java and os.environ.get("JAVA_HOME"):
        java = str(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    if not java:
        raise StackError("java (17 or newer) is not installed; Kafka 4 needs it (apt-get install openjdk-17-jre-headless)")
    return java


def redis_bin() -> str:
    found = which("INTENTSTREAM_STACK_REDIS_SERVER", "redis-server")
    if not found:
        apt_install("redis-server")
        found = shutil.which("redis-server") or "/usr/bin/redis-server"
    return found


def prometheus_bins() -> dict[str, str]:
    """promtool and prometheus (Debian's package ``prometheus`` has both), installed with
    apt-get when missing and running as root; StackError when that is impossible."""
    found = {
        "promtool": which("INTENTSTREAM_STACK_PROMTOOL", "promtool"),
        "prometheus": which("INTENTSTREAM_STACK_PROMETHEUS", "prometheus"),
    }
    if not all(found.values()):
        apt_install("prometheus")
        for name in found:
            found[name] = found[name] or shutil.which(name) or f"/usr/bin/{name}"
    for name, path in found.items():
        if not os.access(path, os.X_OK):
            raise StackError(f"{name} not found at {path} (package prometheus)")
    return found
