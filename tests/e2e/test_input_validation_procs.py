"""Issue 20 as it was seen: a multi-process stack (a front and a worker as `livegate` processes) given tool
responses with NaN / Infinity and an out-of-range Duration answered INTERNAL "gateway worker error:
SerializeToJsonError" with one worker traceback per message. Every such message is now INVALID_ARGUMENT from
the front, and neither process logs a traceback or an error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from livegate.v1 import gateway_pb2_grpc
from tests.durability.procs import ProcStack, emulator_server
from tests.budgets.test_message_budgets import answered
from tests.e2e.test_input_validation import close, reason_of, setup, stream_status, tool_response, video_offset

STREAMS = 24


async def test_unencodable_input_on_real_processes(redis: Any, redis_url: str, tmp_path: Path,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    async with emulator_server(tmp_path_factory) as emulator:
        procs = ProcStack(redis_url, emulator, logs_dir=str(tmp_path))
        try:
            await procs.worker()
            front = await procs.front()
            async with grpc.aio.insecure_channel(front.address) as channel:
                stub = gateway_pb2_grpc.LiveGatewayStub(channel)
                bad = [tool_response(float("nan")), tool_response(float("inf")), tool_response({"a": [float("-inf")]}),
                       video_offset(10**12)]
                errors = await asyncio.gather(*(stream_status(stub, setup(), bad[i % len(bad)]) for i in range(STREAMS)))
                fn = setup(type="object", properties={"n": {"maximum": float("nan")}})
                errors.append(await stream_status(stub, fn))
                # and the stack still serves a conversation
                call = stub.Connect()
                await call.write(setup())
                await answered(call, "still fine?")
                await close(call)
        finally:
            await procs.aclose()
    assert {e.code() for e in errors} == {grpc.StatusCode.INVALID_ARGUMENT}, {e.details() for e in errors}
    assert {reason_of(e) for e in errors} == {"NON_FINITE_NUMBER", "VALUE_OUT_OF_RANGE"}
    for p in procs.procs:
        log = p.log()
        assert "Traceback" not in log and " ERROR " not in log, f"{p.role} logged: {log[-2000:]}"
