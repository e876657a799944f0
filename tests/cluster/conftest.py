"""One real Redis Cluster (3 masters, no replicas) for the whole run; the shared ``stack``/``client`` fixtures
of tests/conftest.py run on it because ``redis_url`` and ``redis`` are overridden here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.cluster import key_slot

from tests.cluster.localcluster import RedisClusterProcess


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcess]:
    cluster = RedisClusterProcess(masters=3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_url(redis_cluster: RedisClusterProcess) -> str:
    return redis_cluster.url


@pytest.fixture
async def redis(redis_url: str, redis_cluster: RedisClusterProcess) -> AsyncIterator[Any]:
    """A cluster client; every master is flushed before the test (checked on each master directly)."""
    from livegate.redis.connect import connect

    client = connect(redis_url)
    assert isinstance(client, RedisCluster)
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    for port in redis_cluster.ports:
        async with node_client(port) as node:
            assert await node.dbsize() == 0, f"master {port} not flushed"
    try:
        yield client
    finally:
        await client.aclose()


def node_client(port: int) -> Redis:
    """A plain (non-cluster) connection to one master."""
    return Redis(host="127.0.0.1", port=port, protocol=3, socket_timeout=5)


def slot_of(key: str) -> int:
    return key_slot(key.encode())


async def master_of(redis: RedisCluster, key: str) -> int:
    """The port of the master serving ``key``, asked of the cluster itself (CLUSTER KEYSLOT + CLUSTER SLOTS)."""
    slot = int(await redis.cluster_keyslot(key))
    assert slot == slot_of(key)
    return int(redis.nodes_manager.get_node_from_slot(slot).port)


async def keys_by_master(ports: list[int]) -> dict[int, list[str]]:
    out = {}
    for port in ports:
        async with node_client(port) as node:
            out[port] = sorted(k.decode() for k in await node.keys("*"))
    return out


async def wait_for(predicate: Any, timeout_s: float = 10.0, interval_s: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value {value!r})")
        await asyncio.sleep(interval_s)
