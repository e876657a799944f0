"""livegate's Redis layer on a real Redis Cluster: URLs, the ordered pipeline, the Batcher, stream reads,
scripts, RESP3, and connection drops (``CLIENT KILL``) in the middle of pipelines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

from livegate.redis import keys, records
from livegate.redis.bus import Batcher, is_stale_id_error, read_stream
from tests.cluster.localcluster import CLUSTER_SLOTS, RedisClusterProcess
from livegate.redis.cluster import (
    LiveRedisCluster, OrderedClusterPipeline, _is_explicit_xadd, already_written, execute_ordered, plan_phases,
)
from livegate.redis.connect import connect, is_cluster_url, parse_cluster_url, ping
from tests.cluster.conftest import master_of, node_client

SID_A, SID_B = "s-aaaa", "s-bbbb"


async def sids_on_distinct_masters(redis: RedisCluster, n: int = 3) -> list[str]:
    """Session ids whose keys are on ``n`` different masters (searched deterministically)."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < n:
        sid = f"s-test{i}"
        found.setdefault(await master_of(redis, keys.session_meta(sid)), sid)
        i += 1
    return list(found.values())


# -- the cluster process -------------------------------------------------------------------------------

async def test_cluster_process(redis_cluster: RedisClusterProcess, redis: Any) -> None:
    assert redis_cluster.running and len(redis_cluster.ports) == 3
    assert redis_cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in redis_cluster.ports)
    owners = redis_cluster.slot_owners()
    assert sorted(owners) == sorted(redis_cluster.ports)
    assert sum(hi - lo + 1 for ranges in owners.values() for lo, hi in ranges) == CLUSTER_SLOTS
    for port in redis_cluster.ports:
        assert redis_cluster.cluster_info(port)["cluster_state"] == "ok"
    key = keys.session_meta(SID_A)
    assert redis_cluster.port_for_slot(redis.keyslot(key)) == await master_of(redis, key)
    assert {n.port for n in redis.get_primaries()} == set(redis_cluster.ports)


def test_password_cluster_and_clean_stop() -> None:
    cluster = RedisClusterProcess(masters=3, password="s3cr:et@x").start()
    try:
        assert cluster.url.startswith("redis+cluster://default:s3cr%3Aet%40x@127.0.0.1:")

        async def use() -> None:
            assert await ping(cluster.url)
            client = connect(cluster.url)
            try:
                await client.set("lg:{x}:k", "v")
                assert await client.get("lg:{x}:k") == b"v"
            finally:
                await client.aclose()
            assert not await ping(cluster.url.replace("s3cr%3Aet%40x", "wrong"))

        asyncio.run(use())
        tmp = Path(cluster._dir.name)  # type: ignore[union-attr]
        procs = list(cluster.procs)
    finally:
        cluster.stop()
    assert not tmp.exists() and all(p.poll() is not None for p in procs)
    assert cluster.procs == []


# -- URLs ------------------------------------------------------------------------------------------------

