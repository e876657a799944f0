"""The real google-genai SDK (unmodified but for base_url and trusting the certificate) against the emulator."""

from __future__ import annotations

import array
import asyncio
from typing import Any

import pytest
from google.genai import errors, types

from emulator.server import EmulatorServer

from emu_helpers import gemini_client, vertex_client

MODEL = "gemini-live-2.5-flash-preview"
VERTEX_MODEL = "gemini-live-2.5-flash"


async def turn(session: Any, text: str) -> list[Any]:
    await session.send_client_content(turns={"role": "user", "parts": [{"text": text}]})
    return [m async for m in session.receive()]


def joined_text(messages: list[Any]) -> str:
    return "".join(m.text or "" for m in messages)


def client_for(server: EmulatorServer, flavour: str, credential: str | None = None) -> Any:
    if flavour == "gemini":
        return gemini_client(server, api_key=credential or "test-key")
    return vertex_client(server, token=credential or "test-token")


def model_for(flavour: str) -> str:
    return MODEL if flavour == "gemini" else VERTEX_MODEL


FLAVOURS = pytest.mark.parametrize("flavour", ["gemini", "vertex"])


@pytest.mark.parametrize("flavour", ["gemini", "vertex"])
async def test_text_to_text_and_history(server: EmulatorServer, flavour: str) -> None:
    client = gemini_client(server) if flavour == "gemini" else vertex_client(server)
    model = MODEL if flavour == "gemini" else VERTEX_MODEL
    async with client.aio.live.connect(model=model, config={"response_modalities": ["TEXT"]}) as session:
        first = await turn(session, "Hello? Gemini are you there?")
        assert joined_text(first) == 'You said: "Hello? Gemini are you there?"'
        assert first[-1].server_content.turn_complete
        usage = first[-1].usage_metadata
        assert usage.response_token_count and usage.prompt_token_count
        assert usage.total_token_count == usage.prompt_token_count + usage.response_token_count
        second = await turn(session, "What was the last question I asked?")
        assert joined_text(second) == 'You asked: "Hello? Gemini are you there?"'
        if flavour == "vertex":
            assert session.session_id  # setupComplete.sessionId
    [conv] = server.conversations
    assert conv["flavour"] == flavour and conv["connections"] == 1
    assert [m["kind"] for m in conv["messages"]] == ["setup", "clientContent", "clientContent"]


