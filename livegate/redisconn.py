"""Connecting to Redis: one node (``redis://``, ``rediss://``) or a cluster (``redis+cluster://h:p,h:p``).

Both clients share one retry policy: a dropped connection (``CLIENT KILL``, a failover) is retried with
capped, jittered exponential backoff instead of ending sessions.
"""

from __future__ import annotations

from typing import TypeAlias
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

AnyRedis: TypeAlias = "Redis | RedisCluster"

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def _retry() -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.02, cap=1.0), retries=10,
                 supported_errors=(RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError))


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def connect(url: str, *, client_name: str | None = None) -> Redis | RedisCluster:
    """Build a client for ``url``. No I/O happens until the first command."""
    common = dict(
        retry=_retry(),
        socket_timeout=10.0,
        socket_connect_timeout=5.0,
        socket_keepalive=True,
        client_name=client_name,
        protocol=3,
    )
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        nodes = []
        for hostport in parts.netloc.rpartition("@")[2].split(","):
            host, _, port = hostport.rpartition(":")
            nodes.append(ClusterNode(host or "127.0.0.1", int(port or 6379)))
        return RedisCluster(
            startup_nodes=nodes,
            ssl=parts.scheme.startswith("rediss"),
            password=parts.password,
            username=parts.username,
            max_connections=1000,
            **common,  # type: ignore[arg-type]
        )
    return Redis.from_url(url, max_connections=1000, **common)  # type: ignore[arg-type]


async def ping(url: str) -> bool:
    """True if a Redis answers at ``url`` (used by ``livegate dev`` to decide whether to start one)."""
    client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5) if not is_cluster_url(url) else connect(url)
    try:
        return bool(await client.ping())
    except (RedisConnectionError, RedisTimeoutError, OSError):
        return False
    finally:
        await client.aclose()
