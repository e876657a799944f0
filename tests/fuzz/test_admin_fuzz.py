"""Property-based fuzzing of the admin RPCs (hypothesis): any session id, page size and page token (empty, around
the echo bound, huge, forged base64) gets a typed status with a bounded message, never UNKNOWN or INTERNAL,
and the front stays healthy."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc

EXAMPLES = int(os.environ.get("LIVEGATE_FUZZ_EXAMPLES", "1100")) // 4
SIZES = st.sampled_from([0, 1, 26, 63, 64, 65, 128, 129, 200, 201, 5_000, 100_000])
TEXTS = st.one_of(st.text(max_size=80), SIZES.map(lambda n: "s" * n), SIZES.map(lambda n: "9" * n),
                  st.binary(max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
                  st.tuples(st.integers(-2**70, 2**70), st.text(max_size=30)).map(
                      lambda t: base64.urlsafe_b64encode(f"1.{t[0]}.{t[1]}".encode()).decode().rstrip("=")))
CALLS = st.one_of(
    st.tuples(st.just("GetSession"), TEXTS, st.just(0)),
    st.tuples(st.just("CloseSession"), TEXTS, st.just(0)),
    st.tuples(st.just("ListSessions"), TEXTS, st.integers(-2**31, 2**31 - 1)))
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


async def test_fuzz_admin_rpcs(stack: dict[str, Any]) -> None:
    channel = grpc.aio.insecure_channel(stack["front"].address)
    stub = gateway_pb2_grpc.LiveGatewayStub(channel)
    loop = asyncio.get_running_loop()
    codes: dict[str, int] = {}

    async def one(rpc: str, text: str, size: int) -> tuple[grpc.StatusCode, str]:
        request: Any
        if rpc == "GetSession":
            request = gw.GetSessionRequest(session_id=text)
        elif rpc == "CloseSession":
            request = gw.CloseSessionRequest(session_id=text)
        else:
            request = gw.ListSessionsRequest(page_token=text, page_size=size)
        try:
            await getattr(stub, rpc)(request, timeout=10)
        except grpc.aio.AioRpcError as err:
            return err.code(), err.details() or ""
        return grpc.StatusCode.OK, ""

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(CALLS)
    def run(call: tuple[str, str, int]) -> None:
        code, details = asyncio.run_coroutine_threadsafe(one(*call), loop).result(timeout=30)
        codes[code.name] = codes.get(code.name, 0) + 1
        assert code in ALLOWED, f"{call[0]} ended with {code}: {details[:200]}"
        assert len(details) < 400, f"{call[0]}: a {len(details)}-character message"

    await asyncio.to_thread(run)
    print(f"admin fuzz: {sum(codes.values())} calls; {codes}")
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    await channel.close()
