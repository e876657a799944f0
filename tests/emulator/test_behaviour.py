"""Raw WebSocket: realtime audio (VAD, manual activity, mediaChunks, audioStreamEnd), barge-in, tools
scheduling, resumption details, limits and compression, RAG memory."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from emu_helpers import VERTEX_MODEL, open_session, raw_connect, recv_json, recv_until, text_of
from emulator.server import EmulatorServer
from emulator.transcribe import encode_text_tones

SILENCE_1S = bytes(32000)


def audio_msg(pcm: bytes, *, urlsafe: bool = False, key: str = "audio", mime: str = "audio/pcm;rate=16000") -> str:
    data = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(pcm).decode()
    blob = {"mime_type": mime, "data": data}
    return json.dumps({"realtime_input": {key: [blob] if key == "mediaChunks" else blob}})


async def closed(ws: Any) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed):
        while True:
            await recv_json(ws)
    return ws.close_code, ws.close_reason


async def test_media_chunks_and_audio_stream_end_flush(server: EmulatorServer) -> None:
    ws = await open_session(server, {"inputAudioTranscription": {}})
    speech = encode_text_tones("turn left")
    for i in range(0, len(speech), 4000):
        await ws.send(audio_msg(speech[i:i + 4000], urlsafe=True, key="mediaChunks"))
    await ws.send(json.dumps({"realtimeInput": {"audioStreamEnd": True}}))  # no trailing silence: flush
    frames = await recv_until(ws, "turnComplete")
    assert frames[0]["serverContent"]["inputTranscription"]["text"] == "turn left"
    assert text_of(frames) == 'You said: "turn left"'
    [conv] = server.conversations
    kinds = {m["kind"] for m in conv["messages"]}
    assert {"realtimeInput.audio", "realtimeInput.audioStreamEnd"} <= kinds
    assert sum(m.get("audio_bytes", 0) for m in conv["messages"]) == len(speech)
    await ws.close()


async def test_resampled_48k_input(server: EmulatorServer) -> None:
    from emulator import audio

    ws = await open_session(server)
    pcm = audio.resample(encode_text_tones("hello") + SILENCE_1S, 16000, 48000)
    for i in range(0, len(pcm), 3840):  # 40 ms chunks through the streaming resampler
        await ws.send(audio_msg(pcm[i:i + 3840], mime="audio/pcm;rate=48000"))
    frames = await recv_until(ws, "turnComplete")
    assert text_of(frames) == 'You said: "hello"'
    await ws.close()


async def test_manual_activity_with_vad_disabled(server: EmulatorServer) -> None:
    ws = await open_session(server, {"realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}}})
    await ws.send(audio_msg(encode_text_tones("ignored")))  # outside activityStart/End: not a turn
    await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
    await ws.send(audio_msg(encode_text_tones("open the door") + SILENCE_1S))  # silence does not end it
    await ws.send(json.dumps({"realtimeInput": {"activityEnd": {}}}))
    frames = await recv_until(ws, "turnComplete")
    assert text_of(frames) == 'You said: "open the door"'
    await ws.close()


async def test_activity_signals_under_vad(start_server: Any) -> None:
    server = await start_server()
    ws = await open_session(server)
    await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
    assert await closed(ws) == (1008, "Operation is not implemented, or supported, or enabled.")
    server = await start_server(activity_under_vad="ignore")
    ws = await open_session(server)
    await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
    await ws.send(json.dumps({"realtimeInput": {"text": "still fine"}}))
    assert text_of(await recv_until(ws, "turnComplete")) == 'You said: "still fine"'
    await ws.close()


async def test_silence_duration_honoured(server: EmulatorServer) -> None:
    ws = await open_session(server, {"realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": 2000}}})
    await ws.send(audio_msg(encode_text_tones("wait") + SILENCE_1S))  # 1 s of silence < 2 s: no end yet
    await ws.send(audio_msg(encode_text_tones("for me") + SILENCE_1S * 3))
    frames = await recv_until(ws, "turnComplete")
    assert text_of(frames) == 'You said: "wait for me"'
    await ws.close()


async def test_barge_in_interrupts_and_cancels(start_server: Any) -> None:
    server = await start_server(pacing=1.0, audio_chunk_ms=100)
    ws = await open_session(server, {"generationConfig": {"responseModalities": ["AUDIO"]}})
    await ws.send(json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [
        {"text": "Say: " + "this is a long answer that takes several seconds to speak " * 3}]}], "turnComplete": True}}))
    first = await recv_json(ws)
    assert "modelTurn" in first["serverContent"]
    await ws.send(audio_msg(encode_text_tones("stop")))  # user speech: barge-in
    frames = await recv_until(ws, "turnComplete")
    contents = [f["serverContent"] for f in frames if "serverContent" in f]
    assert {"interrupted": True} in contents
    assert not any("generationComplete" in c for c in contents)
    assert contents.index({"interrupted": True}) < len(contents) - 1
    await ws.close()


async def test_interrupt_cancels_pending_tool_call(server: EmulatorServer) -> None:
    ws = await open_session(server, {"tools": [{"functionDeclarations": [{"name": "book_flight"}]}]})
    await ws.send(json.dumps({"clientContent": {"turns": [{"parts": [{"text": "book flight to Rome"}]}],
                                                "turnComplete": True}}))
    call = (await recv_until(ws, "toolCall"))[-1]["toolCall"]["functionCalls"][0]
    await ws.send(json.dumps({"clientContent": {"turns": [{"parts": [{"text": "never mind"}]}], "turnComplete": True}}))
    frames = await recv_until(ws, "toolCallCancellation")
    assert frames[-2] == {"serverContent": {"interrupted": True}}
    assert frames[-1] == {"toolCallCancellation": {"ids": [call["id"]]}}
    frames = await recv_until(ws, "turnComplete")  # the interrupted turn ends
    frames = await recv_until(ws, "turnComplete")  # then the new one is answered
    assert text_of(frames) == 'You said: "never mind"'
    await ws.close()


async def test_non_blocking_scheduling(server: EmulatorServer) -> None:
    decl = {"name": "start_timer", "behavior": "NON_BLOCKING"}
    ws = await open_session(server, {"tools": [{"functionDeclarations": [decl]}], "sessionResumption": {}})
    await ws.send(json.dumps({"clientContent": {"turns": [{"parts": [{"text": "start timer"}]}], "turnComplete": True}}))
    frames = await recv_until(ws, "turnComplete")  # the turn does not wait for the response
    call = next(f["toolCall"]["functionCalls"][0] for f in frames if "toolCall" in f)
    assert {"sessionResumptionUpdate": {"newHandle": "", "resumable": False}} in frames
    assert text_of(frames) == "I started start_timer in the background."
    await recv_until(ws, "sessionResumptionUpdate")
    await ws.send(json.dumps({"toolResponse": {"functionResponses": [
        {"id": call["id"], "name": "start_timer", "response": {"result": "started"}, "scheduling": "WHEN_IDLE"}]}}))
    frames = await recv_until(ws, "turnComplete")
    assert text_of(frames) == 'start_timer returned {"result":"started"}.'
    await recv_until(ws, "sessionResumptionUpdate")
    # SILENT: recorded, no reply; the next turn answers normally
    await ws.send(json.dumps({"clientContent": {"turns": [{"parts": [{"text": "start timer"}]}], "turnComplete": True}}))
    frames = await recv_until(ws, "turnComplete")
    call = next(f["toolCall"]["functionCalls"][0] for f in frames if "toolCall" in f)
    await recv_until(ws, "sessionResumptionUpdate")
    await ws.send(json.dumps({"toolResponse": {"functionResponses": [
        {"id": call["id"], "response": {"result": "x"}, "scheduling": "SILENT"}]}}))
    await ws.send(json.dumps({"realtimeInput": {"text": "what did I just say?"}}))
    frames = await recv_until(ws, "turnComplete")
    assert text_of(frames) == 'You said: "start timer"'
    await ws.close()


async def test_transparent_resumption_index_and_errors(server: EmulatorServer) -> None:
    auth = {"Authorization": "Bearer t"}
    ws = await open_session(server, {"sessionResumption": {"transparent": True}}, flavour="vertex", headers=auth)
    await ws.send(json.dumps({"realtimeInput": {"text": "first"}}))  # index 1
    await ws.send(json.dumps({"realtimeInput": {"text": "second"}}))  # index 2
    updates = []
    while len(updates) < 2:
        frame = await recv_json(ws)
        if "sessionResumptionUpdate" in frame:
            updates.append(frame["sessionResumptionUpdate"])
    assert [u["lastConsumedClientMessageIndex"] for u in updates] == ["1", "2"]
    handle = updates[-1]["newHandle"]
    # resume while the old socket is open -> 1011
    other = await raw_connect(server, "vertex", headers=auth)
    await other.send(json.dumps({"setup": {"model": VERTEX_MODEL, "sessionResumption": {"handle": handle}}}))
    assert await closed(other) == (1011, "The service is currently unavailable.")
    await ws.close()
    await ws.wait_closed()
    # unknown handle -> 1008
    other = await raw_connect(server, "vertex", headers=auth)
    await other.send(json.dumps({"setup": {"model": VERTEX_MODEL, "sessionResumption": {"handle": "nope"}}}))
    assert await closed(other) == (1008, "BidiGenerateContent session not found")
    # the real handle works once the old socket is closed (bounded poll on real state)
    async with asyncio.timeout(5):
        while server.conversations[0]["open"]:
            await asyncio.sleep(0.01)
    ws = await open_session(server, {"sessionResumption": {"handle": handle}}, flavour="vertex", headers=auth)
    await ws.send(json.dumps({"realtimeInput": {"text": "what did I say?"}}))
    assert text_of(await recv_until(ws, "turnComplete")) == 'You said: "second"'
    await ws.close()


async def test_handle_ttl_expiry(start_server: Any) -> None:
    server = await start_server(handle_ttl_gemini_s=0.05)
    ws = await open_session(server, {"sessionResumption": {}})
    await ws.send(json.dumps({"realtimeInput": {"text": "hi"}}))
    handle = (await recv_until(ws, "sessionResumptionUpdate"))[-1]["sessionResumptionUpdate"]["newHandle"]
    await ws.close()
    async with asyncio.timeout(5):
        while server.conversations[0]["open"]:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # let the 50 ms TTL run out (the TTL is the thing under test)
    other = await raw_connect(server)
    await other.send(json.dumps({"setup": {"model": "models/gemini-live-2.5-flash-preview",
                                           "sessionResumption": {"handle": handle}}}))
    assert await closed(other) == (1008, "BidiGenerateContent session not found")


async def test_go_away_ignored_closes_1008(start_server: Any) -> None:
    server = await start_server(connection_lifetime_s=0.6, go_away_lead_s=0.3)
    ws = await open_session(server)
    frame = await recv_json(ws)
    assert frame["goAway"]["timeLeft"].endswith("s")
    await ws.send(json.dumps({"realtimeInput": {"text": "I am still here"}}))
    code, reason = await closed(ws)
    assert code == 1008 and reason.startswith("Connection aborted because the client failed to close the connection")


async def test_video_session_cap_without_compression(start_server: Any) -> None:
    server = await start_server(video_session_cap_s=0.3)
    ws = await open_session(server)
    await ws.send(json.dumps({"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}}))
    assert await closed(ws) == (1011, "Deadline expired before operation could complete.")
    server = await start_server(video_session_cap_s=0.3)
    ws = await open_session(server, {"contextWindowCompression": {"slidingWindow": {}}})
    await ws.send(json.dumps({"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}}))
    await asyncio.sleep(0.5)  # past the cap: with compression the session goes on
    await ws.send(json.dumps({"realtimeInput": {"text": "alive"}}))
    assert text_of(await recv_until(ws, "turnComplete")) == 'You said: "alive"'
    await ws.close()


async def test_context_compression_and_exhaustion(start_server: Any) -> None:
    server = await start_server()
    ws = await open_session(server, {"contextWindowCompression": {"triggerTokens": 40, "slidingWindow": {"targetTokens": 20}}})
    for i in range(6):
        await ws.send(json.dumps({"realtimeInput": {"text": f"message number {i} with some padding text"}}))
        await recv_until(ws, "turnComplete")
    [conv] = server.conversations
    assert conv["history_turns"] <= 4
    await ws.send(json.dumps({"realtimeInput": {"text": "what did I say?"}}))
    assert "message number 5" in text_of(await recv_until(ws, "turnComplete"))
    await ws.close()
    server = await start_server(context_window_tokens=30)
    ws = await open_session(server)
    await ws.send(json.dumps({"realtimeInput": {"text": "a fairly long message that fills the tiny window " * 2}}))
    assert (await closed(ws))[0] == 1007


async def test_rag_memory_across_sessions(server: EmulatorServer) -> None:
    rag = {"retrieval": {"vertex_rag_store": {"rag_resources": [{"rag_corpus": "projects/p/ragCorpora/mem"}],
                                              "store_context": True}}}
    auth = {"Authorization": "Bearer t"}
    ws = await open_session(server, {"tools": [rag]}, flavour="vertex", headers=auth)
    await ws.send(json.dumps({"realtimeInput": {"text": "My dog is named Rex."}}))
    await recv_until(ws, "turnComplete")
    await ws.close()
    ws = await open_session(server, {"tools": [rag]}, flavour="vertex", headers=auth)
    await ws.send(json.dumps({"realtimeInput": {"text": "What is my dog named?"}}))
    assert text_of(await recv_until(ws, "turnComplete")) == 'From memory: "My dog is named Rex."'
    await ws.close()


async def test_context_update_and_system_role(server: EmulatorServer) -> None:
    ws = await open_session(server)
    await ws.send(json.dumps({"contextUpdate": {"systemInstruction": {"parts": [{"text": "Now be terse."}]}}}))
    await ws.send(json.dumps({"realtimeInput": {"text": "what are your instructions?"}}))
    assert text_of(await recv_until(ws, "turnComplete")) == 'Your instructions are: "Now be terse."'
    await ws.send(json.dumps({"clientContent": {"turns": [{"role": "system", "parts": [{"text": "Speak French."}]}],
                                                "turnComplete": False}}))
    await ws.send(json.dumps({"realtimeInput": {"text": "what are your instructions?"}}))
    assert text_of(await recv_until(ws, "turnComplete")) == 'Your instructions are: "Speak French."'
    await ws.close()


@pytest.mark.parametrize("sensitivity, heard", [("START_SENSITIVITY_HIGH", True), ("START_SENSITIVITY_LOW", False)])
async def test_start_sensitivity_honoured(server: EmulatorServer, sensitivity: str, heard: bool) -> None:
    import numpy as np

    quiet = (np.frombuffer(encode_text_tones("quiet please"), dtype="<i2") * 0.04).astype("<i2").tobytes()
    ws = await open_session(server, {"realtimeInputConfig": {"automaticActivityDetection": {
        "startOfSpeechSensitivity": sensitivity}}})
    await ws.send(audio_msg(quiet + SILENCE_1S))
    if not heard:  # the next turn must then be this one (an audio turn would come first, or be interrupted)
        await ws.send(json.dumps({"realtimeInput": {"text": "marker"}}))
    frames = await recv_until(ws, "turnComplete")
    assert text_of(frames) == ('You said: "quiet please"' if heard else 'You said: "marker"')
    await ws.close()


@pytest.mark.parametrize("flavour", ["gemini", "vertex"])
async def test_resume_right_after_the_deadline_close(start_server: Any, flavour: str) -> None:
    server = await start_server(connection_lifetime_s=0.8, go_away_lead_s=0.4)
    auth = {"Authorization": "Bearer t"} if flavour == "vertex" else None
    ws = await open_session(server, {"sessionResumption": {}}, flavour=flavour, headers=auth)
    await ws.send(json.dumps({"realtimeInput": {"text": "remember the number 42"}}))
    handle = (await recv_until(ws, "sessionResumptionUpdate"))[-1]["sessionResumptionUpdate"]["newHandle"]
    assert "goAway" in await recv_json(ws)
    assert await closed(ws) == (1011, "Deadline expired before operation could complete.")
    # reconnect at once, as a gateway does on the close frame: the closing socket no longer counts as open
    ws = await open_session(server, {"sessionResumption": {"handle": handle}}, flavour=flavour, headers=auth)
    await ws.send(json.dumps({"realtimeInput": {"text": "what did I say?"}}))
    assert text_of(await recv_until(ws, "turnComplete")) == 'You said: "remember the number 42"'
    await ws.close()
    [conv] = server.conversations
    assert conv["connections"] == 2 and conv["go_aways"] == 1


async def test_not_resumable_mid_generation(start_server: Any) -> None:
    server = await start_server(pacing=0.5, audio_chunk_ms=100, resumption_update_interval_s=0.1)
    ws = await open_session(server, {"generationConfig": {"responseModalities": ["AUDIO"]}, "sessionResumption": {}})
    await ws.send(json.dumps({"realtimeInput": {"text": "Say: a reply that lasts for a couple of seconds at least"}}))
    frames = await recv_until(ws, "turnComplete")
    updates = [f["sessionResumptionUpdate"] for f in frames if "sessionResumptionUpdate" in f]
    assert updates and all(u == {"newHandle": "", "resumable": False} for u in updates)
    final = (await recv_until(ws, "sessionResumptionUpdate"))[-1]["sessionResumptionUpdate"]
    assert final["resumable"] is True and final["newHandle"]
    await ws.close()


async def test_video_frames_are_seen(server: EmulatorServer) -> None:
    ws = await open_session(server)
    for _ in range(3):
        await ws.send(json.dumps({"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}}))
    await ws.send(json.dumps({"realtimeInput": {"text": "What do you see?"}}))
    frames = await recv_until(ws, "turnComplete")
    assert text_of(frames) == "I have seen 3 video frames; the last one is image/jpeg, 6 bytes."
    details = {d["modality"]: d["tokenCount"] for d in frames[-1]["usageMetadata"]["promptTokensDetails"]}
    assert details["VIDEO"] == 3 * 258
    await ws.close()
