"""The benchmark's main stack: Redis, the stamping emulator (real-time pacing, 20 ms audio chunks), livegate
(workers + fronts as real ``livegate`` processes) and the floor chain (echo, worker, front) side by side."""

from __future__ import annotations

import asyncio
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
    channels: list[Any] = field(default_factory=list)
    floor_channel: Any = None

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

    def floor_pids(self) -> dict[str, int]:
        out = {f"floor_{k}": p.pid for k, p in self.floor.items()}
        assert self.stack.redis and self.stack.redis.proc
        out["redis"] = self.stack.redis.proc.pid
        out["loadgen"] = os.getpid()
        return out

    async def aclose(self) -> None:
        for ch in self.channels + ([self.floor_channel] if self.floor_channel else []):
            await ch.close()
        await self.stack.aclose()


async def main_stack(*, workers: int = 1, fronts: int = 1, floor: bool = True, pacing: float = 1.0,
                     **env: Any) -> Main:
    st = Stack()
    url = st.start_redis()
    emu = await st.start_emulator(pacing=pacing, audio_chunk_ms=20)
    m = Main(st)
    try:
        jobs = [m.add_livegate(workers, fronts, **env)]
        if floor:
            async def floor_up() -> None:
                key = os.path.join(os.path.dirname(emu.cert), "emulator-key.pem")
                echo = await st.floor_proc("echo", "--cert", emu.cert, "--key", key)
                w, f = await asyncio.gather(st.floor_proc("worker", "--redis", url, "--upstream", echo.ident,
                                                          "--ca", emu.cert),
                                            st.floor_proc("front", "--redis", url))
                m.floor = {"echo": echo, "worker": w, "front": f}
                m.floor_channel = grpc.aio.insecure_channel(f.address)
                await asyncio.wait_for(m.floor_channel.channel_ready(), 15)
            jobs.append(floor_up())
        await asyncio.gather(*jobs)
    except BaseException:
        await m.aclose()
        raise
    return m
