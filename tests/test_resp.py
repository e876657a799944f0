"""The data plane's fast path (livegate/redis/resp.py) against a real redis-server: what it sends, what it returns,
and how it behaves when the connection is killed under it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ResponseError

from livegate.redis.bus import Batcher, read_stream
from livegate.redis.resp import FastRedis, pack


def test_pack_is_resp_for_every_argument_type() -> None:
    assert pack([("SET", "k", b"\x00v\r\n", 7), ("INCRBYFLOAT", "f", 0.5)]) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n\x00v\r\n\r\n$1\r\n7\r\n"
        b"*3\r\n$11\r\nINCRBYFLOAT\r\n$1\r\nf\r\n$3\r\n0.5\r\n")
    assert pack([("SET", "ключ", True)]) == b"*3\r\n$3\r\nSET\r\n$8\r\n" + "ключ".encode() + b"\r\n$1\r\n1\r\n"
    with pytest.raises(TypeError, match="cannot send dict"):
        pack([("SET", "k", {"a": 1})])


async def test_replies_in_order_with_errors_in_place(redis: Any) -> None:
    fast = FastRedis(redis)
    try:
        replies = await fast.execute([
            ("XADD", "s", "0-1", "m", b"a"),
            ("XADD", "s", "0-1", "m", b"again"),  # refused: an error reply, not an exception
            ("XADD", "missing", "NOMKSTREAM", "*", "m", b"x"),  # nil
            ("INCR", "n"),
        ])
    finally:
        await fast.aclose()
    assert replies[0] == b"0-1"
    assert isinstance(replies[1], ResponseError) and "equal or smaller" in str(replies[1])
    assert replies[2] is None
    assert replies[3] == 1
    assert [e[1] for e in await redis.xrange("s")] == [{b"m": b"a"}]


async def test_execute_is_not_reentrant(redis: Any) -> None:
    fast = FastRedis(redis)
    try:
        first = asyncio.ensure_future(fast.execute([("BLPOP", "nothing", 0.2)]))
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError, match="one pipeline at a time"):
            await fast.execute([("PING",)])
        assert await first == [None]
    finally:
        await fast.aclose()


async def test_a_killed_connection_is_retried_and_the_batcher_keeps_order(redis: Any) -> None:
    batcher = Batcher(redis, role="test")
    await batcher.start()
    try:
        await batcher.submit([("XADD", "log", "0-1", "m", b"1")])
        name = f"lgtest-{id(batcher)}"
        # name the batcher's held connection, then kill it between two batches
        await batcher.submit([("CLIENT", "SETNAME", name)])
        clients = await redis.client_list()
        ids = [c["id"] for c in clients if c.get("name") == name]
        assert len(ids) == 1
        assert await redis.execute_command("CLIENT", "KILL", "ID", ids[0]) in (1, b"1", True)
        replies = await asyncio.gather(*(batcher.submit([("XADD", "log", f"0-{i}", "m", str(i))]) for i in range(2, 6)))
        assert [r[0] for r in replies] == [f"0-{i}".encode() for i in range(2, 6)]
    finally:
        await batcher.aclose()
    assert [e[0] for e in await redis.xrange("log")] == [f"0-{i}".encode() for i in range(1, 6)]


async def test_read_stream_follows_a_stream_across_a_killed_connection(redis: Any) -> None:
    stop = asyncio.Event()
    got: list[bytes] = []

    async def follow() -> None:
        async for batch in read_stream(redis, "feed", last_id="0-0", block_ms=200, stop=stop):
            got.extend(f[b"m"] for _, f in batch)
            if len(got) >= 4:
                stop.set()

    task = asyncio.ensure_future(follow())
    await redis.xadd("feed", {"m": "a"})
    await redis.xadd("feed", {"m": "b"})
    async def two() -> None:
        while len(got) < 2:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(two(), 10)
    await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    await redis.xadd("feed", {"m": "c"})
    await redis.xadd("feed", {"m": "d"})
    await asyncio.wait_for(task, 10)
    assert got == [b"a", b"b", b"c", b"d"]


async def test_the_fast_path_keeps_the_clients_auth_and_database() -> None:
    """FastRedis opens its own connections from the client's settings: a password and a database number in
    the URL apply to them too."""
    from livegate.cli.devstack import RedisProcess
    from livegate.redis.connect import connect

    proc = RedisProcess(extra_args=("--requirepass", "pw-1")).start()
    base = f"redis://:pw-1@127.0.0.1:{proc.port}"
    client, db0 = connect(f"{base}/3"), connect(f"{base}/0")
    batcher = Batcher(client, role="test")
    try:
        await batcher.start()
        assert (await batcher.submit([("XADD", "authed", "0-1", "m", b"x")]))[0] == b"0-1"
        async for batch in read_stream(client, "authed", last_id="0-0", block_ms=100):
            assert [f[b"m"] for _, f in batch] == [b"x"]
            break
        assert await client.xlen("authed") == 1  # written to database 3 ...
        assert await db0.exists("authed") == 0  # ... not to the default one
    finally:
        await batcher.aclose()
        await client.aclose()
        await db0.aclose()
        proc.stop()


async def test_a_silent_redis_is_a_timeout_then_a_retry_not_a_hang() -> None:
    """Redis accepts connections but answers nothing for 1.5 s (DEBUG SLEEP): the first attempt of a pipeline
    (including its connection handshake) gives up at the deadline and is retried until Redis answers; a stream
    read gives up after its block time plus the deadline."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from livegate import metrics
    from livegate.cli.devstack import RedisProcess
    from livegate.redis.connect import connect
    from livegate.redis.resp import StreamReader

    proc = RedisProcess(extra_args=("--enable-debug-command", "yes")).start()
    client, sleeper = connect(proc.url), connect(proc.url)
    retries = metrics.REDIS_ERRORS.labels("process", "retry")
    fast = FastRedis(client, timeout_s=0.3)
    reader = StreamReader(client, "quiet", timeout_s=0.3)
    try:
        await sleeper.ping()
        before = retries._value.get()
        asleep = asyncio.ensure_future(sleeper.execute_command("DEBUG", "SLEEP", "1.5"))
        await asyncio.sleep(0.1)  # the server is now inside DEBUG SLEEP
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(RedisTimeoutError):
            await reader.read(b"0-0", count=10, block_ms=100)
        assert loop.time() - t0 < 1.2  # gave up at block + deadline, not when Redis woke up
        assert await fast.execute([("PING",)]) == [b"PONG"]
        assert retries._value.get() > before  # an attempt timed out and was retried
        await asleep
        assert await reader.read(b"0-0", count=10, block_ms=100) == []  # the reader recovers
    finally:
        await fast.aclose()
        await reader.aclose()
        await client.aclose()
        await sleeper.aclose()
        proc.stop()


async def test_a_reader_cancelled_while_it_closes_still_closes_its_connection(redis_url: str, redis: Any) -> None:
    """A shutdown cancels a stream reader while its ``finally`` is closing it (a front's outbox loop that saw its
    stop event just then): the held connection is closed anyway, not left open for the garbage collector."""
    from livegate.redis.connect import connect
    from livegate.redis.resp import StreamReader

    name = "lgtest-closing-reader"
    client = connect(redis_url, client_name=name)
    reader = StreamReader(client, "feed")

    async def open_connections() -> int:
        return sum(1 for c in await redis.client_list() if c.get("name") == name)

    try:
        assert await reader.read(b"0-0", count=1, block_ms=1) == []
        assert await open_connections() == 1
        closing = asyncio.ensure_future(reader.aclose())
        await asyncio.sleep(0)  # aclose has run up to its first suspension
        closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
        async with asyncio.timeout(5):
            while await open_connections():
                await asyncio.sleep(0.01)
    finally:
        await client.aclose()
