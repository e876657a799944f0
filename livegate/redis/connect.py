"""Connecting to Redis: one node (``redis://``, ``rediss://``) or a cluster (``redis+cluster://h:p,h:p``).

Both clients share one retry policy: a dropped connection (``CLIENT KILL``, a failover) is retried with
capped, jittered exponential backoff instead of ending sessions.

Cluster URLs: ``redis+cluster://[user:password@]host:port[,host:port...][/0][?ssl_...]`` and
``rediss+cluster://...`` (TLS). The hosts are seed nodes: the client discovers every master from them. Only
database 0 exists on a cluster. TLS options as query parameters: ``ssl_cert_reqs`` (none|optional|required),
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname`` (true|false).

On a cluster, :func:`connect` returns a :class:`livegate.redis.cluster.LiveRedisCluster` (ordered
pipelines across masters, retried commands).
"""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livegate.cleanups import keeping_cancellation
from livegate.redis.cluster import LiveRedisCluster

AnyRedis: TypeAlias = "Redis | RedisCluster"

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

_SSL_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")


class CountingRetry(Retry):
    """The shared retry policy, counting every failed attempt (a dropped connection, a failover) in
    ``livegate_redis_errors_total{op="retry"}``: retried errors never surface otherwise."""

    role = "process"

    async def call_with_retry(self, do, fail, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        from livegate import metrics

        counter = metrics.REDIS_ERRORS.labels(self.role, "retry")

        async def counted_fail(*fargs, **fkwargs):  # type: ignore[no-untyped-def]
            counter.inc()
            return await fail(*fargs, **fkwargs)

        return await super().call_with_retry(do, counted_fail, *args, **kwargs)


def _retry(role: str = "process") -> Retry:
    retry = CountingRetry(ExponentialWithJitterBackoff(base=0.02, cap=1.0), retries=10,
                          supported_errors=(RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError))
    retry.role = role
    return retry


class LiveRedis(Redis):
    """redis-py's client, except that a command never returns normally from a task cancelled meanwhile: on
    Python 3.11 redis-py 8.1's send path awaits ``asyncio.wait_for``, which loses a cancellation that arrives
    as the write completes, and the caller (a loop told to stop, a handler whose RPC ended) went on as if
    nothing happened. Here the command raises ``CancelledError`` (:func:`livegate.cleanups.keeping_cancellation`)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await keeping_cancellation(super().execute_command(*args, **options))

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return LivePipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class LivePipeline(Pipeline):
    """A pipeline of :class:`LiveRedis`: its ``execute`` keeps a cancellation the same way."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return await keeping_cancellation(super().execute(raise_on_error))


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> dict[str, Any]:
    """The ``RedisCluster`` keyword arguments a cluster URL stands for (seed nodes, credentials, TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"not a cluster URL (want {' or '.join(s + '://' for s in CLUSTER_SCHEMES)}): {url!r}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    nodes = []
    for hostport in hosts.split(","):
        hostport = hostport.strip()
        if not hostport:
            continue
        if hostport.startswith("["):  # [ipv6]:port
            host, _, rest = hostport[1:].partition("]")
            port = rest.lstrip(":")
        elif hostport.count(":") == 1:
            host, _, port = hostport.partition(":")
        else:
            host, port = hostport, ""
        try:
            nodes.append(ClusterNode(unquote(host) or "127.0.0.1", int(port or 6379)))
        except ValueError:
            raise ValueError(f"bad seed node {hostport!r} in the Redis cluster URL") from None
    if not nodes:
        raise ValueError("a Redis cluster URL needs at least one seed node: redis+cluster://host:port[,host:port]")
    db = parts.path.strip("/")
    if db not in ("", "0"):
        raise ValueError(f"a Redis Cluster only has database 0 (the URL asks for /{db})")
    kw: dict[str, Any] = {"startup_nodes": nodes, "ssl": parts.scheme.startswith("rediss"),
                          "username": unquote(username) or None, "password": unquote(password) or None}
    for name, values in parse_qs(parts.query).items():
        if name not in _SSL_OPTIONS:
            raise ValueError(f"unknown Redis cluster URL option {name!r} (known: {', '.join(_SSL_OPTIONS)})")
        value: Any = values[-1]
        if name == "ssl_check_hostname":
            value = value.lower() in ("1", "true", "yes")
        kw[name] = value
    return kw


def connect(url: str, *, client_name: str | None = None) -> Redis | RedisCluster:
    """Build a client for ``url``. No I/O happens until the first command."""
    role = (client_name or "process").split("-", 1)[0]
    common = dict(
        retry=_retry(role),
        socket_timeout=10.0,
        socket_connect_timeout=5.0,
        socket_keepalive=True,
        client_name=client_name,
        protocol=3,
    )
    if is_cluster_url(url):
        return LiveRedisCluster(**parse_cluster_url(url), max_connections=1000, **common)  # type: ignore[arg-type]
    return LiveRedis.from_url(url, max_connections=1000, **common)  # type: ignore[arg-type]


async def ping(url: str) -> bool:
    """True if a Redis answers at ``url`` (used by ``livegate dev`` to decide whether to start one)."""
    if is_cluster_url(url):
        client: Redis | RedisCluster = RedisCluster(
            **parse_cluster_url(url), socket_connect_timeout=0.5, socket_timeout=0.5,
            retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.1), retries=0))
    else:
        client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(await client.ping())
    except (RedisConnectionError, RedisTimeoutError, RedisClusterException, OSError):
        return False
    finally:
        await client.aclose()
