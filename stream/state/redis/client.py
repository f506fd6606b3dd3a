"""The one place a Redis client is built from ``[redis]`` settings.

``url`` (``redis://`` or ``rediss://`` for TLS; ``redis+cluster://`` or ``rediss+cluster://``
for a Redis Cluster, the URL naming any one node: :attr:`RedisSettings.cluster
<intentstream.stream.settings.RedisSettings.cluster>`), ``password`` (Redis AUTH; empty:
none or the URL's) and ``socket_timeout_s``, which bounds connecting as well as each call,
so a Redis that is down fails fast (:class:`~intentstream.stream.state.StoreUnavailable`
in the stores) instead of hanging. Options in the URL's query string win over these.

A standalone Redis gives a ``redis.Redis``, a cluster a ``redis.cluster.RedisCluster``
(bytes replies both); the stores take either (:data:`Client`) and differ only where
:func:`is_cluster` says so (see :mod:`intentstream.stream.state.redis.journal`).

>>> from intentstream.stream.settings import RedisSettings
>>> client = make_client(RedisSettings.defaults(url="redis://127.0.0.1:1/2", socket_timeout_s=0.5))
>>> kw = client.connection_pool.connection_kwargs
>>> kw["port"], kw["db"], kw["password"], kw["socket_timeout"], kw["socket_connect_timeout"]
(1, 2, None, 0.5, 0.5)
>>> is_cluster(client)
False
>>> client.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError, ClusterError, ReadOnlyError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from intentstream.stream.settings import RedisSettings

#: What the stores take: a standalone client or a cluster client.
Client = Union[redis.Redis, RedisCluster]

#: Errors of a Redis that is down or failing over: connection errors and timeouts, and on
#: a cluster a slot with no primary yet (CLUSTERDOWN, TRYAGAIN, a slot not covered, a
#: write that reached a primary just demoted to a replica). The stores raise
#: :class:`~intentstream.stream.state.StoreUnavailable` for them: retry the step.
UNAVAILABLE: tuple[type[Exception], ...] = (
    RedisConnectionError, RedisTimeoutError,
    ClusterDownError, ClusterError, TryAgainError, SlotNotCoveredError, ReadOnlyError,
)


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def make_client(rs: RedisSettings, *, url: str | None = None, socket_timeout_s: float | None = None) -> Client:
    """A client (bytes replies) for ``rs``: ``redis.Redis``, or ``RedisCluster`` for a
    cluster URL; ``url`` and ``socket_timeout_s`` override the settings' (benchmarks point
    at another server or wait longer)."""
    from intentstream.stream.settings import cluster_url

    timeout = rs.socket_timeout_s if socket_timeout_s is None else socket_timeout_s
    target = url or rs.url
    plain = cluster_url(target)
    if plain is not None:
        return RedisCluster.from_url(
            plain,
            password=rs.password or None,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    return redis.Redis.from_url(
        target,
        password=rs.password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
