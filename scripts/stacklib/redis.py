"""The single redis-server (service ``redis``): append-only, 64 databases, on
INTENTSTREAM_STACK_REDIS_PORT."""

from __future__ import annotations

import subprocess

from .common import Config, running_pid, spawn
from .programs import redis_bin


def start_redis(cfg: Config) -> subprocess.Popen | None:
    if running_pid(cfg, "redis") is not None:
        return None
    server = redis_bin()
    home = cfg.dir("redis")
    (home / "data").mkdir(parents=True, exist_ok=True)
    argv = [
        server,
        "--port", str(cfg.redis_port),
        "--bind", "127.0.0.1",
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--dir", str(home / "data"),
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--logfile", "",  # to stdout, which goes to redis.out
        "--databases", "64",  # tests take a fresh DB number each
    ]
    return spawn(cfg, "redis", argv, cwd=home)
