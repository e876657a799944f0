"""Backpressure: a caller that reads too slowly is cut (the session is kept for a reattach) without the front's
memory growing; a caller that sends audio much faster than real time is throttled; oversized chunks refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from livegate.client import APIError
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc
from tests.durability.procs import ProcStack, emulator_server

MODEL = "gemini-live-2.5-flash"


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture
async def emulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    async with emulator_server(tmp_path_factory, pacing=0.0, audio_chunk_ms=100, speech_engine="synthetic") as emu:
        yield emu


async def test_slow_reader_is_cut_without_memory_growth(redis: Any, redis_url: str, emulator: Any) -> None:
    # the whole reply (~2,800 messages) stays in the session's history: the worker may write all of it before
    # the caller reattaches, and this test is about the cut and the reattach, not about trimmed history
    procs = ProcStack(redis_url, emulator, session_queue_len=64, s2c_history_len=5000,
                      s2c_log_max_bytes=64 * 1024 * 1024)
    try:
        await procs.worker()
        front = await procs.front()
        # a slow reader's receive window stays small (no BDP probing growing it past the reply)
        async with grpc.aio.insecure_channel(front.address, options=[("grpc.http2.bdp_probe", 0),
                                                                     ("grpc.http2.lookahead_bytes", 65536)]) as channel:
            stub = gateway_pb2_grpc.LiveGatewayStub(channel)
            call = stub.Connect()
            setup = gw.ClientMessage()
            setup.setup.model = MODEL
            setup.setup.generation_config.response_modalities.append(3)  # AUDIO
            await call.write(setup)
            info = (await call.read()).session
            before = rss_bytes(front.proc.pid)
            turn = gw.ClientMessage()
            # a reply of ~10 minutes of 24 kHz audio (~28 MB) that this caller will not read
            turn.client_content.turns.add(role="user").parts.add(text="say: " + "many words " * 900)
            turn.client_content.turn_complete = True
            await call.write(turn)
            # the caller reads nothing until the gateway has given up on it
            redis_keys = f"lg:{{{info.session_id}}}:s2c"
            async with asyncio.timeout(60):
                while await redis.xlen(redis_keys) < 1500:  # the worker went on writing the session's log
                    await asyncio.sleep(0.1)
            grown = rss_bytes(front.proc.pid) - before
            got = 0
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                async with asyncio.timeout(30):
                    while (m := await call.read()) is not grpc.aio.EOF:
                        got = max(got, m.seq)
            assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            status = rpc_status.from_call(cut.value)
            detail = error_details_pb2.ErrorInfo()
            assert status is not None and status.details[0].Unpack(detail) and detail.reason == "SLOW_READER"
            # 1500+ messages (~15 MB) flowed past a caller that read none of them; the front held a bounded few
            assert grown < 8 * 1024 * 1024, f"front RSS grew by {grown / 1e6:.1f} MB"
            # the session was kept: the caller reattaches and reads on from where it was cut
            again = stub.Connect()
            await again.write(gw.ClientMessage(reattach=gw.Reattach(
                session_id=info.session_id, reattach_token=info.reattach_token, last_seq=got)))
            assert (await again.read()).session.session_id == info.session_id
            nxt = await again.read()
            assert nxt.seq == got + 1
            again.cancel()
    finally:
        await procs.aclose()


@pytest.mark.parametrize("settings_overrides", [{"audio_rate_factor": 4.0, "audio_burst_s": 1.0}])
async def test_fast_audio_sender_is_throttled(client: Any, stack: dict[str, Any], settings_overrides: dict[str, Any]) -> None:
    frame = b"\x00\x00" * 1600  # 100 ms at 16 kHz
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        t0 = time.monotonic()
        for _ in range(100):  # 10 s of audio, sent as fast as the gateway accepts it
            await s.send_realtime_input(audio={"data": frame, "mime_type": "audio/pcm;rate=16000"})
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "done?"}]})
        async with asyncio.timeout(30):
            async for m in s.receive_raw():
                if m.server_content.turn_complete:
                    break
        elapsed = time.monotonic() - t0
    # at most 4x real time after a 1 s burst: (10 - 1) / 4 = 2.25 s, however fast this machine is
    assert elapsed >= 2.2
    conv = stack["emulator"].conversations[0]
    assert sum(1 for m in conv["messages"] if m["kind"] == "realtimeInput.audio") == 100  # throttled, not dropped


async def test_oversized_audio_chunk_is_refused(client: Any) -> None:
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await s.send_realtime_input(audio={"data": b"\x00\x00" * 16000 * 3, "mime_type": "audio/pcm;rate=16000"})
        with pytest.raises(APIError) as err:  # the client raises google-genai's errors
            async with asyncio.timeout(10):
                async for _ in s.receive_raw():
                    pass
    assert err.value.grpc_status == grpc.StatusCode.INVALID_ARGUMENT and err.value.code == 1007
    assert "3000 ms" in (err.value.message or "") and "2000 ms" in (err.value.message or "")