def test_cluster_urls() -> None:
    assert is_cluster_url("redis+cluster://a:1,b:2") and is_cluster_url("rediss+cluster://a:1")
    assert not is_cluster_url("redis://127.0.0.1:6379/0")
    kw = parse_cluster_url("rediss+cluster://app:p%40ss@r1.example:7000,r2.example:7001,[::1]:7002,r4/0"
                           "?ssl_cert_reqs=none&ssl_check_hostname=false")
    assert [(n.host, n.port) for n in kw["startup_nodes"]] == [("r1.example", 7000), ("r2.example", 7001),
                                                                ("::1", 7002), ("r4", 6379)]
    assert kw["ssl"] is True and kw["username"] == "app" and kw["password"] == "p@ss"
    assert kw["ssl_cert_reqs"] == "none" and kw["ssl_check_hostname"] is False
    plain = parse_cluster_url("redis+cluster://127.0.0.1:7000")
    assert plain["ssl"] is False and plain["password"] is None and plain["username"] is None
    with pytest.raises(ValueError, match="database 0"):
        parse_cluster_url("redis+cluster://127.0.0.1:7000/3")
    with pytest.raises(ValueError, match="unknown Redis cluster URL option"):
        parse_cluster_url("redis+cluster://127.0.0.1:7000?db=1")
    with pytest.raises(ValueError, match="seed node"):
        parse_cluster_url("redis+cluster://")
    client = connect("rediss+cluster://u:p@127.0.0.1:7000,127.0.0.1:7001", client_name="front-x")
    assert isinstance(client, LiveRedisCluster)
    node = client.nodes_manager.startup_nodes["127.0.0.1:7000"]
    assert node.connection_kwargs["password"] == "p" and node.connection_kwargs["username"] == "u"
    assert node.connection_kwargs["protocol"] == 3 and node.connection_kwargs["client_name"] == "front-x"
    assert "SSL" in node.connection_class.__name__


