"""The benchmark's main stack: Redis, the stamping emulator (real-time pacing, 20 ms audio chunks), livegate
(workers + fronts as real ``livegate`` processes) and the floor chain (echo, worker, front) side by side, with
a second floor worker + front on the echo's paced endpoint (bench/floor.py). livegate has two upstream routes:
the emulator (default) and the echo (``SessionOptions.upstream = "echo"``), for the relay-only rows."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench.common import Proc, Stack
from livegate.v1 import gateway_pb2_grpc


@dataclass
class Main:
    stack: Stack
    workers: list[Proc] = field(default_factory=list)
    fronts: list[Proc] = field(default_factory=list)
    floor: dict[str, Proc] = field(default_factory=dict)
    floor_paced: dict[str, Proc] = field(default_factory=dict)  # worker + front on the echo's paced endpoint
    echo: Proc | None = None  # the floor's echo; also livegate's upstream route "echo"
    channels: list[Any] = field(default_factory=list)
    floor_channel: Any = None
    floor_paced_channel: Any = None

    @property
    def emulator(self) -> Any:
        return self.stack.emulator

    def stubs(self) -> list[Any]:
        return [gateway_pb2_grpc.LiveGatewayStub(c) for c in self.channels]

    async def add_livegate(self, workers: int = 1, fronts: int = 1, **env: Any) -> None:
        ws = await asyncio.gather(*(self.stack.worker(**env) for _ in range(workers)))
        fs = await asyncio.gather(*(self.stack.front(**env) for _ in range(fronts)))
        self.workers += ws
        self.fronts += fs
        for f in fs:
            ch = grpc.aio.insecure_channel(f.address)
            await asyncio.wait_for(ch.channel_ready(), 15)
            self.channels.append(ch)

    def livegate_pids(self) -> dict[str, int]:
        out = {p.name: p.pid for p in self.workers + self.fronts}
        out["emulator"] = self.stack.emulator.proc.pid
        assert self.stack.redis and self.stack.redis.proc
        out["redis"] = self.stack.redis.proc.pid
        out["loadgen"] = os.getpid()
        return out

    def livegate_echo_pids(self) -> dict[str, int]:
        """livegate's processes with the echo as their upstream (the relay-only capacity rows)."""
        out = self.livegate_pids()
        del out["emulator"]
        assert self.echo is not None
        out["echo"] = self.echo.pid
        return out

    def floor_pids(self, paced: bool = False) -> dict[str, int]:
        procs = {**self.floor, **self.floor_paced} if paced else self.floor
        out = {f"floor_{k}": p.pid for k, p in procs.items()}
        assert self.stack.redis and self.stack.redis.proc
        out["redis"] = self.stack.redis.proc.pid
        out["loadgen"] = os.getpid()
        return out

    async def aclose(self) -> None:
        for ch in self.channels + [c for c in (self.floor_channel, self.floor_paced_channel) if c]:
            await ch.close()
        await self.stack.aclose()


async def main_stack(*, workers: int = 1, fronts: int = 1, floor: bool = True, pacing: float = 1.0,
                     **env: Any) -> Main:
    st = Stack()
    url = st.start_redis()
    emu = await st.start_emulator(pacing=pacing, audio_chunk_ms=20)
    m = Main(st)
    try:
        key = os.path.join(os.path.dirname(emu.cert), "emulator-key.pem")
        echo = m.echo = await st.floor_proc("echo", "--cert", emu.cert, "--key", key)
        # two upstream routes: the emulator (the default) and the floor's echo, which a session picks with
        # SessionOptions.upstream = "echo" (bench/echo_session.py)
        routes = {name: {"url": u, "ca_file": emu.cert, "api_key_env": "LIVEGATE_UPSTREAM_API_KEY"}
                  for name, u in (("emulator", emu.url), ("echo", echo.ident))}
        env.setdefault("upstreams_json", json.dumps({"routes": routes, "default_route": "emulator"}))
        jobs = [m.add_livegate(workers, fronts, **env)]
        if floor:
            async def floor_up() -> None:
                w, f, pw, pf = await asyncio.gather(
                    st.floor_proc("worker", "--redis", url, "--upstream", echo.ident, "--ca", emu.cert),
                    st.floor_proc("front", "--redis", url),
                    st.floor_proc("worker", "--redis", url, "--upstream", echo.ident + "/paced", "--ca", emu.cert,
                                  "--streams", "floorpaced"),
                    st.floor_proc("front", "--redis", url, "--streams", "floorpaced"))
                m.floor = {"echo": echo, "worker": w, "front": f}
                m.floor_paced = {"worker": pw, "front": pf}
                m.floor_channel = grpc.aio.insecure_channel(f.address)
                m.floor_paced_channel = grpc.aio.insecure_channel(pf.address)
                await asyncio.wait_for(m.floor_channel.channel_ready(), 15)
                await asyncio.wait_for(m.floor_paced_channel.channel_ready(), 15)
            jobs.append(floor_up())
        await asyncio.gather(*jobs)
    except BaseException:
        await m.aclose()
        raise
    return m
