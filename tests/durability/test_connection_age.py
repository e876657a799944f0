"""Connection age (LIVEGATE_GRPC_MAX_CONNECTION_AGE_S) with real processes behind a connection balancer.

A Kubernetes Service balances TCP connections, not gRPC calls: a caller's channel keeps its connection, so a front
the HPA adds gets none of that caller's new sessions. With a connection age the front sends a GOAWAY once a
connection is that old; the caller's new calls open a new connection, which the balancer may place on the new
front, while the streams already open stay where they are (unbounded grace) or, with a grace, are cut and
reattached by the client with nothing of the server's output lost.

`Balancer` stands in for kube-proxy: each new TCP connection goes to the next backend of a list that can grow
(round robin, as IPVS does), and every connection's bytes are counted, which tells which connection an RPC took.
It listens on one port per caller: channels of one process to the same target share their connection (gRPC's
subchannel pool), while callers in the field are separate processes with a connection each.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from livegate.client import Client
from livegate.v1 import gateway_pb2 as gw
from tests.durability.procs import ProcStack, emulator_server

MODEL = "gemini-live-2.5-flash"
TEXT = {"response_modalities": ["TEXT"]}


@dataclasses.dataclass
class Conn:
    """One TCP connection through the balancer."""

    n: int
    backend: int
    opened: float
    up: int = 0  # bytes caller -> front
    down: int = 0  # bytes front -> caller
    closed: float | None = None


class Balancer:
    """Connection-level load balancing, as a ClusterIP Service does it: each accepted connection is piped to
    ``backends[i % len(backends)]`` for the i-th connection. ``backends`` may grow while it runs (a scale-up).
    ``targets[k]``: the k-th of its listening addresses (one per caller), all balanced together."""

    def __init__(self) -> None:
        self.backends: list[tuple[str, int]] = []
        self.conns: list[Conn] = []
        self.targets: list[str] = []
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<Balancer {self.targets} backends={self.backends} conns={len(self.conns)}>"

    async def start(self, listeners: int = 4) -> None:
        for _ in range(listeners):
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self._servers.append(server)
            self.targets.append(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")

    async def aclose(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = Conn(len(self.conns), len(self.conns) % len(self.backends), time.monotonic())
        self.conns.append(conn)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.backends[conn.backend])
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        pumps = [asyncio.create_task(self._pump(reader, up_writer, conn, "up")),
                 asyncio.create_task(self._pump(up_reader, writer, conn, "down"))]
        try:
            # either side closing ends the connection (HTTP/2 has no use for a half-closed TCP connection)
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()
            conn.closed = time.monotonic()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Conn, direction: str) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                setattr(conn, direction, getattr(conn, direction) + len(data))
                writer.write(data)
                await writer.drain()


class Conversation:
    """A session's turns, with the seq of every server message the caller got (reattaches included)."""

    def __init__(self, session: Any) -> None:
        self.s = session
        self.seqs: list[int] = []

    async def turn(self, text: str) -> str:
        """Send a text turn and return the model's answer (text parts up to turn_complete)."""
        await self.s.send_client_content(turns={"role": "user", "parts": [{"text": text}]})
        answer = []
        async with asyncio.timeout(20):
            async for m in self.s.receive_raw():
                if m.seq:
                    self.seqs.append(m.seq)
                answer.extend(p.text for p in m.server_content.model_turn.parts)
                if m.server_content.turn_complete:
                    return "".join(answer)
        raise AssertionError("the session ended")

    def assert_nothing_lost(self) -> None:
        """Every server message the session sent reached the caller once, in order."""
        assert self.seqs == list(range(self.seqs[0], self.seqs[0] + len(self.seqs))), self.seqs


async def wait_for(condition: Any, timeout_s: float, poll: Any = None) -> float:
    """Wait until ``condition()`` holds (calling ``poll()`` between checks); return the seconds it took."""
    t0 = time.monotonic()
    async with asyncio.timeout(timeout_s):
        while not condition():
            if poll is not None:
                await poll()
            await asyncio.sleep(0.05)
    return time.monotonic() - t0


@pytest.fixture
async def emulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    async with emulator_server(tmp_path_factory, pacing=0.0) as emu:
        yield emu


@pytest.fixture
async def balancer() -> AsyncIterator[Balancer]:
    b = Balancer()
    await b.start()
    try:
        yield b
    finally:
        await b.aclose()


