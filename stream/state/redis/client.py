"""The one place a Redis client is built from ``[redis]`` settings.

``url`` (``redis://`` or ``rediss://`` for TLS), ``password`` (Redis AUTH; empty: none or
the URL's) and ``socket_timeout_s``, which bounds connecting as well as each call, so a
Redis that is down fails fast (:class:`~intentstream.stream.state.StoreUnavailable` in the
stores) instead of hanging. Options in the URL's query string win over these.

>>> from intentstream.stream.settings import RedisSettings
>>> client = make_client(RedisSettings.defaults(url="redis://127.0.0.1:1/2", socket_timeout_s=0.5))
>>> kw = client.connection_pool.connection_kwargs
>>> kw["port"], kw["db"], kw["password"], kw["socket_timeout"], kw["socket_connect_timeout"]
(1, 2, None, 0.5, 0.5)
>>> client.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from intentstream.stream.settings import RedisSettings


def make_client(rs: RedisSettings, *, url: str | None = None, socket_timeout_s: float | None = None) -> redis.Redis:
    """A ``redis.Redis`` client (bytes replies) for ``rs``; ``url`` and ``socket_timeout_s``
    override the settings' (benchmarks point at another server or wait longer)."""
    timeout = rs.socket_timeout_s if socket_timeout_s is None else socket_timeout_s
    return redis.Redis.from_url(
        url or rs.url,
        password=rs.password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
