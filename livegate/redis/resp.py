"""The data plane's fast path to one Redis node: pipelines packed once, read with one timeout.

Every relayed frame costs a few Redis commands (an XADD to a session log and to a worker inbox or front
outbox). Through redis-py's ``Pipeline`` each command pays for argument encoding, per-command bookkeeping
and, per reply, an ``asyncio.timeout`` (a timer handle and a ``get_running_loop`` call): on the benchmark's
profile that was a third of a worker's CPU. Here a batch is packed into one buffer by :func:`pack`, written
with one write, and its replies are read off the connection with one deadline around the whole exchange.

:class:`FastRedis` runs the Batcher's pipelines and :class:`StreamReader` a process's ``XREAD BLOCK`` loop, each
on a :class:`HeldConnection` (redis-py's pool probes a connection at every checkout). Connections,
AUTH, TLS, ``SELECT``, RESP3 and the hiredis parser are still redis-py's, built from the client's own
settings minus the per-reply socket timeout; the deadline around each exchange covers a reconnect and its
handshake too. A connection that fails or times out mid-exchange is dropped (never reused with replies in
flight) and a pipeline is retried under the client's retry policy, as ``Pipeline.execute`` does.

Redis Cluster keeps redis-py's cluster client (see :mod:`livegate.redis.connect`): a batch there spans masters.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from functools import partial
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = Sequence[Any]
Entry = tuple[bytes, dict[bytes, bytes]]



def _arg(a: Any) -> bytes:
    if type(a) is bytes:
        return a
    if type(a) is str:
        return a.encode()
    if type(a) is int or type(a) is bool:
        return b"%d" % a
    if isinstance(a, float):
        return repr(a).encode()
    if isinstance(a, (bytes, bytearray, memoryview)):
        return bytes(a)
    raise TypeError(f"cannot send {type(a).__name__} to Redis: {a!r:.80}")


# Encoded string arguments (command names, keys, field names repeat frame after frame): bounded, cleared when full.
_ENCODED: dict[str, bytes] = {}
_ENCODED_MAX = 8192


def pack(commands: Sequence[Command]) -> bytes:
    """RESP for ``commands``, all in one buffer (args: bytes, str (UTF-8), int, float)."""
    out = bytearray()
    enc = _ENCODED
    for cmd in commands:
        out += b"*%d\r\n" % len(cmd)
        for a in cmd:
            t = type(a)
            if t is bytes:
                out += b"$%d\r\n" % len(a)
                out += a
                out += b"\r\n"
            elif t is str:
                e = enc.get(a)
                if e is None:
                    b = a.encode()
                    e = b"$%d\r\n%b\r\n" % (len(b), b)
                    if len(enc) >= _ENCODED_MAX:
                        enc.clear()
                    enc[a] = e
                out += e
            else:
                b = b"%d" % a if t is int else _arg(a)
                out += b"$%d\r\n%b\r\n" % (len(b), b)
    return bytes(out)


class HeldConnection:
    """One connection of ``client``'s settings, held for its owner's life (redis-py's pool probes a connection
    at every checkout). An exchange writes a packed batch and reads its replies under one deadline that also
    covers a (re)connect and its handshake; a connection that fails, times out or is cancelled mid-exchange is
    dropped, never reused with replies in flight (it reconnects on the next exchange).

    The connection is this object's own, not a pool's: ``aclose`` closes its socket before it first suspends, so
    a shutdown that cancels the closing task (a reader cancelled in its ``finally``) cannot leave it open. (A
    pool's ``disconnect`` gathers one task per connection: cancelled before they start, none is closed.)"""

    def __init__(self, client: Redis) -> None:
        pool = client.connection_pool
        self._make = partial(pool.connection_class, **{**pool.connection_kwargs, "socket_timeout": None})
        self._conn: AbstractConnection | None = None

    def __repr__(self) -> str:
        return f"<HeldConnection {self._conn!r}>"

    async def exchange(self, packed: bytes, n: int, deadline_s: float) -> list[Any]:
        """``n`` replies to ``packed`` (an error reply as a ``ResponseError`` in its place)."""
        conn = self._conn
        if conn is None:
            conn = self._conn = self._make()
        try:
            async with asyncio.timeout(deadline_s):
                if not conn.is_connected:
                    await conn.connect()
                await conn.send_packed_command(packed, check_health=False)
                return [await _reply(conn) for _ in range(n)]
        except BaseException as exc:
            await conn.disconnect(nowait=True)
            if isinstance(exc, asyncio.TimeoutError):
                raise RedisTimeoutError(f"no reply from Redis within {deadline_s:.1f}s") from None
            raise

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.disconnect()  # the transport is closed at once; then waits for the socket to close


class FastRedis:
    """The Batcher's pipelines: one at a time, on a held connection, retried whole after a dropped connection
    under ``client``'s retry policy (as ``Pipeline.execute`` does)."""

    def __init__(self, client: Redis, *, timeout_s: float = 10.0) -> None:
        self._held = HeldConnection(client)
        self._retry = client.get_retry() or client.connection_pool.connection_kwargs.get("retry")
        self._timeout_s = timeout_s
        self._busy = False

    def __repr__(self) -> str:
        return f"<FastRedis {self._held!r}>"

    async def aclose(self) -> None:
        await self._held.aclose()

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` as one pipeline; one reply per command, a ``ResponseError`` in place of a
        command's error reply (``raise_on_error=False``)."""
        if self._busy:
            raise RuntimeError("FastRedis.execute is not reentrant: one pipeline at a time")
        self._busy = True
        packed = pack(commands)
        n = len(commands)

        async def attempt() -> list[Any]:
            return await self._held.exchange(packed, n, self._timeout_s)

        try:
            if self._retry is None:
                return await attempt()
            return await self._retry.call_with_retry(attempt, _ignore)  # type: ignore[no-any-return]
        finally:
            self._busy = False


class StreamReader:
    """``XREAD BLOCK`` of one stream on a held connection; each read's deadline is the block time plus
    ``timeout_s``."""

    def __init__(self, client: Redis, key: str, *, timeout_s: float = 10.0) -> None:
        self._held = HeldConnection(client)
        self._key = key.encode()
        self._timeout_s = timeout_s

    async def read(self, last_id: bytes, *, count: int, block_ms: int) -> list[Entry]:
        """The entries after ``last_id`` (``[]`` when the block time passes first)."""
        packed = pack((("XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", self._key, last_id),))
        (reply,) = await self._held.exchange(packed, 1, block_ms / 1000 + self._timeout_s)
        if isinstance(reply, ResponseError):
            raise reply
        return entries(reply)

    async def aclose(self) -> None:
        await self._held.aclose()


async def _reply(conn: AbstractConnection) -> Any:
    try:
        return await conn.read_response(disable_decoding=True, timeout=math.inf)
    except ResponseError as exc:  # an error reply: this command's result, the connection is fine
        return exc


async def _ignore(*_: object) -> None:
    """The retry policy's on-failure hook: the failed connection was already dropped by the exchange."""


def entries(reply: Any) -> list[Entry]:
    """An XREAD reply (RESP3 map or RESP2 array, raw) as ``[(id, {field: value})]``."""
    out: list[Entry] = []
    if not reply:
        return out
    streams = reply.values() if isinstance(reply, dict) else (s[1] for s in reply)
    for items in streams:
        for eid, flat in items:
            if flat is None:
                continue
            it = iter(flat)
            out.append((eid, dict(zip(it, it))))
    return out