@contextlib.asynccontextmanager
async def stack(redis_url: str, emulator: Any, **env: Any) -> AsyncIterator[ProcStack]:
    procs = ProcStack(redis_url, emulator, **env)
    try:
        yield procs
    finally:
        await procs.aclose()


def backend(front: Any) -> tuple[str, int]:
    host, port = front.address.rsplit(":", 1)
    return host, int(port)


async def test_new_calls_take_a_new_connection_and_open_streams_stay(redis: Any, redis_url: str, emulator: Any,
                                                                     balancer: Balancer) -> None:
    """Age 1 s, unbounded grace: after the GOAWAY, new RPCs (a new session too) go over a new connection while a
    Connect stream opened before stays on the first one across three ages, never cut, nothing lost."""
    async with stack(redis_url, emulator, grpc_max_connection_age_s=1.0) as procs:
        await procs.worker()
        balancer.backends.append(backend(await procs.front()))
        async with Client(balancer.targets[0]) as client, \
                client.aio.live.connect(model=MODEL, config=TEXT) as s1:
            stub = client.stub()
            first = Conversation(s1)
            assert await first.turn("Hello before the age")
            (c1,) = balancer.conns

            async def unary() -> None:
                await stub.GetSession(gw.GetSessionRequest(session_id=s1.session_id), timeout=5)

            # the connection ages out: the next RPCs open a second connection (a new peer port at the front)
            await wait_for(lambda: len(balancer.conns) >= 2, 10, unary)
            c2 = balancer.conns[1]
            assert c2.up > 0 and c1.closed is None
            # a new session goes over the new connection: its 4 kB turn adds to the second connection's bytes,
            # and at most HTTP/2 control frames (a PING ack is 17 bytes) to the first's
            before = (c1.up, c2.up)
            async with client.aio.live.connect(model=MODEL, config=TEXT) as s2:
                assert await Conversation(s2).turn("Hello after the age. " + "x" * 4096)
            assert c2.up - before[1] > 4096 and c1.up - before[0] < 100, (c1, c2)
            # the first session's stream stays on its connection across two more ages, never cut
            await wait_for(lambda: len(balancer.conns) >= 4, 10, unary)
            down = c1.down
            assert await first.turn("Still there after three ages?")
            assert c1.down > down and c1.closed is None, "the open stream moved or was cut"
            assert s1.reattaches == 0
            first.assert_nothing_lost()


async def test_a_grace_cuts_the_stream_and_the_client_reattaches_with_nothing_lost(
        redis: Any, redis_url: str, emulator: Any, balancer: Balancer) -> None:
    """Age 1 s, grace 0.5 s: the stream still open on the aged connection is cut when the grace ends; the
    livegate client reattaches over a new connection and gets every server message, once, in order."""
    async with stack(redis_url, emulator, grpc_max_connection_age_s=1.0, grpc_max_connection_age_grace_s=0.5) as procs:
        await procs.worker()
        balancer.backends.append(backend(await procs.front()))
        async with Client(balancer.targets[0]) as client, \
                client.aio.live.connect(model=MODEL, config=TEXT) as s:
            conv = Conversation(s)
            assert await conv.turn("Hello before the cut")
            (c1,) = balancer.conns
            # idle: at age + grace the front closes the connection, the stream breaks and the client reattaches
            await wait_for(lambda: s.reattaches == 1, 10)
            assert c1.closed is not None and len(balancer.conns) == 2
            cut_after = c1.closed - c1.opened
            assert 0.9 * 1.0 + 0.5 <= cut_after < 1.1 * 1.0 + 0.5 + 1.0, cut_after
            assert await conv.turn("Hello after the cut")
            conv.assert_nothing_lost()
            info = await client.stub().GetSession(gw.GetSessionRequest(session_id=s.session_id), timeout=5)
            assert info.counters.reattaches == 1
        # the conversation kept its history on the upstream: one conversation, both turns
        (upstream,) = [c for c in emulator.conversations if "Hello before the cut" in str(c)]
        assert "Hello after the cut" in str(upstream)


