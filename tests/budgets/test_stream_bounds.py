"""The session logs and the fast-path streams are bounded by bytes: a message above stream_inline_max_bytes
crosses a worker inbox / front outbox as a reference (and arrives whole, in order), and the worker keeps the s2c
log within s2c_log_max_bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from livegate.redis import keys
from livegate.redis.bus import StreamBytes
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc

MODEL = "gemini-live-2.5-flash"


@pytest.fixture
async def stub(stack: dict[str, Any]) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(stack["front"].address) as ch:
        yield gateway_pb2_grpc.LiveGatewayStub(ch)


async def audio_turn(stub: Any, audio_in: int, text: str) -> tuple[str, list[gw.ServerMessage]]:
    """A session answering in audio: ``audio_in`` chunks of 100 ms in, then a user turn; every message of it."""
    call = stub.Connect()
    await call.write(gw.ClientMessage(setup={"model": MODEL, "generation_config": {"response_modalities": [3]}}))
    sid = (await call.read()).session.session_id
    chunk = gw.ClientMessage(realtime_input={"audio": {"mime_type": "audio/pcm;rate=16000", "data": b"\x01\x00" * 1600}})
    for _ in range(audio_in):
        await call.write(chunk)
    turn = gw.ClientMessage()
    turn.client_content.turns.add(role="user").parts.add(text=text)
    turn.client_content.turn_complete = True
    await call.write(turn)
    out = []
    async with asyncio.timeout(30):
        while True:
            m = await call.read()
            out.append(m)
            if m.server_content.turn_complete:
                break
    call.cancel()
    return sid, out


def audio_bytes(msgs: list[gw.ServerMessage]) -> int:
    return sum(len(p.inline_data.data) for m in msgs for p in m.server_content.model_turn.parts)


@pytest.mark.parametrize("settings_overrides", [{"stream_inline_max_bytes": 1024}])
async def test_big_messages_cross_the_fast_path_by_reference(stub: Any, stack: dict[str, Any],
                                                             settings_overrides: dict[str, Any]) -> None:
    _, msgs = await audio_turn(stub, 10, "Hello? Tell me a story please.")
    seqs = [m.seq for m in msgs if m.seq]
    assert seqs == list(range(1, len(seqs) + 1))  # every server message, in order
    assert audio_bytes(msgs) > 24000  # the audio chunks (9,600 B each) went through the outbox as references
    conv = stack["emulator"].conversations[0]  # and the 3,200 B audio chunks through the inbox
    assert sum(1 for m in conv["messages"] if m["kind"] == "realtimeInput.audio") == 10


@pytest.mark.parametrize("settings_overrides", [{"s2c_log_max_bytes": 64 * 1024}])
async def test_the_s2c_log_is_trimmed_by_bytes(stub: Any, stack: dict[str, Any], settings_overrides: dict[str, Any]) -> None:
    sid, msgs = await audio_turn(stub, 0, "say: " + "many words " * 60)
    assert audio_bytes(msgs) > 4 * 64 * 1024  # the reply was several times the bound...
    seqs = [m.seq for m in msgs if m.seq]
    assert seqs == list(range(1, len(seqs) + 1))  # ...and the caller got all of it
    entries = await stack["redis"].xrange(keys.session_s2c(sid), "-", "+")
    kept = sum(len(f[b"m"]) for _, f in entries)
    largest = max(len(m.SerializeToString()) for m in msgs)
    assert 0 < kept <= 64 * 1024 + largest, kept  # the log kept the newest messages within the bound


def test_stream_bytes() -> None:
    s = StreamBytes()
    assert s.fits(10**9, 100)  # an empty stream takes any entry
    for n in range(1, 6):
        s.add(n, 30)
    assert s.total == 150 and not s.fits(1, 150)
    s.forget_before(3)  # entries 1 and 2 were trimmed by someone else
    assert s.total == 90 and len(s) == 3 and s.fits(60, 150)
    assert s.trim_to(60) == 4 and s.total == 60  # drop the oldest until within 60; trim below entry 4
    assert s.trim_to(60) is None
    s.add(6, 500)
    assert s.trim_to(60) == 6 and s.total == 500  # the newest is always kept


@pytest.mark.parametrize("settings_overrides", [{"s2c_log_max_bytes": 64 * 1024, "stream_inline_max_bytes": 1024}])
async def test_a_front_behind_the_trimmed_log_cuts_the_stream_never_skips(stack: dict[str, Any],
                                                                          settings_overrides: dict[str, Any]) -> None:
    # a caller that does not read (a small receive window): the worker writes the whole reply, by reference,
    # and trims the log to 64 KiB long before the front gets to the references
    options = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65536)]
    async with grpc.aio.insecure_channel(stack["front"].address, options=options) as ch:
        call = gateway_pb2_grpc.LiveGatewayStub(ch).Connect()
        await call.write(gw.ClientMessage(setup={"model": MODEL, "generation_config": {"response_modalities": [3]}}))
        sid = (await call.read()).session.session_id
        turn = gw.ClientMessage()
        turn.client_content.turns.add(role="user").parts.add(text="say: " + "many words " * 60)
        turn.client_content.turn_complete = True
        await call.write(turn)
        async with asyncio.timeout(30):
            while True:  # until the worker logged the turn's end
                last = await stack["redis"].xrevrange(keys.session_s2c(sid), "+", "-", count=1)
                if last and gw.ServerMessage.FromString(last[0][1][b"m"]).server_content.turn_complete:
                    break
                await asyncio.sleep(0.05)
        seqs = []
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            async with asyncio.timeout(30):
                while (m := await call.read()) is not grpc.aio.EOF:
                    seqs.append(m.seq)
        call.cancel()
    assert seqs == list(range(1, len(seqs) + 1))  # what the caller got has no hole
    assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "reattach" in (cut.value.details() or "")
