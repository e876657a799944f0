"""Closing the stack while sessions are live, closing or cut: nothing livegate started is still running after
the front and the workers have closed (work left running would use their Redis connections after close and
open new ones that nobody closes)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from livegate.cli.devstack import dev_stack
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


async def test_a_session_claimed_as_its_worker_begins_to_close_goes_back_to_the_fleet(
        redis: Any, redis_url: str, emulator_config: Any) -> None:
    """The interleaving the worker's close cannot see coming: its allocation loop claimed a session just as the
    close began. The worker must not start relaying it (the close has already listed the tasks it will wait
    for); it hands the session straight back to the fleet instead of leaving it to its heartbeat's expiry."""
    from livegate.redis import keys, records

    settings = Settings(redis_url=redis_url, front_listen="127.0.0.1:0", worker_capacity=10, log_json=False,
                        upstream_api_key="test-upstream-key")
    async with dev_stack(settings, workers=1, emulator_config=emulator_config, start_redis=False) as parts:
        worker = parts["workers"][0]
        assert worker._stop is not None
        worker._stop.set()  # the close has begun: the allocation loop takes nothing more ...
        allocation = next(t for t in worker._loops if t.get_name() == "worker-allocation")
        await asyncio.wait_for(allocation, 5)
        async with grpc.aio.insecure_channel(parts["front"].address) as channel:
            call = gateway_pb2_grpc.LiveGatewayStub(channel).Connect()
            await call.write(setup())
            sid = (await call.read()).session.session_id
            await worker._take(sid, "", cause="new")  # ... but one claim was already on its way
            await worker.cleanups.aclose(timeout_s=5.0)
            assert sid not in worker.sessions and sid not in worker._tasks
            record = await records.load(redis, sid)
            assert record is not None and record.worker == worker.id  # it was claimed ...
            handed = [f for _, f in await redis.xrange(keys.ALLOC_STREAM)
                      if f.get(b"s") == sid.encode() and f.get(b"k") == b"takeover"]
            assert handed and handed[-1][b"from"] == worker.id.encode()  # ... and handed to the fleet at once
            call.cancel()
