"""``livegate chat``: talk to a running gateway from a terminal.

Text turns from ``--message`` or stdin, one per line: each line is sent as it is typed and its reply streams
back before the next is read. ``--audio-in file.wav`` (16-bit mono PCM, any rate) streams the file as 16 kHz
PCM in real time (20 ms frames, server VAD ends the turn, then ``audio_stream_end``); ``--audio-out out.wav``
saves the 24 kHz reply. A reply is printed as it comes: one prefix per turn (``[model]`` for text,
``[model said]`` for the transcription of audio), then its chunks, and a newline at the turn's end.
Transcriptions and tool calls are shown; tool calls are answered with ``{"result": "ok"}``. The first Ctrl-C
ends the session at once, even mid-reply (``CloseSession``), and the command with status 0; Ctrl-D at the
prompt ends it after the last reply.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
import wave
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from livegate.client import Client, LiveSession
from livegate.client.server_messages import is_turn_end
from livegate.v1 import gateway_pb2 as gw

FRAME_MS = 20


def load_pcm16k(path: str) -> bytes:
    """A 16-bit mono WAV file as 16 kHz PCM. A file that is not one raises ValueError naming the file and what
    is wrong (reported before any session is created)."""
    try:
        with wave.open(path, "rb") as wf:
            rate, channels, width = wf.getframerate(), wf.getnchannels(), wf.getsampwidth()
            raw = wf.readframes(wf.getnframes())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a WAV file") from None
    except (wave.Error, EOFError) as exc:
        why = str(exc) or "too short to be one"
        raise ValueError(f"{path}: not a WAV file ({why}); --audio-in takes a 16-bit mono PCM WAV file") from None
    if width != 2 or channels != 1:
        raise ValueError(f"{path}: {8 * width}-bit {channels}-channel audio; --audio-in takes 16-bit mono PCM "
                         "(e.g. ffmpeg -i in.wav -ac 1 -sample_fmt s16 out.wav)")
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32)
    if rate != 16000:
        n = int(len(samples) * 16000 / rate)
        samples = np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)), samples)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


class TurnPrinter:
    """A turn's output as it streams: each stream (model text, transcriptions) gets one prefix where it starts,
    then its chunks on the same line."""

    def __init__(self) -> None:
        self.stream = ""

    def chunk(self, stream: str, text: str) -> None:
        if stream != self.stream:
            self.end()
            print(f"{stream} ", end="")
            self.stream = stream
            text = text.lstrip()
        print(text, end="", flush=True)

    def line(self, text: str) -> None:
        self.end()
        print(text, flush=True)

    def end(self) -> None:
        if self.stream:
            print(flush=True)
            self.stream = ""


async def _print_turn(session: LiveSession, pcm_out: bytearray) -> None:
    out = TurnPrinter()
    async for m in session.receive_raw():
        sc = m.server_content
        for part in sc.model_turn.parts:
            if part.text and not part.thought:
                out.chunk("[model]", part.text)
            if part.inline_data.data:
                pcm_out += part.inline_data.data
        if sc.input_transcription.text:
            out.chunk("  [you said]", sc.input_transcription.text)
        if sc.output_transcription.text:
            out.chunk("[model said]", sc.output_transcription.text)
        if m.tool_call.function_calls:
            for fc in m.tool_call.function_calls:
                out.line(f"  [tool call] {fc.name}({json_format.MessageToDict(fc.args)})")
            await session.send_tool_response(function_responses=[
                {"id": fc.id, "name": fc.name, "response": {"result": "ok"}} for fc in m.tool_call.function_calls])
        if sc.interrupted:
            out.line("  [interrupted]")
        if is_turn_end(m):
            break
    out.end()


async def _typed_lines() -> AsyncIterator[str]:
    """stdin's lines as they are typed (or piped). A daemon thread reads them: a read blocked on a terminal
    never holds up the event loop, nor the process's exit."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed first
                loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="chat-stdin", daemon=True).start()
    while (line := await lines.get()) is not None:
        yield line


async def _converse(session: LiveSession, args: argparse.Namespace, pcm: bytes | None, pcm_out: bytearray) -> None:
    if pcm is not None:
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
        if args.message is None:
            return
    tty = args.message is None and sys.stdin.isatty()
    if tty:
        print("type a message and press Enter; Ctrl-D or Ctrl-C to end", file=sys.stderr)
    async for line in _messages(args.message):
        text = line.strip()
        if not text:
            continue
        if not tty:  # a terminal already shows what was typed
            print(f"> {text}", flush=True)
        await session.send_client_content(turns={"role": "user", "parts": [{"text": text}]})
        await _print_turn(session, pcm_out)


async def _messages(given: list[str] | None) -> AsyncIterator[str]:
    if given is not None:
        for text in given:
            yield text
        return
    async for line in _typed_lines():
        yield line


async def _close_now(client: Client, session_id: str) -> None:
    """A Ctrl-C ends the session at once, even mid-reply (leaving the session's block half-closes it, and the
    gateway then lets the turn in flight complete first); bounded, and a refusal leaves that to the half-close."""
    with contextlib.suppress(grpc.aio.AioRpcError, TimeoutError):
        async with asyncio.timeout(2.0):
            await client.stub().CloseSession(gw.CloseSessionRequest(session_id=session_id), metadata=client.metadata)


async def chat(args: argparse.Namespace, stop: asyncio.Event) -> int:
    pcm = load_pcm16k(args.audio_in) if args.audio_in else None  # a bad file is reported before any session
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
        talk = asyncio.create_task(_converse(session, args, pcm, pcm_out), name="chat")
        stopped = asyncio.create_task(stop.wait(), name="chat-stop")
        try:
            await asyncio.wait({talk, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (talk, stopped):
                task.cancel()
            await asyncio.gather(stopped, return_exceptions=True)
            with contextlib.suppress(asyncio.CancelledError):
                await talk  # raises what the conversation raised; a Ctrl-C's cancellation ends it quietly
        if stop.is_set():
            print(file=sys.stderr)  # after the terminal's ^C
            await _close_now(client, session.session_id)
    # leaving the block closed the session
    if args.audio_out:
        with wave.open(args.audio_out, "wb") as wf:
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(24000)
            wf.writeframes(bytes(pcm_out))
        print(f"saved {len(pcm_out) / 48000:.2f} s of audio to {args.audio_out}", file=sys.stderr)
    return 0
