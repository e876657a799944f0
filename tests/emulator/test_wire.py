"""Raw WebSocket: routing, credentials, proto3-JSON parsing, frame types, flavour differences, bad input."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from emu_helpers import (
    GEMINI_MODEL,
    VERTEX_MODEL,
    open_session,
    raw_connect,
    recv_json,
    recv_until,
    ssl_ctx,
    text_of,
)
from emulator.server import EmulatorServer


async def closed_with(ws: Any) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed):
        while True:
            await recv_json(ws)
    assert ws.close_code is not None
    assert len(ws.close_reason.encode()) <= 123
    return ws.close_code, ws.close_reason


async def test_unknown_path_is_http_404(server: EmulatorServer) -> None:
    from websockets.asyncio.client import connect

    with pytest.raises(InvalidStatus) as info:
        await connect(server.ws_url + "/ws/google.ai.generativelanguage.v2.GenerativeService.BidiGenerateContent",
                      ssl=ssl_ctx(server))
    assert info.value.response.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "//ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained",
        "//ws/google.cloud.aiplatform.v1.LlmBidiService/BidiGenerateContent",
    ],
)
async def test_path_variants_route(server: EmulatorServer, path: str) -> None:
    from websockets.asyncio.client import connect

    model = VERTEX_MODEL if "aiplatform" in path else GEMINI_MODEL
    async with connect(server.ws_url + path, ssl=ssl_ctx(server),
                       additional_headers={"Authorization": "Token auth_tokens/x"}) as ws:
        await ws.send(json.dumps({"setup": {"model": model}}))
        first = await recv_json(ws)
        assert "setupComplete" in first
        assert ("sessionId" in first["setupComplete"]) == ("aiplatform" in path)


async def test_query_key_and_bad_key(start_server: Any) -> None:
    server = await start_server(api_keys=frozenset({"good"}), bearer_tokens=frozenset({"tok"}))
    ok = await open_session(server, headers={}, query="?key=good")
    await ok.close()
    ws = await raw_connect(server, headers={}, query="?key=bad")
    await ws.send(json.dumps({"setup": {"model": GEMINI_MODEL}}))
    assert await closed_with(ws) == (1007, "API key not valid. Please pass a valid API key.")
    ws = await raw_connect(server, "vertex", headers={"Authorization": "Bearer nope"})
    await ws.send(json.dumps({"setup": {"model": VERTEX_MODEL}}))
    code, reason = await closed_with(ws)
    assert code == 1008 and reason.startswith("Request had invalid authentication credentials")
    ok = await open_session(server, flavour="vertex", headers={}, query="?access_token=tok")
    await ok.close()


async def test_mixed_casing_and_binary_frames(server: EmulatorServer) -> None:
    ws = await raw_connect(server)
    await ws.send(json.dumps({"setup": {
        "model": GEMINI_MODEL,
        "generation_config": {"response_modalities": ["TEXT"], "speechConfig": {"voice_config": {
            "prebuiltVoiceConfig": {"voice_name": "Kore"}}}},
        "system_instruction": {"parts": [{"text": "Be kind."}]},
        "tools": [{"function_declarations": [{"name": "set_Alarm", "parameters": {
            "type": "OBJECT", "properties": {"wake_Time": {"type": "STRING"}}}}]}],
        "realtimeInputConfig": {"automatic_activity_detection": {"disabled": False, "silence_duration_ms": "300"}},
        "context_window_compression": {"trigger_tokens": "25600", "slidingWindow": {"target_tokens": 12800}},
    }}))
    raw = await ws.recv()
    assert isinstance(raw, bytes)  # Gemini default: binary frames
    assert json.loads(raw) == {"setupComplete": {}}
    await ws.send(json.dumps({"client_content": {"turns": [{"role": "user", "parts": [
        {"text": "what are your instructions?"}]}], "turn_complete": True}}))
    frames = await recv_until(ws, "turnComplete")
    assert text_of(frames) == 'Your instructions are: "Be kind."'
    assert set(frames[-1]) == {"serverContent", "usageMetadata"}
    usage = frames[-1]["usageMetadata"]
    assert "responseTokenCount" in usage and "candidatesTokenCount" not in usage
    await ws.send(json.dumps({"clientContent": {"turns": [{"parts": [{"text": "set alarm wake_Time=7am"}]}],
                                                "turnComplete": True}}))
    frames = await recv_until(ws, "toolCall")
    call = frames[-1]["toolCall"]["functionCalls"][0]
    assert call["name"] == "set_Alarm" and call["args"] == {"wake_Time": "7am"}  # keys never rewritten
    await ws.send(json.dumps({"tool_response": {"function_responses": [
        {"id": call["id"], "name": "set_Alarm", "response": {"alarm_id": 7, "snake_key": True}}]}}))
    frames = await recv_until(ws, "turnComplete")
    assert text_of(frames) == 'set_Alarm returned {"alarm_id":7,"snake_key":true}.'
    await ws.close()


async def test_vertex_flavour_frames(server: EmulatorServer) -> None:
    ws = await open_session(server, flavour="vertex", headers={"Authorization": "Bearer t"},
                            setup={"generationConfig": {"responseModalities": ["AUDIO"]}})
    await ws.send(json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Say: hi"}]}],
                                                "turnComplete": True}}))
    raw = await ws.recv()
    assert isinstance(raw, str)  # Vertex default: text frames
    first = json.loads(raw)
    turn = first["serverContent"]["modelTurn"]
    assert turn["role"] == "model" and turn["parts"][0]["inlineData"]["mimeType"] == "audio/pcm"
    base64.b64decode(turn["parts"][0]["inlineData"]["data"], validate=True)  # standard base64
    frames = await recv_until(ws, "turnComplete")
    usage = frames[-1]["usageMetadata"]
    assert usage["candidatesTokenCount"] > 0 and usage["trafficType"] == "ON_DEMAND"
    assert usage["candidatesTokensDetails"] == [{"modality": "AUDIO", "tokenCount": usage["candidatesTokenCount"]}]
    assert "responseTokenCount" not in usage
    await ws.close()


async def test_text_frames_configurable(start_server: Any) -> None:
    server = await start_server(frames="text")
    ws = await raw_connect(server)
    await ws.send(json.dumps({"setup": {"model": GEMINI_MODEL}}))
    assert isinstance(await ws.recv(), str)
    await ws.close()


BAD_INPUTS = {
    "malformed json": "{not json",
    "unknown top-level key": json.dumps({"clientContentz": {}}),
    "two top-level keys": json.dumps({"clientContent": {}, "realtimeInput": {}}),
    "turns wrong type": json.dumps({"clientContent": {"turns": "hello", "turnComplete": True}}),
    "turnComplete wrong type": json.dumps({"clientContent": {"turns": [], "turnComplete": "yes"}}),
    "audio wrong mime": json.dumps({"realtimeInput": {"audio": {"mimeType": "audio/wav", "data": "AAAA"}}}),
    "bad base64": json.dumps({"realtimeInput": {"audio": {"mimeType": "audio/pcm", "data": "@@@"}}}),
    "oversize": json.dumps({"realtimeInput": {"text": "x" * 70_000}}),
    "second setup": json.dumps({"setup": {"model": GEMINI_MODEL}}),
    "response not object": json.dumps({"toolResponse": {"functionResponses": [{"id": "1", "response": 3}]}}),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
async def test_bad_input_closes_1007(start_server: Any, name: str) -> None:
    server = await start_server(max_message_bytes=64_000)
    ws = await open_session(server)
    await ws.send(BAD_INPUTS[name])
    assert await closed_with(ws) == (1007, "Request contains an invalid argument.")
    [conv] = server.conversations
    assert conv["messages"][-1]["index"] == 1


@pytest.mark.parametrize(
    "setup",
    [
        {"generationConfig": {"responseModalities": ["TEXT", "AUDIO"]}},
        {"generationConfig": {"speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Achernar"}}}}},
        {"generationConfig": {"speechConfig": {"languageCode": "xx-XX"}}},
        {"generationConfig": {"enableAffectiveDialog": True}},
        {"proactivity": {"proactiveAudio": True}},
        {"sessionResumption": {"transparent": True}},  # Vertex only
        {"contextWindowCompression": {"triggerTokens": "lots"}},
    ],
)
async def test_invalid_setup_closes_1007(server: EmulatorServer, setup: dict[str, Any]) -> None:
    ws = await raw_connect(server)
    await ws.send(json.dumps({"setup": {"model": GEMINI_MODEL, **setup}}))
    assert await closed_with(ws) == (1007, "Request contains an invalid argument.")


async def test_first_message_must_be_setup(server: EmulatorServer) -> None:
    ws = await raw_connect(server)
    await ws.send(json.dumps({"clientContent": {"turnComplete": True}}))
    assert await closed_with(ws) == (1007, "Request contains an invalid argument.")


async def test_unknown_vertex_model_reason_is_truncated(server: EmulatorServer) -> None:
    ws = await raw_connect(server, "vertex", headers={"Authorization": "Bearer t"})
    model = "projects/my-project-with-a-long-name/locations/us-central1/publishers/google/models/gemini-unknown-live"
    await ws.send(json.dumps({"setup": {"model": model}}))
    code, reason = await closed_with(ws)
    assert code == 1008 and reason.startswith("Publisher Model `projects/my-project")
    assert len(reason.encode()) == 123


async def test_native_audio_features_and_hd_voices(server: EmulatorServer) -> None:
    ws = await raw_connect(server)
    await ws.send(json.dumps({"setup": {
        "model": "models/gemini-2.5-flash-native-audio-preview-12-2025",
        "generationConfig": {"responseModalities": ["AUDIO"], "enableAffectiveDialog": True,
                             "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Achernar"}}}},
        "proactivity": {"proactiveAudio": True},
    }}))
    assert "setupComplete" in await recv_json(ws)
    # proactive audio: not addressed to the model -> no model turn, just turnComplete
    await ws.send(json.dumps({"realtimeInput": {"text": "pass me the salt, Bob"}}))
    frames = await recv_until(ws, "turnComplete")
    assert not any("modelTurn" in f.get("serverContent", {}) for f in frames)
    await ws.send(json.dumps({"realtimeInput": {"text": "Gemini, I feel sad today"}}))
    frames = await recv_until(ws, "turnComplete")
    assert any("modelTurn" in f.get("serverContent", {}) for f in frames)
    assert any("generationComplete" in f.get("serverContent", {}) for f in frames)
    await ws.close()


def test_durations_are_proto3_json() -> None:
    from emulator.frames import duration

    assert [duration(x) for x in (50, 0.4, 0.39987, 1.05, 0)] == ["50s", "0.400s", "0.400s", "1.050s", "0s"]
