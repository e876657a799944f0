"""A caller's bytes and time are budgeted at the front (service/budget.py): a message over its kind's cap is
refused, every media path is metered (media_chunks, inline data in client_content, audio whatever rate it
declares), a Connect that never sends setup ends with SETUP_TIMEOUT, and pending Connects are capped per tenant."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from bench.isolation import Refusal, flood, open_session, refusal_of, setup_message
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc

SECOND_16K = b"\x00\x00" * 16000  # 1 s of 16 kHz s16le


@pytest.fixture
async def stub(stack: dict[str, Any]) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(stack["front"].address) as ch:
        yield gateway_pb2_grpc.LiveGatewayStub(ch)


async def ended(call: Any, timeout_s: float = 15.0) -> Refusal | None:
    """Read a call to its end (bounded); its refusal, or None if it ended OK."""
    try:
        async with asyncio.timeout(timeout_s):
            while await call.read() is not grpc.aio.EOF:
                pass
    except grpc.aio.AioRpcError as err:
        return refusal_of(err)
    return None


async def answered(call: Any, text: str = "done?") -> None:
    """Send a user turn and read until its turn_complete: every message before it was read by the front."""
    m = gw.ClientMessage()
    m.client_content.turns.add(role="user").parts.add(text=text)
    m.client_content.turn_complete = True
    await call.write(m)
    async with asyncio.timeout(30):
        while not (await call.read()).server_content.turn_complete:
            pass


async def test_a_3_8_mb_media_chunk_is_refused(stub: Any) -> None:
    # the report: 977 MB in 8 s as 3.8 MB media_chunks, all accepted
    f = await flood(stub, 3_800_000, max_messages=3)
    assert f.refusal is not None and f.refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f.refusal.reason == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("settings_overrides", [{"audio_rate_factor": 4.0, "audio_burst_s": 1.0}])
async def test_audio_in_media_chunks_is_metered(stub: Any, settings_overrides: dict[str, Any]) -> None:
    call, _ = await open_session(stub)
    t0 = time.monotonic()
    chunk = gw.ClientMessage()
    chunk.realtime_input.media_chunks.add(mime_type="audio/pcm;rate=16000", data=SECOND_16K[:3200])  # 100 ms
    for _ in range(50):  # 5 s of audio, as fast as the front reads it
        await call.write(chunk)
    await answered(call)
    # 4x real time after a 1 s burst: (5 - 1) / 4 = 1 s at the least, however fast this machine is
    assert time.monotonic() - t0 >= 0.95
    call.cancel()


@pytest.mark.parametrize("settings_overrides", [{"audio_rate_factor": 4.0, "audio_burst_s": 1.0}])
async def test_inline_audio_with_a_huge_declared_rate_is_metered(stub: Any, settings_overrides: dict[str, Any]) -> None:
    # the report: a declared rate=999999999 made audio free (5,717x real time accepted)
    call, _ = await open_session(stub)
    t0 = time.monotonic()
    m = gw.ClientMessage()
    m.client_content.turns.add(role="user").parts.add(
        inline_data={"mime_type": "audio/pcm;rate=999999999", "data": SECOND_16K})
    for _ in range(3):  # a rate the Live API does not take is metered at the slowest it takes (8 kHz): 3 x 2 s
        await call.write(m)
    await answered(call)
    assert time.monotonic() - t0 >= (6 - 1) / 4 - 0.05
    call.cancel()


async def test_realtime_audio_with_a_huge_declared_rate_is_refused(stub: Any) -> None:
    call, _ = await open_session(stub)
    m = gw.ClientMessage()
    m.realtime_input.audio.mime_type = "audio/pcm;rate=999999999"
    m.realtime_input.audio.data = SECOND_16K[:640]
    await call.write(m)
    r = await ended(call)
    assert r is not None and r.code == grpc.StatusCode.INVALID_ARGUMENT and r.reason == "BAD_MIME_TYPE"


@pytest.mark.parametrize("settings_overrides", [{"session_bytes_per_s": 256 * 1024, "session_burst_bytes": 64 * 1024}])
async def test_bytes_are_metered_per_session(stub: Any, stack: dict[str, Any], settings_overrides: dict[str, Any]) -> None:
    call, sid = await open_session(stub)
    t0 = time.monotonic()
    frame = gw.ClientMessage()
    frame.realtime_input.video.mime_type = "image/jpeg"
    frame.realtime_input.video.data = b"\xff" * (32 * 1024)
    for _ in range(20):  # 640 KiB of video frames at 256 KiB/s after a 64 KiB burst: 2.25 s at the least
        await call.write(frame)
    await answered(call)
    assert time.monotonic() - t0 >= 2.2
    assert stack["front"].sessions[sid].budget.throttled_s >= 2.0
    call.cancel()


@pytest.mark.parametrize("settings_overrides", [{"setup_timeout_s": 1.0}])
async def test_a_connect_that_never_sends_setup_ends_in_time(stub: Any, settings_overrides: dict[str, Any]) -> None:
    call = stub.Connect()
    t0 = time.monotonic()
    r = await ended(call, timeout_s=10)  # before: never (50 of 50 were still open after 330 s)
    assert r is not None and r.code == grpc.StatusCode.DEADLINE_EXCEEDED and r.reason == "SETUP_TIMEOUT"
    assert time.monotonic() - t0 < 5  # within setup_timeout_s, and not much later


@pytest.mark.parametrize("settings_overrides", [{"setup_timeout_s": 3.0, "max_pending_connects_per_tenant": 5}])
async def test_pending_connects_of_a_tenant_are_bounded(stub: Any, stack: dict[str, Any],
                                                        settings_overrides: dict[str, Any]) -> None:
    front = stack["front"]
    calls = [stub.Connect() for _ in range(50)]  # authenticated, and never a first message
    results = await asyncio.gather(*(ended(c) for c in calls))
    reasons = sorted(r.reason for r in results if r is not None)
    assert reasons.count("TOO_MANY_PENDING_CONNECTS") == 45, reasons
    assert reasons.count("SETUP_TIMEOUT") == 5, reasons
    refused = next(r for r in results if r is not None and r.reason == "TOO_MANY_PENDING_CONNECTS")
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED and refused.retry_delay_s is not None
    assert front.budgets.pending_total == 0 and not front.budgets.pending
    # the tenant's Connects that do send setup are served again
    call, _ = await open_session(stub)
    call.cancel()


async def test_a_too_large_setup_is_refused(stub: Any) -> None:
    m = setup_message()
    m.setup.system_instruction.parts.add(text="x" * (300 * 1024))
    call = stub.Connect()
    await call.write(m)
    r = await ended(call)
    assert r is not None and r.code == grpc.StatusCode.RESOURCE_EXHAUSTED and r.reason == "PAYLOAD_TOO_LARGE"


def _tool_response(size: int) -> gw.ClientMessage:
    m = gw.ClientMessage()
    fr = m.tool_response.function_responses.add(id="call-1", name="lookup")
    fr.response.update({"result": "x" * size})
    return m


BIG = 100 * 1024  # over each cap below (64 KiB), under the c2s log's bound
CAPS = {"max_client_content_bytes": 64 * 1024, "max_audio_bytes": 64 * 1024, "max_video_bytes": 64 * 1024,
        "max_text_bytes": 64 * 1024, "max_tool_response_bytes": 64 * 1024}
OVERSIZED = {
    "client_content": gw.ClientMessage(client_content={"turns": [{"role": "user", "parts": [{"text": "x" * BIG}]}]}),
    "audio": gw.ClientMessage(realtime_input={"audio": {"mime_type": "audio/pcm;rate=48000", "data": b"\x00" * BIG}}),
    "video": gw.ClientMessage(realtime_input={"video": {"mime_type": "image/jpeg", "data": b"\xff" * BIG}}),
    "text": gw.ClientMessage(realtime_input={"text": "x" * BIG}),
    "tool_response": _tool_response(BIG),
}


@pytest.mark.parametrize("settings_overrides", [CAPS])
@pytest.mark.parametrize("kind", list(OVERSIZED))
async def test_each_kind_has_its_cap(stub: Any, kind: str, settings_overrides: dict[str, Any]) -> None:
    call, _ = await open_session(stub)
    await call.write(OVERSIZED[kind])
    r = await ended(call)
    assert r is not None and r.code == grpc.StatusCode.RESOURCE_EXHAUSTED and r.reason == "PAYLOAD_TOO_LARGE"
    assert r.retry_delay_s is None  # retrying the same message does not help


@pytest.mark.parametrize("settings_overrides", [{"setup_timeout_s": 3.0, "max_pending_connects": 3}])
async def test_pending_connects_are_bounded_per_front(stub: Any, settings_overrides: dict[str, Any]) -> None:
    calls = [stub.Connect() for _ in range(10)]
    results = await asyncio.gather(*(ended(c) for c in calls))
    reasons = sorted(r.reason for r in results if r is not None)
    assert reasons.count("TOO_MANY_PENDING_CONNECTS") == 7 and reasons.count("SETUP_TIMEOUT") == 3, reasons
