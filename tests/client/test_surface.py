"""The rest of google-genai's AsyncSession surface (the deprecated ``send`` and ``start_stream``, every kind of
``send_realtime_input``, ``send_tool_response``, ``close``): the same calls, made once with google-genai straight
to the emulator and once through livegate, put the same messages on the upstream and get the same replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.genai import types

from livegate.client import Client
from tests.client.test_seed_examples import genai_client

MODEL = "gemini-live-2.5-flash"
SILENCE = b"\x00\x00" * 320  # 20 ms at 16 kHz


@pytest.fixture
def flavour() -> str:
    return "vertex"


async def turn_text(session: Any) -> str:
    return "".join([m.text async for m in session.receive() if m.text])


async def frames(n: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield SILENCE


async def every_call(client: Any) -> list[Any]:
    """One session using each method; returns what it received."""
    got: list[Any] = []
    tools = [{"function_declarations": [{"name": "turn_on_the_lights"}]}]
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"], "tools": tools}) as s:
        got.append(type(s.setup_complete).__name__)
        with pytest.warns(DeprecationWarning):
            await s.send(input="Hello?", end_of_turn=True)
        got.append(await turn_text(s))
        await s.send_client_content(turns=[types.Content(role="user", parts=[types.Part(text="One")])],
                                    turn_complete=False)
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "Two"}]})
        got.append(await turn_text(s))
        await s.send_realtime_input(text="realtime words")
        got.append(await turn_text(s))
        await s.send_client_content(turns={"parts": [{"text": "Turn on the lights please"}]})
        async for m in s.receive():
            if m.tool_call:
                [fc] = m.tool_call.function_calls
                got.append(fc.name)
                await s.send_tool_response(function_responses=types.FunctionResponse(
                    id=fc.id, name=fc.name, response={"result": "ok"}))
            elif m.text:
                got.append(m.text)
        with pytest.warns(DeprecationWarning):
            await s.send(input={"data": SILENCE, "mime_type": "audio/pcm;rate=16000"})
        await s.send_realtime_input(audio=types.Blob(data=SILENCE, mime_type="audio/pcm;rate=16000"))
        await s.send_realtime_input(audio_stream_end=True)
        with pytest.warns(DeprecationWarning):
            async for m in s.start_stream(stream=frames(5), mime_type="audio/pcm;rate=16000"):
                got.append(m.model_dump(exclude_none=True))
        await s.close()
    return got


def upstream_messages(conv: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(m["kind"], {k: v for k, v in m.items() if k not in ("connection", "index", "at", "ids")})
            for m in conv["messages"]]


async def test_every_session_method_reaches_the_upstream_as_google_genai_sends_it(stack: dict[str, Any],
                                                                                   client: Client) -> None:
    emulator = stack["emulator"]
    sdk = await every_call(genai_client(emulator))
    ours = await every_call(client)
    assert ours == sdk
    assert sdk[:4] == ["LiveServerSetupComplete", 'You said: "Hello?"', 'You said: "Two"', 'You said: "realtime words"']
    direct, through_livegate = emulator.conversations
    sdk_messages = upstream_messages(direct)
    assert upstream_messages(through_livegate) == sdk_messages
    kinds = [k for k, _ in sdk_messages]
    assert kinds.count("realtimeInput.audio") == 2 + 5 and "realtimeInput.audioStreamEnd" in kinds
    assert "toolResponse" in kinds


async def test_after_close_the_session_has_ended(client: Client, stack: dict[str, Any]) -> None:
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await s.close()
        await s.close()  # idempotent
        assert [m async for m in s.receive()] == []  # google-genai raises APIError 1000 here (docs/client.md)
        with pytest.raises(RuntimeError, match="closed"):
            await s.send_client_content(turns={"parts": [{"text": "anyone?"}]})
    [conv] = stack["emulator"].conversations
    assert conv["closes"] and conv["closes"][-1]["code"] == 1000  # the gateway ended the upstream normally


async def test_channel_options_reach_the_channel(stack: dict[str, Any]) -> None:
    """Client(options=...) passes gRPC channel arguments (round_robin over the chart's headless Service)."""
    from livegate.client import APIError

    config = '{"loadBalancingConfig": [{"round_robin": {}}]}'
    async with Client(f"ipv4:{stack['front'].address}", options=[("grpc.service_config", config)]) as client, \
            client.aio.live.connect(model="gemini-live-2.5-flash", config={"response_modalities": ["TEXT"]}) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "Hello?"}]})
        async for m in s.receive():
            if m.server_content and m.server_content.turn_complete:
                break
    # they do reach the channel: one grpc refuses makes every call fail
    async with Client(stack["front"].address, options=[("grpc.service_config", "{not json")]) as client:
        with pytest.raises((APIError, grpc.aio.AioRpcError)):
            async with client.aio.live.connect(model="gemini-live-2.5-flash", config={"response_modalities": ["TEXT"]}):
                pass