async def test_ping(redis_url: str) -> None:
    assert await ping(redis_url)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert not await ping("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    assert loop.time() - t0 < 3.0


# -- commands livegate uses ------------------------------------------------------------------------------

async def test_resp3_scripts_streams_and_groups(redis: Any) -> None:
    sid = SID_A
    await redis.hset(keys.session_meta(sid), mapping={"worker": "", "tenant": "t", "epoch": 0})
    assert await records.claim(redis, sid, "w1") == 1  # EVAL routed by its keys (meta and s2c log: one slot)
    assert await records.claim(redis, sid, "w2") == 0
    assert await redis.hget(keys.session_meta(sid), "worker") == b"w1"
    # RESP3: maps come back as dicts
    assert isinstance(await redis.hgetall(keys.session_meta(sid)), dict)
    await redis.xgroup_create(keys.ALLOC_STREAM, keys.ALLOC_GROUP, id="0", mkstream=True)
    await redis.xadd(keys.ALLOC_STREAM, {"s": sid})
    reply = await redis.xreadgroup(keys.ALLOC_GROUP, "w1", {keys.ALLOC_STREAM: ">"}, count=1, block=100)
    assert isinstance(reply, dict) and list(reply) == [keys.ALLOC_STREAM.encode()]
    info = await redis.xinfo_stream(keys.ALLOC_STREAM)
    assert info["length"] == 1 and info["last-generated-id"]
    # a multi-key DEL of one session's keys: one slot, one command (the claim created the s2c log)
    await redis.xadd(keys.session_c2s(sid), {"m": b"x"}, id="0-1")
    assert await redis.delete(*keys.session_keys(sid)) == 3


async def test_read_stream_follows_a_key_from_dollar(redis: Any) -> None:
    key = keys.worker_inbox("w1")
    await redis.xadd(key, {"s": "before"})
    got: list[bytes] = []
    stop = asyncio.Event()

    async def follow() -> None:
        async for batch in read_stream(redis, key, block_ms=100, stop=stop):
            got.extend(f[b"s"] for _, f in batch)
            if len(got) >= 2:
                stop.set()

    task = asyncio.create_task(follow())
    await asyncio.sleep(0)  # let it resolve "$"
    for _ in range(100):
        if task.done():
            break
        await redis.xadd(key, {"s": "after"})
        if got:
            break
        await asyncio.sleep(0.02)
    await redis.xadd(key, {"s": "after"})
    await asyncio.wait_for(task, 5)
    assert got[:2] == [b"after", b"after"]  # "$" was resolved: the entry from before is not replayed


# -- ordering across masters ---------------------------------------------------------------------------------

async def test_plan_phases(redis: Any) -> None:
    a, b, c = await sids_on_distinct_masters(redis)
    inbox = keys.worker_inbox("w1")
    inbox_master = await master_of(redis, inbox)
    # the hot path: [log(sid), inbox] groups for many sessions -> two phases whatever the batch size
    groups = [[("XADD", keys.session_c2s(s), "0-1", "m", b"x"), ("XADD", inbox, "*", "s", s)] for s in (a, b, c) * 5]
    cmds = [(cmd, {}) for g in groups for cmd in g]
    phases, errors = await plan_phases(redis, cmds, [2] * len(groups))
    assert set(phases) <= {0, 1} and errors == [None] * len(cmds)
    inbox_phases = [p for (cmd, _), p in zip(cmds, phases) if cmd[1] == inbox]
    assert [p for (cmd, _), p in zip(cmds, phases) if cmd[1] != inbox] == [0] * len(groups)  # every log first
    assert inbox_phases == sorted(inbox_phases) and inbox_phases[-1] == 1  # the inbox in submission order
    remote = [await master_of(redis, keys.session_c2s(s)) != inbox_master for s in (a, b, c)]
    first_remote = remote.index(True)
    assert inbox_phases[:first_remote] == [0] * first_remote and inbox_phases[first_remote] == 1
    # an end after the last message: the outbox entry after the last message's outbox entry, the DEL after both
    outbox = keys.front_outbox("f1")
    end_groups = [[("XADD", keys.session_s2c(a), "0-9", "m", b"x"), ("XADD", outbox, "*", "q", 9)],
                  [("XADD", outbox, "*", "k", "end"), ("DEL", *keys.session_keys(a))]]
    cmds = [(cmd, {}) for g in end_groups for cmd in g]
    phases, _ = await plan_phases(redis, cmds, [2, 2])
    assert phases[1] <= phases[2] and phases[3] >= phases[2] and phases[3] >= phases[0]
    # a plain pipeline (one group): every change of master is a new phase
    plain = [(("HSET", keys.session_meta(a), "x", 1), {}), (("EXPIRE", keys.session_meta(a), 10), {}),
             (("ZADD", keys.tenant_sessions("t"), 1, a), {}), (("XADD", keys.ALLOC_STREAM, "*", "s", a), {})]
    phases, _ = await plan_phases(redis, plain, [4])
    assert phases == sorted(phases) and phases[0] == phases[1]
    masters = [await master_of(redis, cmd[1]) for cmd, _ in plain]
    for i in range(1, 4):
        assert phases[i] == phases[i - 1] + (masters[i] != masters[i - 1])


async def test_pipeline_keeps_order_across_masters(redis: Any, redis_url: str) -> None:
    """The front's open_session pipeline (record, tenant index, then the allocation entry): a worker that
    reads the allocation entry always finds the record. redis-py's own ClusterPipeline sends each master its
    share in parallel, so the entry can come first."""
    assert isinstance(redis.pipeline(), OrderedClusterPipeline)
    reader = connect(redis_url)
    try:
        await redis.xadd(keys.ALLOC_STREAM, {"s": "-"})
        last = (await redis.xinfo_stream(keys.ALLOC_STREAM))["last-generated-id"]
        for i in range(40):
            sid = f"s-order{i}"
            read = asyncio.create_task(reader.xread({keys.ALLOC_STREAM: last}, count=1, block=2000))
            await asyncio.sleep(0.005)
            pipe = redis.pipeline(transaction=False)
            pipe.hset(keys.session_meta(sid), mapping={"tenant": "t", "worker": ""})
            pipe.expire(keys.session_meta(sid), 60)
            pipe.zadd(keys.tenant_sessions("t"), {sid: i})
            pipe.xadd(keys.ALLOC_STREAM, {"s": sid})
            assert len(await pipe.execute()) == 4
            reply = await read
            entries = list(reply.values())[0][0]
            last = entries[-1][0]
            assert entries[0][1][b"s"] == sid.encode()
            # what a worker does next: claim the record
            assert await records.claim(reader, sid, "w1") == 1, f"record of {sid} missing when its entry was read"
    finally:
        await reader.aclose()


async def test_batcher_on_the_cluster(redis: Any) -> None:
    a, b, _ = await sids_on_distinct_masters(redis)
    batcher = Batcher(redis)
    await batcher.start()
    try:
        await redis.hset(keys.session_meta(a), mapping={"worker": "w1", "epoch": 1})
        fut_a = batcher.submit([
            ("XADD", keys.session_s2c(a), "MAXLEN", "~", 100, "0-1", "m", b"one", "t", 1),
            ("XADD", keys.front_outbox("f1"), "MAXLEN", "~", 100, "*", "s", a, "q", 1),
            ("EXPIRE", keys.session_s2c(a), 60),
            ("EVAL", records.FENCED_HSET, 1, keys.session_meta(a), "w1", 1, "handle", "h1"),
            ("XTRIM", keys.session_s2c(a), "MINID", "0-1")])
        bad = batcher.submit([("DEL", keys.session_meta(a), keys.session_meta(b))])  # CROSSSLOT: fails alone
        fut_b = batcher.submit([("XADD", keys.session_s2c(b), "0-1", "m", b"b"),
                                ("XADD", keys.session_s2c(b), "NOMKSTREAM", "0-1", "m", b"again")])
        ra, rbad, rb = await asyncio.gather(fut_a, bad, fut_b)
        assert ra[0] == b"0-1" and ra[1] and ra[2] == 1 and ra[3] == 1 and ra[4] == 0
        assert len(rbad) == 1 and "CROSSSLOT" in str(rbad[0])
        assert rb[0] == b"0-1" and is_stale_id_error(rb[1])  # a real fence is still reported
        assert await redis.hget(keys.session_meta(a), "handle") == b"h1"
        # a fenced writer (other content at that id) stays fenced; our own entry is recognised
        assert await already_written(redis, ("XADD", keys.session_s2c(b), "NOMKSTREAM", "0-1", "m", b"b")) == b"0-1"
        assert await already_written(redis, ("XADD", keys.session_s2c(b), "0-1", "m", b"other")) is None
    finally:
        await batcher.aclose()


def test_explicit_xadd_parsing() -> None:
    assert _is_explicit_xadd(("XADD", "k", "NOMKSTREAM", "MAXLEN", "~", 10, "0-3", "m", b"x", "t", 5)) == (
        "k", "0-3", {b"m": b"x", b"t": b"5"})
    assert _is_explicit_xadd(("XADD", "k", "MINID", "0-2", "0-3", "m", b"x")) == ("k", "0-3", {b"m": b"x"})
    assert _is_explicit_xadd(("XADD", "k", "MAXLEN", "~", 10, "*", "m", b"x")) is None
    assert _is_explicit_xadd(("HSET", "k", "a", 1)) is None


async def test_connection_killed_between_pipelines_is_retried(redis: Any, redis_cluster: RedisClusterProcess) -> None:
    """After ``CLIENT KILL`` every pooled connection is dead. redis-py's ClusterPipeline then returns
    ConnectionError objects as the commands' replies (raise_on_error=False), so an XADD would be silently
    lost; the ordered execution retries them."""
    sids = await sids_on_distinct_masters(redis)
    for s in sids:  # open a pooled connection to every master
        await redis.xadd(keys.session_c2s(s), {"m": b"0"}, id="0-1")
    from livegate import metrics

    retries = metrics.REDIS_ERRORS.labels("process", "retry")
    before = retries._value.get()
    for round_ in range(2, 5):
        for port in redis_cluster.ports:
            async with node_client(port) as node:
                await node.execute_command("CLIENT", "KILL", "TYPE", "normal")
        cmds = [(("XADD", keys.session_c2s(s), "NOMKSTREAM", f"0-{round_}", "m", b"x"), {}) for s in sids]
        cmds += [(("XADD", keys.worker_inbox("w1"), "*", "s", s), {}) for s in sids]
        replies = await execute_ordered(redis, cmds, [1] * len(cmds))
        assert not [r for r in replies if isinstance(r, Exception)], replies
        assert replies[:3] == [f"0-{round_}".encode()] * 3
    for s in sids:
        assert [e[0] for e in await redis.xrange(keys.session_c2s(s))] == [b"0-1", b"0-2", b"0-3", b"0-4"]
    assert retries._value.get() > before  # counted in livegate_redis_errors_total{op="retry"}
    # the plain client commands survive a kill too
    for port in redis_cluster.ports:
        async with node_client(port) as node:
            await node.execute_command("CLIENT", "KILL", "TYPE", "normal")
    assert await redis.xlen(keys.session_c2s(sids[0])) == 4


async def test_redis_py_cluster_pipeline_returns_connection_errors_as_replies(
        redis: Any, redis_cluster: RedisClusterProcess) -> None:
    """The library behaviour the ordered execution works around (if redis-py starts retrying these, the
    workaround is harmless)."""
    key = keys.session_c2s(SID_A)
    await redis.xadd(key, {"m": b"0"}, id="0-1")
    port = await master_of(redis, key)
    async with node_client(port) as node:
        await node.execute_command("CLIENT", "KILL", "TYPE", "normal")
    pipe = ClusterPipeline(redis)
    pipe.execute_command("XADD", key, "0-2", "m", b"x")
    replies = await pipe.execute(raise_on_error=False)
    if isinstance(replies[0], Exception):
        assert "Connection" in type(replies[0]).__name__ or "connection" in str(replies[0]).lower()
        assert await redis.xlen(key) == 1  # lost, not retried
    else:  # pragma: no cover - a redis-py that retries
        assert replies == [b"0-2"]


async def test_stream_reads_cost_one_round_trip(redis: Any, redis_cluster: RedisClusterProcess) -> None:
    """XREAD/XREADGROUP have movable keys: redis-py would ask ``COMMAND GETKEYS`` twice before every read."""
    inbox = keys.worker_inbox("w1")
    await redis.xadd(inbox, {"s": "x"})
    await redis.xgroup_create(keys.ALLOC_STREAM, keys.ALLOC_GROUP, id="0", mkstream=True)
    for port in redis_cluster.ports:
        async with node_client(port) as node:
            await node.config_resetstat()
    for _ in range(5):
        assert await redis.xread({inbox: "0-0"}, count=10, block=10)
        await redis.xreadgroup(keys.ALLOC_GROUP, "w1", {keys.ALLOC_STREAM: ">"}, count=1, block=10)
    calls: dict[str, int] = {}
    for port in redis_cluster.ports:
        async with node_client(port) as node:
            for name, st in (await node.info("commandstats")).items():
                calls[name] = calls.get(name, 0) + int(st["calls"])
    assert calls.get("cmdstat_xread") == 5 and calls.get("cmdstat_xreadgroup") == 5
    assert not [n for n in calls if "getkeys" in n], calls
    with pytest.raises(Exception, match="same key slot"):
        await redis.xread({keys.worker_inbox("w1"): "0-0", keys.front_outbox("f1"): "0-0"}, block=10)


async def test_unordered_pipeline_is_one_phase(redis: Any) -> None:
    from livegate.redis.cluster import unordered_pipeline

    sids = await sids_on_distinct_masters(redis)
    for s in sids:
        await redis.hset(keys.session_meta(s), "x", 1)
    pipe = unordered_pipeline(redis)
    for s in sids * 3:
        for k in keys.session_keys(s):
            pipe.expire(k, 60)
    replies = await pipe.execute()
    assert replies == [True, False, False] * 9  # only meta exists; every command ran
    plan, _ = await plan_phases(redis, [(("EXPIRE", k, 60), {}) for s in sids * 3 for k in keys.session_keys(s)],
                                [1] * 27)
    assert set(plan) == {0}
