"""Isolation under abuse: while one tenant floods the gateway with maximum-size messages at full speed, another
tenant's turns keep their latency, and Redis stays under the bound docs/redis.md states.

    python -m bench.isolation [--idle-s 10] [--flood-s 15] [--flooders 4] [--rounds 3] [--out docs/benchmarks/isolation.json]

Real processes (bench/common.py): Redis, one emulator per tenant (no pacing: the turn latency is the gateway's;
each tenant has its own upstream route, as sessions do on the real Live API), one worker, one front, callers
authenticated by API key as two tenants. Phases, alternated ``--rounds`` times: the
bystander's turns alone (idle), then the same turns while ``--flooders`` sessions of the other tenant send
``media_chunks`` of the largest size the front takes as fast as it reads them, each flooder reconnecting when it
is refused. Redis is sampled throughout
(``INFO memory`` used_memory, ``MEMORY USAGE`` of every key); the peaks are compared with
:func:`service.budget.redis_bound` for the sessions and processes of the run.

The pieces (``flood``, ``turn_latency``, ``RedisSampler``) are also used by tests/budgets.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc

MODEL = "gemini-live-2.5-flash"
FLOOD_KEY = "lgk_bench-flooder-0123456789abcdefghijkl"
CALM_KEY = "lgk_bench-bystander-abcdefghij0123456789"


def keys_document() -> str:
    from service.auth import key_line

    return json.dumps({"keys": [key_line(FLOOD_KEY, "flooder"), key_line(CALM_KEY, "bystander")]})


def setup_message() -> gw.ClientMessage:
    return gw.ClientMessage(setup={"model": MODEL, "generation_config": {"response_modalities": [1]}})  # TEXT


def media_message(size: int) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.realtime_input.media_chunks.add(mime_type="image/jpeg", data=b"\xff" * size)
    return m


@dataclasses.dataclass
class Refusal:
    code: grpc.StatusCode | None
    reason: str
    retry_delay_s: float | None


def refusal_of(err: grpc.aio.AioRpcError) -> Refusal:
    """The gRPC status of a refused call, with its ErrorInfo reason and RetryInfo delay."""
    status = rpc_status.from_call(err)
    reason, delay = "", None
    for detail in status.details if status else ():
        info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(retry):
            delay = retry.retry_delay.ToNanoseconds() / 1e9
    return Refusal(err.code(), reason, delay)


@dataclasses.dataclass
class Flood:
    sid: str = ""
    sent: int = 0
    refusal: Refusal | None = None


async def flood(stub: Any, size: int, *, metadata: tuple[tuple[str, str], ...] = (), max_messages: int | None = None,
                started: asyncio.Event | None = None, out: Flood | None = None) -> Flood:
    """One session sending ``media_chunks`` of ``size`` bytes as fast as the front reads them, until it is
    refused (or ``max_messages`` were sent); ``out`` is filled as it goes (the session id first)."""
    result = out or Flood()
    call = stub.Connect(metadata=metadata)

    async def read_to_end() -> None:
        # read all along: the call's status is received while a write is blocked by the front's backpressure
        try:
            while await call.read() is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as err:
            result.refusal = refusal_of(err)

    reader: asyncio.Task[None] | None = None
    try:
        await call.write(setup_message())
        result.sid = (await call.read()).session.session_id
        reader = asyncio.create_task(read_to_end())
        if started is not None:
            started.set()
        msg = media_message(size)
        try:
            while max_messages is None or result.sent < max_messages:
                await call.write(msg)
                result.sent += 1
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # refused while writing: the reader has the status
        await reader
    except grpc.aio.AioRpcError as err:
        result.refusal = refusal_of(err)
    finally:
        if reader is not None:
            reader.cancel()
        call.cancel()
    return result


async def turn_latency(call: Any, n: int, *, for_s: float | None = None) -> list[float]:
    """``n`` text turns on an open session (or as many as ``for_s`` seconds take): the time from each turn's send
    to its first answer."""
    out: list[float] = []
    until = time.monotonic() + for_s if for_s is not None else None
    for i in range(n if until is None else 10**9):
        if until is not None and time.monotonic() >= until:
            break
        m = gw.ClientMessage()
        m.client_content.turns.add(role="user").parts.add(text=f"ping {i}")
        m.client_content.turn_complete = True
        t0 = time.perf_counter()
        await call.write(m)
        first = None
        while True:
            reply = await call.read()
            if reply is grpc.aio.EOF:
                raise RuntimeError("the bystander's session ended")
            if first is None and reply.WhichOneof("message") == "server_content":
                first = time.perf_counter() - t0
            if reply.server_content.turn_complete:
                break
        assert first is not None
        out.append(first)
    return out


async def open_session(stub: Any, metadata: tuple[tuple[str, str], ...] = ()) -> tuple[Any, str]:
    call = stub.Connect(metadata=metadata)
    await call.write(setup_message())
    sid = (await call.read()).session.session_id
    first = await call.read()  # setup_complete
    assert first.WhichOneof("message") == "setup_complete", first
    return call, sid


class RedisSampler:
    """Samples Redis every ``interval_s``: used_memory, the client buffers in it, and ``MEMORY USAGE`` of every
    key, keeping the peaks per session (the keys of one hash tag ``{s-…}``) and per inbox/outbox stream."""

    def __init__(self, redis: Any, interval_s: float = 0.05) -> None:
        self.redis = redis
        self.interval_s = interval_s
        self.baseline = 0
        self.peak_used = 0  # above the baseline, client buffers excluded
        self.peak_clients = 0
        self.peak_session = 0
        self.peak_stream = 0
        self.peak_heartbeat_age_s = 0.0  # the stalest heartbeat in the fleet's registries (a blocked loop shows here)
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RedisSampler:
        info = await self.redis.info("memory")
        self.baseline = int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.sample()

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval_s)

    async def sample(self) -> None:
        info = await self.redis.info("memory")
        clients = int(info.get("mem_clients_normal", 0))
        self.peak_used = max(self.peak_used, int(info["used_memory"]) - clients - self.baseline)
        self.peak_clients = max(self.peak_clients, clients)
        from livegate.redis import keys as lg_keys

        now_ms = time.time() * 1000
        for registry in (lg_keys.WORKERS, lg_keys.FRONTS):
            for _, score in await self.redis.zrange(registry, 0, -1, withscores=True):
                self.peak_heartbeat_age_s = max(self.peak_heartbeat_age_s, (now_ms - score) / 1000)
        sessions: dict[str, int] = {}
        async for key in self.redis.scan_iter(match="lg:*", count=1000):
            name = key.decode()
            used = await self.redis.memory_usage(key, samples=0) or 0
            tag = name[name.find("{") + 1:name.find("}")]
            if tag.startswith("s-"):
                sessions[tag] = sessions.get(tag, 0) + used
            elif name.endswith((":inbox", ":outbox")):
                self.peak_stream = max(self.peak_stream, used)
        self.peak_session = max([self.peak_session, *sessions.values()])
        self.samples += 1


def quantiles_ms(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {f"p{q}": round(s[min(len(s) - 1, int(q / 100 * len(s)))] * 1000, 2) for q in (50, 90, 95, 99)} | {
        "max": round(s[-1] * 1000, 2)}


async def run(idle_s: float, flood_s: float, flooders: int, rounds: int, out: Path | None) -> dict[str, Any]:
    from bench.common import Stack, rss_bytes
    from livegate.redis.connect import connect
    from livegate.settings import Settings
    from service.budget import redis_bound

    load_before = os.getloadavg()
    st = Stack()
    url = st.start_redis()
    # one emulator per tenant: the upstream is Google's in production, not a process the tenants share (a
    # shared emulator parsing the flood would slow the bystander's answers by itself)
    calm_emu = await st.start_emulator(pacing=0.0, audio_chunk_ms=20)
    flood_emu = await st.start_emulator(pacing=0.0, audio_chunk_ms=20)
    keys = Path(st.tmp) / "caller-keys.json"
    keys.write_text(keys_document())
    routes = {name: {"url": emu.url, "ca_file": emu.cert, "api_key_env": "LIVEGATE_UPSTREAM_API_KEY"}
              for name, emu in (("calm", calm_emu), ("flood", flood_emu))}
    tenants = {"bystander": {"routes": ["calm"], "default_route": "calm"},
               "flooder": {"routes": ["flood"], "default_route": "flood"}}
    env = {"auth_modes": '["api_key"]', "caller_keys_file": str(keys),
           "upstreams_json": json.dumps({"routes": routes, "default_route": "calm", "tenants": tenants})}
    redis = connect(url)
    try:
        worker = await st.worker(**env)
        front = await st.front(**env)
        rss = {"worker": [rss_bytes(worker.pid), 0], "front": [rss_bytes(front.pid), 0]}  # start, peak

        async def sample_rss() -> None:
            while True:
                for name, p in (("worker", worker), ("front", front)):
                    rss[name][1] = max(rss[name][1], rss_bytes(p.pid))
                await asyncio.sleep(0.1)
        settings = Settings()  # the defaults: what the processes run with
        size = settings.max_media_chunks_bytes
        async with grpc.aio.insecure_channel(front.address, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
            stub = gateway_pb2_grpc.LiveGatewayStub(ch)
            calm_md, flood_md = (("x-api-key", CALM_KEY),), (("x-api-key", FLOOD_KEY),)
            call, _ = await open_session(stub, calm_md)
            await turn_latency(call, 10)  # warm-up
            idle: list[float] = []
            during: list[float] = []
            floods: list[Flood] = []
            elapsed = 0.0

            async def flooder(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    f = Flood()
                    floods.append(f)
                    await flood(stub, size, metadata=flood_md, out=f)

            rss_task = asyncio.create_task(sample_rss())
            async with RedisSampler(redis) as sampler:
                # idle and flood phases alternate, so a drift of the machine's load weighs on both alike
                for _ in range(rounds):
                    idle += await turn_latency(call, 0, for_s=idle_s)
                    stop = asyncio.Event()
                    tasks = [asyncio.create_task(flooder(stop)) for _ in range(flooders)]
                    await asyncio.sleep(2.0)  # the flood is at full speed
                    t0 = time.monotonic()
                    during += await turn_latency(call, 0, for_s=flood_s)
                    elapsed += time.monotonic() - t0
                    stop.set()
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
            call.cancel()
            rss_task.cancel()
            await asyncio.gather(rss_task, return_exceptions=True)
        bound = redis_bound(settings)
        refused: dict[str, int] = {}
        for f in floods:
            if f.refusal is not None:
                key = f"{f.refusal.code.name if f.refusal.code else '?'} {f.refusal.reason}"
                refused[key] = refused.get(key, 0) + 1
        result = {
            "command": (f"python -m bench.isolation --idle-s {idle_s:g} --flood-s {flood_s:g} --flooders {flooders} "
                        f"--rounds {rounds}"),
            "message_bytes": size,
            "flood_sessions": len(floods),
            "flood_messages": sum(f.sent for f in floods),
            "flood_seconds": round(elapsed, 1),
            "flood_bytes_offered_per_s": round(sum(f.sent for f in floods) * size / max(elapsed, 1e-9)),
            "flood_refusals": refused,
            "bystander_ms": {"idle": quantiles_ms(idle), "flood": quantiles_ms(during)},
            "load_average": {"before": [round(x, 2) for x in load_before],
                             "after": [round(x, 2) for x in os.getloadavg()]},
            "bystander_turns": {"idle": len(idle), "flood": len(during)},
            "redis_peak_bytes": {"used_memory_above_baseline": sampler.peak_used,
                                 "client_buffers": sampler.peak_clients, "one_session": sampler.peak_session,
                                 "one_stream": sampler.peak_stream},
            "rss_bytes": {name: {"start": v[0], "peak": v[1]} for name, v in rss.items()},
            "heartbeat_age_peak_s": round(sampler.peak_heartbeat_age_s, 3),
            "redis_bound_bytes": {"one_session": bound.session, "one_stream": bound.stream,
                                  "fleet": bound.fleet(flooders + 1, 1, 1)},
            "samples": sampler.samples,
        }
        if out is not None:
            out.write_text(json.dumps(result, indent=2) + "\n")
        return result
    finally:
        await redis.aclose()
        await st.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idle-s", type=float, default=10.0, help="the bystander's turns alone, this long per round")
    p.add_argument("--flood-s", type=float, default=15.0, help="its turns during the flood, this long per round")
    p.add_argument("--rounds", type=int, default=3, help="idle and flood phases, alternated")
    p.add_argument("--flooders", type=int, default=4, help="flooding sessions at once (each reconnects when refused)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    print(json.dumps(asyncio.run(run(a.idle_s, a.flood_s, a.flooders, a.rounds, a.out)), indent=2))


if __name__ == "__main__":
    main()
