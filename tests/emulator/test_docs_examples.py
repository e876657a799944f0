"""The raw-WebSocket samples of the (Chinese) Vertex Live API docs, run as written against the emulator,
plus configuration switches the SDK does not reach (NO_INTERRUPTION, initial history, role system, ws://)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from emu_helpers import open_session, recv_json, recv_until, ssl_ctx, text_of
from emulator.server import EmulatorServer
from emulator.transcribe import encode_text_tones

CONFIG = {"response_modalities": ["TEXT"]}


async def docs_session(server: EmulatorServer, setup: dict[str, Any], text: str) -> tuple[str, str]:
    """The docs' resumption sample: breaks when it has both turnComplete and a resumption update."""
    headers = {"Content-Type": "application/json", "Authorization": "Bearer docs-token"}
    async with connect(server.vertex_url(), ssl=ssl_ctx(server), additional_headers=headers) as ws:
        await ws.send(json.dumps({"setup": setup}))
        raw_response = await ws.recv(decode=False)
        json.loads(raw_response.decode("ascii"))
        msg = {"client_content": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turn_complete": True}}
        await ws.send(json.dumps(msg))
        responses, handle_id = [], ""
        turn_complete = False
        resumption_received = False
        async for raw in ws:
            response = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            server_content = response.pop("serverContent", None)
            resumption_update = response.pop("sessionResumptionUpdate", None)
            if server_content is not None:
                model_turn = server_content.pop("modelTurn", None)
                if model_turn is not None:
                    parts = model_turn.pop("parts", None)
                    if parts is not None:
                        responses.append(parts[0]["text"])
                turn_complete = server_content.pop("turnComplete", None)
            elif resumption_update is not None:
                handle_id = resumption_update["newHandle"]
                resumption_received = True
            else:
                continue
            if turn_complete and resumption_received:
                break
    return "".join(responses), handle_id


async def test_docs_resumption_sample(server: EmulatorServer) -> None:
    model = "gemini-2.0-flash-live-preview-04-09"  # the docs send a bare model id on Vertex
    answer, handle = await docs_session(
        server, {"model": model, "generation_config": CONFIG, "session_resumption": {}}, "Hello? Gemini are you there?")
    assert answer == 'You said: "Hello? Gemini are you there?"' and handle
    answer, _ = await docs_session(
        server, {"model": model, "generation_config": CONFIG, "session_resumption": {"handle": handle}},
        "What was the last question I asked?")
    assert answer == 'You asked: "Hello? Gemini are you there?"'


async def test_docs_function_sample_with_unwrapped_repeated_fields(server: EmulatorServer) -> None:
    tools = {"function_declarations": {"name": "get_current_weather",
                                       "description": "Get the current weather in the given location",
                                       "parameters": {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}}}}
    ws = await open_session(server, {"model": "gemini-2.0-flash-live-preview-04-09", "generation_config": CONFIG,
                                     "tools": tools}, flavour="vertex", headers={"Authorization": "Bearer t"})
    await ws.send(json.dumps({"client_content": {"turns": [{"role": "user", "parts": [
        {"text": "Get the current weather in Santa Clara, San Jose and Mountain View"}]}], "turn_complete": True}}))
    frames = await recv_until(ws, "toolCall")
    [call] = frames[-1]["toolCall"]["functionCalls"]
    assert call["name"] == "get_current_weather" and call["args"] == {"location": "Santa Clara"}
    await ws.close()


async def test_no_interruption_keeps_generating(start_server: Any) -> None:
    server = await start_server(pacing=1.0, audio_chunk_ms=100)
    ws = await open_session(server, {"generationConfig": {"responseModalities": ["AUDIO"]},
                                     "outputAudioTranscription": {},
                                     "realtimeInputConfig": {"activityHandling": "NO_INTERRUPTION"}})
    await ws.send(json.dumps({"realtimeInput": {"text": "Say: one two three four five six seven eight"}}))
    assert "modelTurn" in (await recv_json(ws))["serverContent"]
    pcm = encode_text_tones("hey") + bytes(32000)
    import base64

    await ws.send(json.dumps({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000",
                                                          "data": base64.b64encode(pcm).decode()}}}))
    frames = await recv_until(ws, "turnComplete")
    contents = [f.get("serverContent", {}) for f in frames]
    assert not any(c.get("interrupted") for c in contents)
    assert any(c.get("generationComplete") for c in contents)
    frames = await recv_until(ws, "turnComplete")  # then the speech is answered
    said = "".join(f["serverContent"]["outputTranscription"]["text"] for f in frames
                   if "outputTranscription" in f.get("serverContent", {}))
    assert said == 'You said: "hey"'
    await ws.close()


async def test_initial_history_in_client_content(server: EmulatorServer) -> None:
    ws = await open_session(server, {"historyConfig": {"initialHistoryInClientContent": True}})
    await ws.send(json.dumps({"clientContent": {"turns": [
        {"role": "user", "parts": [{"text": "Where is the Eiffel tower?"}]},
        {"role": "model", "parts": [{"text": "In Paris."}]}], "turnComplete": True}}))  # history only: no reply
    await ws.send(json.dumps({"realtimeInput": {"text": "What was the last question I asked?"}}))
    frames = await recv_until(ws, "turnComplete")
    assert text_of(frames) == 'You asked: "Where is the Eiffel tower?"'
    assert sum(1 for f in frames if "generationComplete" in f.get("serverContent", {})) == 1
    await ws.close()


async def test_role_system_rejected_when_configured(start_server: Any) -> None:
    server = await start_server(system_role="reject")
    ws = await open_session(server)
    await ws.send(json.dumps({"clientContent": {"turns": [{"role": "system", "parts": [{"text": "x"}]}]}}))
    with pytest.raises(ConnectionClosed):
        await recv_json(ws)
    assert (ws.close_code, ws.close_reason) == (1007, "Request contains an invalid argument.")


async def test_plain_ws_and_pretty_frames(start_server: Any) -> None:
    server = await start_server(tls=False, pretty=True)
    assert server.url.startswith("http://") and server.cert_path is None
    async with connect(server.gemini_url(), additional_headers={"x-goog-api-key": "k"}) as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-2.0-flash-live-001"}}))
        raw = await ws.recv()
        assert raw == b'{\n  "setupComplete": {}\n}'