@FLAVOURS
async def test_text_to_audio_is_24khz_pcm(server: EmulatorServer, flavour: str) -> None:
    client = client_for(server, flavour)
    config = {
        "response_modalities": ["AUDIO"],
        "speech_config": {"voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}}},
        "output_audio_transcription": {},
    }
    async with client.aio.live.connect(model=model_for(flavour), config=config) as session:
        messages = await turn(session, "Say: hello there")
    pcm = b"".join(m.data for m in messages if m.data)
    parts = [p for m in messages if m.server_content and m.server_content.model_turn
             for p in m.server_content.model_turn.parts]
    mime = "audio/pcm;rate=24000" if flavour == "gemini" else "audio/pcm"
    assert parts and all(p.inline_data.mime_type == mime for p in parts)
    assert len(pcm) % 2 == 0 and len(pcm) > 24000  # more than half a second of 16-bit audio
    samples = array.array("h", pcm)
    assert max(abs(s) for s in samples) > 1000  # not silence
    said = "".join(m.server_content.output_transcription.text for m in messages
                   if m.server_content and m.server_content.output_transcription)
    assert said == "hello there"
    assert any(m.server_content and m.server_content.generation_complete for m in messages)


async def test_function_calling_round_trip(server: EmulatorServer) -> None:
    client = gemini_client(server)
    weather = {"name": "get_weather", "description": "weather",
               "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}
    config = {"response_modalities": ["TEXT"], "tools": [{"function_declarations": [weather]}]}
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns={"role": "user", "parts": [{"text": "What is the weather in Paris?"}]})
        call = None
        async for message in session.receive():
            if message.tool_call:
                call = message.tool_call.function_calls[0]
                assert call.name == "get_weather" and call.args == {"city": "Paris"}
                assert call.id.startswith("function-call-") and call.id[14:].isdigit()
                await session.send_tool_response(function_responses=[
                    types.FunctionResponse(id=call.id, name=call.name, response={"result": "sunny"})])
            elif message.server_content and message.server_content.turn_complete:
                break
        assert call is not None
    [conv] = server.conversations
    tool_msgs = [m for m in conv["messages"] if m["kind"] == "toolResponse"]
    assert tool_msgs == [{"connection": 1, "index": 2, "kind": "toolResponse", "ids": [call.id], "names": ["get_weather"]}]


async def test_function_call_reply_uses_the_response(server: EmulatorServer) -> None:
    client = vertex_client(server)
    config = {"response_modalities": ["TEXT"],
              "tools": [{"function_declarations": [{"name": "turn_on_the_lights"}, {"name": "turn_off_the_lights"}]}]}
    async with client.aio.live.connect(model=VERTEX_MODEL, config=config) as session:
        await session.send_client_content(turns={"parts": [{"text": "Turn on the lights please"}]})
        texts = []
        async for message in session.receive():
            if message.tool_call:
                [fc] = message.tool_call.function_calls
                assert fc.name == "turn_on_the_lights"
                assert len(fc.id) == 36  # a UUID on Vertex
                await session.send_tool_response(function_responses=[
                    types.FunctionResponse(id=fc.id, name=fc.name, response={"result": "ok"})])
            if message.text:
                texts.append(message.text)
    assert "".join(texts) == 'turn_on_the_lights returned {"result":"ok"}.'


@FLAVOURS
async def test_code_execution_parts(server: EmulatorServer, flavour: str) -> None:
    client = client_for(server, flavour)
    config = {"response_modalities": ["TEXT"], "tools": [{"code_execution": {}}]}
    async with client.aio.live.connect(model=model_for(flavour), config=config) as session:
        messages = await turn(session, "Compute 12 * (3 + 4)")
    parts = [p for m in messages if m.server_content and m.server_content.model_turn
             for p in m.server_content.model_turn.parts]
    code = next(p.executable_code for p in parts if p.executable_code)
    result = next(p.code_execution_result for p in parts if p.code_execution_result)
    assert code.language == "PYTHON" and "12 * (3 + 4)" in code.code
    assert result.output.strip() == "84"
    assert "84" in joined_text(messages)


@FLAVOURS
async def test_search_grounding(server: EmulatorServer, flavour: str) -> None:
    client = client_for(server, flavour)
    config = {"response_modalities": ["TEXT"], "tools": [{"google_search": {}}]}
    async with client.aio.live.connect(model=model_for(flavour), config=config) as session:
        messages = await turn(session, "When did the last Brazil vs. Argentina soccer match happen?")
    grounding = [m.server_content.grounding_metadata for m in messages
                 if m.server_content and m.server_content.grounding_metadata]
    assert grounding and grounding[0].web_search_queries == [
        "When did the last Brazil vs. Argentina soccer match happen?"]
    assert grounding[0].grounding_chunks[0].web.uri.startswith("https://")


@FLAVOURS
async def test_input_transcription_of_audio(server: EmulatorServer, flavour: str) -> None:
    from emulator.transcribe import encode_text_tones

    client = client_for(server, flavour)
    config = {"response_modalities": ["TEXT"], "input_audio_transcription": {}}
    speech = encode_text_tones("book a table for two")
    silence = bytes(16000 * 2)  # one second
    async with client.aio.live.connect(model=model_for(flavour), config=config) as session:
        for i in range(0, len(speech), 3200):
            await session.send_realtime_input(audio=types.Blob(data=speech[i:i + 3200], mime_type="audio/pcm;rate=16000"))
        await session.send_realtime_input(audio=types.Blob(data=silence, mime_type="audio/pcm;rate=16000"))
        messages = [m async for m in session.receive()]
    heard = "".join(m.server_content.input_transcription.text for m in messages
                    if m.server_content and m.server_content.input_transcription)
    assert heard == "book a table for two"
    assert joined_text(messages) == 'You said: "book a table for two"'


@pytest.mark.parametrize("flavour", ["gemini", "vertex"])
async def test_resumption_on_a_second_connection(server: EmulatorServer, flavour: str) -> None:
    client = gemini_client(server) if flavour == "gemini" else vertex_client(server)
    model = MODEL if flavour == "gemini" else VERTEX_MODEL
    config: dict[str, Any] = {"response_modalities": ["TEXT"], "session_resumption": {}}
    handle = None
    async with client.aio.live.connect(model=model, config=config) as session:
        await turn(session, "Hello? Gemini are you there?")
        async for message in session.receive():  # the update arrives after turnComplete
            if message.session_resumption_update:
                assert message.session_resumption_update.resumable
                handle = message.session_resumption_update.new_handle
                break
    assert handle
    config["session_resumption"] = {"handle": handle}
    async with client.aio.live.connect(model=model, config=config) as session:
        reply = await turn(session, "What was the last question I asked?")
    assert joined_text(reply) == 'You asked: "Hello? Gemini are you there?"'
    [conv] = server.conversations
    assert conv["connections"] == 2
    assert [(m["connection"], m["index"], m["kind"]) for m in conv["messages"]] == [
        (1, 0, "setup"), (1, 1, "clientContent"), (2, 0, "setup"), (2, 1, "clientContent")]


@FLAVOURS
async def test_go_away_then_deadline_close(start_server: Any, flavour: str) -> None:
    server = await start_server(connection_lifetime_s=1.0, go_away_lead_s=0.5)
    client = client_for(server, flavour)
    async with client.aio.live.connect(model=model_for(flavour), config={"response_modalities": ["TEXT"]}) as session:
        go_away = None
        with pytest.raises(errors.APIError) as info:
            async with asyncio.timeout(10):
                while True:
                    async for message in session.receive():
                        if message.go_away:
                            go_away = message.go_away
    assert go_away is not None and go_away.time_left is not None
    assert info.value.code == 1011 and "Deadline expired before operation could complete." in str(info.value)
    assert server.conversations[0]["go_aways"] == 1


@FLAVOURS
async def test_quota_close(start_server: Any, flavour: str) -> None:
    server = await start_server(max_sessions_per_credential=1)
    client = client_for(server, flavour)
    config = {"response_modalities": ["TEXT"]}
    async with client.aio.live.connect(model=model_for(flavour), config=config) as first:
        with pytest.raises(errors.APIError) as info:
            async with client.aio.live.connect(model=model_for(flavour), config=config) as second:
                await turn(second, "hi")
        assert info.value.code == 1011 and "You exceeded your current quota" in str(info.value)
        assert joined_text(await turn(first, "still here")) == 'You said: "still here"'


@FLAVOURS
async def test_bad_credentials(start_server: Any, flavour: str) -> None:
    server = await start_server(api_keys=frozenset({"good"}), bearer_tokens=frozenset({"good"}))
    client = client_for(server, flavour, credential="bad")
    with pytest.raises(errors.APIError) as info:
        async with client.aio.live.connect(model=model_for(flavour), config={"response_modalities": ["TEXT"]}) as s:
            await turn(s, "hi")
    if flavour == "gemini":
        assert info.value.code == 1007 and "API key not valid. Please pass a valid API key." in str(info.value)
    else:
        assert info.value.code == 1008 and "Request had invalid authentication credentials" in str(info.value)


@FLAVOURS
async def test_unknown_model(server: EmulatorServer, flavour: str) -> None:
    client = gemini_client(server, version="v1beta") if flavour == "gemini" else vertex_client(server)
    with pytest.raises(errors.APIError) as info:
        async with client.aio.live.connect(model="gemini-nope", config={"response_modalities": ["TEXT"]}) as session:
            await turn(session, "hi")
    assert info.value.code == 1008
    if flavour == "gemini":
        assert "models/gemini-nope is not found for API version v1beta" in str(info.value)
    else:
        assert "Publisher Model `projects/p/locations/us-central1/publishers/google/models/gemini-nope`" in str(
            info.value)


@FLAVOURS
async def test_second_setup_rejected(server: EmulatorServer, flavour: str) -> None:
    client = client_for(server, flavour)
    async with client.aio.live.connect(model=model_for(flavour), config={"response_modalities": ["TEXT"]}) as session:
        await session._ws.send('{"setup": {"model": "models/gemini-live-2.5-flash-preview"}}')
        with pytest.raises(errors.APIError) as info:
            async for _ in session.receive():
                pass
    assert info.value.code == 1007 and "Request contains an invalid argument." in str(info.value)


async def test_vertex_default_modality_is_audio(server: EmulatorServer) -> None:
    client = vertex_client(server)
    async with client.aio.live.connect(model=VERTEX_MODEL, config={}) as session:  # the SDK injects AUDIO
        messages = await turn(session, "Say: good morning")
    parts = [p for m in messages if m.server_content and m.server_content.model_turn
             for p in m.server_content.model_turn.parts]
    assert parts and {p.inline_data.mime_type for p in parts} == {"audio/pcm"}
    assert sum(len(p.inline_data.data) for p in parts) > 24000
    usage = messages[-1].usage_metadata  # Vertex candidatesTokenCount, mapped by the SDK
    assert usage.response_token_count and usage.response_tokens_details[0].modality.name == "AUDIO"


@pytest.mark.filterwarnings("ignore:The SDK's ephemeral token support is experimental")
async def test_ephemeral_token_constrained_endpoint(start_server: Any) -> None:
    server = await start_server(ephemeral_tokens=frozenset({"auth_tokens/good"}))
    client = gemini_client(server, api_key="auth_tokens/good", version="v1alpha")
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as session:
        assert joined_text(await turn(session, "hi")) == 'You said: "hi"'
    assert server.conversations[0]["credential_kind"] == "ephemeral"
    client = gemini_client(server, api_key="auth_tokens/bad", version="v1alpha")
    with pytest.raises(errors.APIError) as info:
        async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as session:
            await turn(session, "hi")
    assert info.value.code == 1007


async def test_aclose_with_a_stalled_session_is_prompt(start_server: Any) -> None:
    server = await start_server()
    client = gemini_client(server)
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as session:
        server.faults.add({"target": "all", "action": "stall"})  # a live session: stalls now
        await session.send_client_content(turns={"role": "user", "parts": [{"text": "anyone there?"}]})
        async with asyncio.timeout(5):  # the turn request reached the emulator (bounded poll of real state)
            while len(server.conversations[0]["messages"]) < 2:
                await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.aclose()
        assert loop.time() - started < 4
        with pytest.raises(errors.APIError) as info:
            async for _ in session.receive():
                pass
        assert info.value.code == 1001


async def test_back_to_back_turns_are_never_spuriously_interrupted(server: EmulatorServer) -> None:
    client = gemini_client(server)
    config = {"response_modalities": ["TEXT"], "session_resumption": {}}
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        for i in range(30):
            messages = await turn(session, f"message {i}")
            assert not any(m.server_content and m.server_content.interrupted for m in messages)
            assert f'You said: "message {i}"' in joined_text(messages)
    [conv] = server.conversations
    assert [m["text"] for m in conv["messages"][1:]] == [f"message {i}" for i in range(30)]
