"""``livegate chat``: talk to a running gateway from a terminal.

Text turns from ``--message`` or stdin; ``--audio-in file.wav`` streams the file as 16 kHz PCM in real time
(20 ms frames, server VAD ends the turn, then ``audio_stream_end``); ``--audio-out out.wav`` saves the
24 kHz reply. Transcriptions and tool calls are shown; tool calls are answered with ``{"result": "ok"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import wave
from typing import Any

import numpy as np

from livegate.client import Client, LiveSession

FRAME_MS = 20


def load_pcm16k(path: str) -> bytes:
    with wave.open(path, "rb") as wf:
        rate, channels, width = wf.getframerate(), wf.getnchannels(), wf.getsampwidth()
        raw = wf.readframes(wf.getnframes())
    if width != 2:
        raise SystemExit(f"{path}: need 16-bit PCM, got {8 * width}-bit")
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    if rate != 16000:
        n = int(len(samples) * 16000 / rate)
        samples = np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)), samples)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


async def _print_turn(session: LiveSession, pcm_out: bytearray) -> None:
    while True:
        async for m in session.receive():
            sc = m.server_content
            if m.text:
                print(m.text, end="", flush=True)
            if m.data:
                pcm_out += m.data
            if sc and sc.input_transcription and sc.input_transcription.text:
                print(f"\n  [you said] {sc.input_transcription.text}", flush=True)
            if sc and sc.output_transcription and sc.output_transcription.text:
                print(f"\n  [model said] {sc.output_transcription.text}", end="", flush=True)
            if m.tool_call:
                for fc in m.tool_call.function_calls:
                    print(f"\n  [tool call] {fc.name}({fc.args or {}})", flush=True)
                await session.send_tool_response(function_responses=[
                    {"id": fc.id, "name": fc.name, "response": {"result": "ok"}} for fc in m.tool_call.function_calls])
            if sc and sc.interrupted:
                print("\n  [interrupted]", flush=True)
        print()
        return


async def chat(args: argparse.Namespace, stop: asyncio.Event) -> int:
    config: dict[str, Any] = {"response_modalities": ["AUDIO" if args.audio or args.audio_out else "TEXT"]}
    if args.voice:
        config["speech_config"] = args.voice
    if config["response_modalities"] == ["AUDIO"]:
        config["output_audio_transcription"] = {}
    if args.audio_in:
        config["input_audio_transcription"] = {}
    pcm_out = bytearray()
    async with Client(args.target) as client, client.aio.live.connect(model=args.model, config=config) as session:
        print(f"session {session.session_id} on {args.target} ({args.model})", file=sys.stderr)
        if args.audio_in:
            pcm = load_pcm16k(args.audio_in)
            frame = 16000 * 2 * FRAME_MS // 1000
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for i in range(0, len(pcm), frame):
                await session.send_realtime_input(audio={"data": pcm[i:i + frame], "mime_type": "audio/pcm;rate=16000"})
                await asyncio.sleep(max(0.0, t0 + (i // frame + 1) * FRAME_MS / 1000 - loop.time()))
            silence = b"\x00" * frame  # trailing silence lets server VAD close the turn
            for _ in range(50):
                await session.send_realtime_input(audio={"data": silence, "mime_type": "audio/pcm;rate=16000"})
            await session.send_realtime_input(audio_stream_end=True)
            await _print_turn(session, pcm_out)
        messages = args.message
        if messages is None and not args.audio_in:
            messages = _stdin_lines()
        for text in messages or []:
            if stop.is_set():
                break
            print(f"> {text}")
            await session.send_client_content(turns={"role": "user", "parts": [{"text": text}]})
            await _print_turn(session, pcm_out)
    if args.audio_out:
        with wave.open(args.audio_out, "wb") as wf:
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(24000)
            wf.writeframes(bytes(pcm_out))
        print(f"saved {len(pcm_out) / 48000:.2f} s of audio to {args.audio_out}", file=sys.stderr)
    return 0


def _stdin_lines() -> list[str]:
    if sys.stdin.isatty():
        print("type a message and press Enter; Ctrl-D to end", file=sys.stderr)
    return [line.strip() for line in sys.stdin if line.strip()]
