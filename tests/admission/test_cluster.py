"""The same scripts on a real Redis Cluster (3 masters): every script's keys share the scope's hash tag, and a
worker's renew_many pipeline spans scopes on different masters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.cluster import key_slot

from livegate.errors import GatewayError
from tests.cluster.localcluster import RedisClusterProcess
from livegate.admission.control import Admission, AdmissionConfig, admission_keys

SCOPES = ["gemini:models/gemini-live-2.5-flash", "vertex:my-proj/us-central1/live-2.5",  # slots 9049, 3878
          "gemini:models/gemini-3.1-flash-live", "vertex:my-proj/europe-west4/live-2.5",  # 158, 13294
          "vertex:other/us-east5/live-2.5", "vertex:a/b/c"]  # 14663, 9543: all three masters


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterProcess]:
    c = RedisClusterProcess(masters=3).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
async def cluster_redis(cluster: RedisClusterProcess) -> AsyncIterator[Any]:
    from livegate.redis.connect import connect

    client = connect(cluster.url)
    assert isinstance(client, RedisCluster)
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    try:
        yield client
    finally:
        await client.aclose()


async def test_admission_on_a_cluster(cluster_redis: Any) -> None:
    await cluster_redis.initialize()
    masters = {await _master(cluster_redis, admission_keys(s)[0]) for s in SCOPES}
    assert len(masters) == 3, "the scopes should spread over every master"
    cfg = AdmissionConfig.from_dict({
        "scopes": {s: {"cap": 2, "tenants": {"acme": {"guaranteed": 1}}} for s in SCOPES},
        "rate": {"default": {"per_s": 1000, "burst": 1000}}, "lease_ttl_s": 5})
    adm = Admission(cluster_redis, cfg)
    leases = [await adm.acquire(t, s, 0) for s in SCOPES for t in ("acme", "other")]
    waiter = asyncio.create_task(adm.acquire("other", SCOPES[0], 5))
    with pytest.raises(GatewayError):
        await adm.acquire("acme", SCOPES[1], 0.1)
    assert await adm.renew_many(leases) == []
    await adm.release(leases[1])  # SCOPES[0], "other"
    got = await asyncio.wait_for(waiter, 3)
    assert got.scope == SCOPES[0]
    assert await adm.on_upstream_quota_exceeded(SCOPES[2]) == 1
    assert await adm.headroom(SCOPES[2]) == 0
    for lease in [*leases, got]:
        await adm.release(lease)
    assert [await adm.headroom(s) for s in SCOPES] == [2, 2, 1, 2, 2, 2]  # SCOPES[2]: cap 1 after the quota close
    for s in SCOPES:
        assert len({key_slot(k.encode()) for k in admission_keys(s)}) == 1


async def _master(client: RedisCluster, key: str) -> str:
    node = client.get_node_from_key(key)
    assert node is not None
    return f"{node.host}:{node.port}"
