"""Closing the stack while sessions are live, closing or cut: nothing livegate started is still running after
the front and the workers have closed (work left running would use their Redis connections after close and
open new ones that nobody closes)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from livegate.devstack import dev_stack
from livegate.settings import Settings
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc

MODEL = "gemini-live-2.5-flash"


def setup() -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.setup.model = MODEL
    m.setup.generation_config.response_modalities.append(1)
    return m


async def test_closing_the_stack_mid_conversation_leaves_no_task_running(redis: Any, redis_url: str,
                                                                          emulator_config: Any) -> None:
    settings = Settings(redis_url=redis_url, front_listen="127.0.0.1:0", worker_capacity=10, log_json=False,
                        upstream_api_key="test-upstream-key")
    before = asyncio.all_tasks()
    async with dev_stack(settings, workers=2, emulator_config=emulator_config, start_redis=False) as parts:
        front = parts["front"]
        async with grpc.aio.insecure_channel(front.address) as channel:
            stub = gateway_pb2_grpc.LiveGatewayStub(channel)
            calls = []
            for _ in range(6):
                call = stub.Connect()
                await call.write(setup())
                first = await call.read()
                assert first.session.session_id
                assert (await call.read()).HasField("setup_complete")
                calls.append(call)
            for call in calls[:3]:  # these close as the stack goes down: their closes are in flight
                await call.done_writing()
            await front.aclose(grace_s=0.0)  # the rest are cut: their callers are lost, their sessions detached
            assert len(front.cleanups) == 0
        for w in parts["workers"]:
            await w.aclose()
            assert len(w.cleanups) == 0
    left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()]
    assert not left, [t.get_name() for t in left]
