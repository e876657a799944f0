"""The demo conversation ``livegate dev --demo`` runs: text -> text, text -> audio saved to a WAV file,
and one function call answered by the caller."""

from __future__ import annotations

import wave
from pathlib import Path

from livegate.client import Client

MODEL = "gemini-live-2.5-flash"


async def run_demo(target: str, audio_path: Path) -> None:
    async with Client(target) as client:
        # 1. text in, text out
        async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as session:
            prompt = "Hello? Gemini, are you there?"
            await session.send_client_content(turns={"role": "user", "parts": [{"text": prompt}]})
            reply = "".join([m.text async for m in session.receive() if m.text])
            print(f"[text]   > {prompt}\n[text]   < {reply}")
            print(f"[text]   session {session.session_id}")

        # 2. text in, 24 kHz audio out, saved to a file
        config = {"response_modalities": ["AUDIO"], "output_audio_transcription": {},
                  "speech_config": {"voice_config": {"prebuilt_voice_config": {"voice_name": "Aoede"}}}}
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            prompt = "Tell me something nice."
            await session.send_client_content(turns={"role": "user", "parts": [{"text": prompt}]})
            pcm = bytearray()
            said = []
            async for m in session.receive():
                if m.data:
                    pcm += m.data
                if m.server_content and m.server_content.output_transcription and m.server_content.output_transcription.text:
                    said.append(m.server_content.output_transcription.text)
        audio_path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(audio_path), "wb") as wf:
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(24000)
            wf.writeframes(bytes(pcm))
        print(f"[audio]  > {prompt}\n[audio]  < {len(pcm)} bytes = {len(pcm) / 48000:.2f} s of 24 kHz PCM -> {audio_path}")
        print(f"[audio]  transcript: {''.join(said)}")

        # 3. a function call, answered by us
        tools = [{"function_declarations": [{"name": "turn_on_the_lights"}, {"name": "turn_off_the_lights"}]}]
        async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"], "tools": tools}) as session:
            prompt = "Turn on the lights please"
            await session.send_client_content(turns={"role": "user", "parts": [{"text": prompt}]})
            print(f"[tools]  > {prompt}")
            done = False
            while not done:
                async for m in session.receive():
                    if m.tool_call:
                        for fc in m.tool_call.function_calls:
                            print(f"[tools]  < call {fc.name}({fc.args or {}}) id={fc.id}")
                        await session.send_tool_response(function_responses=[
                            {"id": fc.id, "name": fc.name, "response": {"result": "ok"}} for fc in m.tool_call.function_calls])
                    if m.text:
                        print(f"[tools]  < {m.text}")
                    if m.server_content and m.server_content.turn_complete:
                        done = True
        print("demo complete")