@dataclasses.dataclass
class ScaleUp:
    """What callers did around a scale-up: each short session's start (seconds after the scale-up; negative:
    before) and front, the fronts' ids, the connections the balancer saw."""

    old_front: str
    new_front: str
    started: list[tuple[float, int, str]]
    connections: int

    def share_on_new(self, after_s: float) -> tuple[int, int]:
        """(sessions on the new front, sessions) among those started ``after_s`` or more after the scale-up."""
        window = [front for t, _, front in self.started if t >= after_s]
        return sum(f == self.new_front for f in window), len(window)


async def scale_up(procs: ProcStack, balancer: Balancer, callers: int, before_s: float, after_s: float) -> ScaleUp:
    """``callers`` callers with one channel each keep one long session open and start short sessions one after
    another; ``before_s`` into that, a second front joins the balancer, and they go on ``after_s`` longer. The
    long sessions must come out of it where they were, never cut."""
    old = await procs.front()
    balancer.backends.append(backend(old))
    started: list[tuple[float, int, str]] = []  # (monotonic time, caller, front id)
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as es:
        clients = [await es.enter_async_context(Client(balancer.targets[i])) for i in range(callers)]
        longs = []
        for i, client in enumerate(clients):
            conv = Conversation(await es.enter_async_context(client.aio.live.connect(model=MODEL, config=TEXT)))
            assert await conv.turn(f"Caller {i}: the long session")
            longs.append(conv)

        async def short_sessions(i: int, client: Client) -> None:
            stub = client.stub()
            while not stop.is_set():
                async with client.aio.live.connect(model=MODEL, config=TEXT) as s:
                    info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id), timeout=5)
                started.append((time.monotonic(), i, info.front_id))

        async with asyncio.TaskGroup() as tg:
            for i, client in enumerate(clients):
                tg.create_task(short_sessions(i, client))
            await asyncio.sleep(before_s)  # the timeline of the measurement: traffic before the scale-up
            new = await procs.front()
            balancer.backends.append(backend(new))
            scaled_at = time.monotonic()
            await asyncio.sleep(after_s)  # ... and after it
            stop.set()
        for i, (client, conv) in enumerate(zip(clients, longs, strict=True)):
            assert await conv.turn(f"Caller {i}: still here?")
            assert conv.s.reattaches == 0, "a long session was cut"
            conv.assert_nothing_lost()
            info = await client.stub().GetSession(gw.GetSessionRequest(session_id=conv.s.session_id), timeout=5)
            assert info.front_id == old.id, "a long session moved"
    return ScaleUp(old.id, new.id, [(t - scaled_at, i, f) for t, i, f in started], len(balancer.conns))


@pytest.mark.parametrize("age_s", [0.0, 2.0], ids=["no-age", "age-2s"])
async def test_a_new_front_gets_its_share_of_new_sessions_after_the_age(
        redis: Any, redis_url: str, emulator: Any, balancer: Balancer, age_s: float) -> None:
    """The measurement: 4 callers, one channel each, a second front added while they run. Without a connection
    age the new front gets none of their new sessions; with one, it gets its share once every caller's
    connection has aged out (at most 1.1 x age after the scale-up), and no long session is cut or moved."""
    window_s = 6.0
    async with stack(redis_url, emulator, grpc_max_connection_age_s=age_s) as procs:
        await procs.worker(capacity=40)
        run = await scale_up(procs, balancer, callers=4, before_s=1.0, after_s=window_s)
    on_new, after = run.share_on_new(0.0)
    settle_s = 1.1 * age_s + 0.5  # every caller's connection aged out since the scale-up (0.5 s: the reconnect)
    settled_new, settled = run.share_on_new(settle_s) if age_s else (on_new, after)
    first_on_new = min((t for t, _, f in run.started if f == run.new_front), default=None)
    print(f"\nconnection age {age_s or 'off'}: {after} sessions started in the {window_s:.0f} s after the scale-up, "
          f"{on_new} on the new front ({on_new / after:.0%}), {settled_new}/{settled} ({settled_new / settled:.0%}) "
          f"from {settle_s:.1f} s on; the first on the new front after "
          f"{'never' if first_on_new is None else f'{first_on_new:.2f} s'}; {run.connections} connections; "
          f"long sessions cut or moved: 0")
    assert after >= 20 and settled >= 8, "too little traffic to measure"
    if not age_s:
        assert on_new == 0, "kube-proxy style balancing moved a connected caller's sessions without an age"
    else:
        assert first_on_new is not None and first_on_new <= settle_s
        assert settled_new / settled >= 0.25, f"{settled_new}/{settled} on the new front"
