"""Every feature of the seed documents, end to end: gRPC caller -> front -> Redis -> worker -> emulator (TLS)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from google.genai import types

from emulator.transcribe import encode_text_tones
from tests.e2e.helpers import audio_of, collect_turn, send_audio, text_of, transcript

MODEL = "gemini-live-2.5-flash"
NATIVE = "gemini-live-2.5-flash-native-audio"
VOICES = ["Aoede", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Zephyr"]
SILENCE_1S = b"\x00\x00" * 16000


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


@pytest.mark.parametrize("flavour", ["gemini", "vertex"])
async def test_text_to_text_with_usage(client: Any, flavour: str) -> None:
    async with client.aio.live.connect(model=MODEL, config=types.LiveConnectConfig(
            response_modalities=[types.Modality.TEXT])) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="Hello? Gemini, are you there?")]))
        msgs = await collect_turn(session)
    assert text_of(msgs) == 'You said: "Hello? Gemini, are you there?"'
    usage = [m.usage_metadata for m in msgs if m.usage_metadata]
    assert usage and usage[-1].total_token_count > 0
    # Vertex reports candidatesTokenCount; the gateway maps it onto response_token_count for every caller
    assert usage[-1].response_token_count and usage[-1].response_token_count > 0
    assert msgs[-1].server_content.turn_complete


@pytest.mark.parametrize("voice", VOICES)
async def test_text_to_audio_each_voice(client: Any, voice: str) -> None:
    config = types.LiveConnectConfig(response_modalities=["AUDIO"], speech_config=types.SpeechConfig(
        voice_config=types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=voice)),
        language_code="en-US"))
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=user("Hello? Gemini are you there?"))
        msgs = await collect_turn(session)
    pcm = audio_of(msgs)
    mimes = {p.inline_data.mime_type for m in msgs if m.server_content and m.server_content.model_turn
             for p in m.server_content.model_turn.parts if p.inline_data}
    assert mimes == {"audio/pcm;rate=24000"}
    assert len(pcm) % 2 == 0 and len(pcm) > 24000  # > 0.5 s of 24 kHz s16le
    samples = np.frombuffer(pcm, dtype="<i2")
    assert np.abs(samples).max() > 1000  # not silence


async def test_voices_sound_different(client: Any) -> None:
    out = {}
    for voice in ("Kore", "Charon"):
        async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["AUDIO"], "speech_config": voice}) as s:
            await s.send_client_content(turns=user("same words"))
            out[voice] = audio_of(await collect_turn(s))
    assert out["Kore"] != out["Charon"]


async def test_audio_in_with_server_vad_and_transcriptions(client: Any) -> None:
    config = {"response_modalities": ["AUDIO"], "input_audio_transcription": {}, "output_audio_transcription": {}}
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await send_audio(session, SILENCE_1S[:6400] + encode_text_tones("what is two plus two") + SILENCE_1S)
        msgs = await collect_turn(session)
    assert transcript(msgs, "input_transcription").strip().lower() == "what is two plus two"
    said = transcript(msgs, "output_transcription")
    assert said and "what is two plus two" in said.lower()
    assert len(audio_of(msgs)) > 0


async def test_manual_activity_with_vad_disabled(client: Any) -> None:
    config = {"response_modalities": ["TEXT"], "input_audio_transcription": {},
              "realtime_input_config": {"automatic_activity_detection": {"disabled": True}}}
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await send_audio(session, encode_text_tones("repeat after me: manual turn"))
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        msgs = await collect_turn(session)
    assert text_of(msgs) == "manual turn"


async def test_audio_stream_end_flushes_the_turn(client: Any) -> None:
    config = {"response_modalities": ["TEXT"], "input_audio_transcription": {}}
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        # no trailing silence: only audio_stream_end can close this turn
        await send_audio(session, encode_text_tones("say: flushed"))
        await session.send_realtime_input(audio_stream_end=True)
        msgs = await collect_turn(session)
    assert text_of(msgs) == "flushed"


async def test_video_frames(client: Any) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as session:
        for _ in range(3):
            await session.send_realtime_input(video=types.Blob(data=jpeg, mime_type="image/jpeg"))
        await session.send_client_content(turns=user("What do you see?"))
        msgs = await collect_turn(session)
    usage = [m.usage_metadata for m in msgs if m.usage_metadata][-1]
    # 3 video frames at 258 tokens/s (1 fps) are in the context the prompt is counted over
    assert usage.prompt_token_count >= 3 * 258
    assert text_of(msgs)


async def test_system_instruction_and_update_mid_session(client: Any) -> None:
    config = {"response_modalities": ["TEXT"], "system_instruction": "Answer like a pirate."}
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=user("What are your instructions?"))
        assert text_of(await collect_turn(session)) == 'Your instructions are: "Answer like a pirate."'
        # Vertex-documented update: a system turn with turn_complete false, in effect for the rest of the session
        await session.send_client_content(turns={"role": "system", "parts": [{"text": "Answer in German."}]},
                                          turn_complete=False)
        await session.send_client_content(turns=user("What are your instructions?"))
        assert "Answer in German." in text_of(await collect_turn(session))


async def test_function_call_round_trip(client: Any) -> None:
    tools = [{"function_declarations": [
        {"name": "get_current_weather", "description": "Get the current weather in the given location",
         "parameters": {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}}}]}]
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"], "tools": tools}) as session:
        await session.send_client_content(turns=user("Get the current weather in Santa Clara"))
        calls = []
        texts = []
        async for m in session.receive():
            if m.tool_call:
                calls.extend(m.tool_call.function_calls)
                await session.send_tool_response(function_responses=[types.FunctionResponse(
                    id=fc.id, name=fc.name, response={"result": {"weather": "sunny", "unit": "C"}})
                    for fc in m.tool_call.function_calls])
            if m.text:
                texts.append(m.text)
    assert [c.name for c in calls] == ["get_current_weather"]
    assert calls[0].id.startswith("function-call-")
    assert "santa clara" in str(calls[0].args).lower()
    assert "sunny" in "".join(texts)


async def test_code_execution_parts(client: Any) -> None:
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"], "tools": [{"code_execution": {}}]}) as session:
        await session.send_client_content(turns=user("Compute the largest prime palindrome under 100000."))
        msgs = await collect_turn(session)
    parts = [p for m in msgs if m.server_content and m.server_content.model_turn for p in m.server_content.model_turn.parts]
    code = [p.executable_code for p in parts if p.executable_code]
    results = [p.code_execution_result for p in parts if p.code_execution_result]
    assert code and code[0].language == "PYTHON" and code[0].code
    assert results and results[0].outcome == "OUTCOME_OK" and results[0].output


async def test_search_grounding_metadata(client: Any) -> None:
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"], "tools": [{"google_search": {}}]}) as session:
        await session.send_client_content(turns=user("When did the last Brazil vs. Argentina soccer match happen?"))
        msgs = await collect_turn(session)
    grounding = [m.server_content.grounding_metadata for m in msgs if m.server_content and m.server_content.grounding_metadata]
    assert grounding
    assert grounding[0].web_search_queries


@pytest.mark.parametrize("flavour", ["vertex"])
async def test_vertex_rag_store_context(client: Any, flavour: str) -> None:
    corpus = "projects/test-project/locations/us-central1/ragCorpora/memory"
    rag = types.VertexRagStore(rag_resources=[types.VertexRagStoreRagResource(rag_corpus=corpus)], store_context=True)
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT],
                                     tools=[types.Tool(retrieval=types.Retrieval(vertex_rag_store=rag))])
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=user("My favourite colour is ultramarine."))
        await collect_turn(session)
    # a new session remembers it from the corpus that store_context filled
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=user("What is my favourite colour?"))
        assert "ultramarine" in text_of(await collect_turn(session)).lower()


async def test_proactive_audio_answers_only_when_addressed(client: Any) -> None:
    config = types.LiveConnectConfig(response_modalities=["AUDIO"], proactivity=types.ProactivityConfig(proactive_audio=True),
                                     output_audio_transcription=types.AudioTranscriptionConfig())
    async with client.aio.live.connect(model=NATIVE, config=config) as session:
        await session.send_client_content(turns=user("I was talking to my friend about lunch."))
        ignored = await collect_turn(session)
        await session.send_client_content(turns=user("Gemini, what time is it?"))
        answered = await collect_turn(session)
    assert audio_of(ignored) == b""
    assert len(audio_of(answered)) > 0


async def test_affective_dialog(client: Any) -> None:
    config = types.LiveConnectConfig(response_modalities=["AUDIO"], enable_affective_dialog=True,
                                     output_audio_transcription=types.AudioTranscriptionConfig())
    async with client.aio.live.connect(model=NATIVE, config=config) as session:
        await session.send_client_content(turns=user("I am so sad today."))
        msgs = await collect_turn(session)
    assert transcript(msgs, "output_transcription").startswith("I'm sorry to hear that.")


async def test_resumption_handle_continues_the_conversation(client: Any) -> None:
    config = {"response_modalities": ["TEXT"], "session_resumption": {}, "context_window_compression": {
        "trigger_tokens": 25600, "sliding_window": {"target_tokens": 12800}}}
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=user("Hello? Gemini are you there?"))
        await collect_turn(session)
        handle = None
        async for m in session.receive_raw():
            if m.HasField("session_resumption_update") and m.session_resumption_update.resumable:
                handle = m.session_resumption_update.new_handle
                break
    assert handle and handle.startswith("lgh_")  # a gateway handle: the upstream's never leaves livegate
    async with client.aio.live.connect(model=MODEL, config={**config, "session_resumption": {"handle": handle}}) as session:
        await session.send_client_content(turns=user("What was the last question I asked?"))
        assert text_of(await collect_turn(session)) == 'You asked: "Hello? Gemini are you there?"'


async def test_no_resumption_updates_unless_asked(client: Any) -> None:
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as session:
        await session.send_client_content(turns=user("Hello"))
        await collect_turn(session)
        await session.send_client_content(turns=user("Hello again"))
        raw = []
        async for m in session.receive_raw():
            raw.append(m)
            if m.server_content.turn_complete:
                break
    assert not any(m.HasField("session_resumption_update") for m in raw)

