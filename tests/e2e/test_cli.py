"""The CLI as a person uses it: the README's main job (`livegate dev --demo`) and `livegate chat`."""

from __future__ import annotations

import asyncio
import os
import sys
import wave
from pathlib import Path
from typing import Any

from emulator.audio import write_wav
from emulator.transcribe import encode_text_tones


async def run(*args: str, timeout_s: float = 120.0, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "livegate.cli", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                env={**os.environ, **(env or {})})
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    return int(proc.returncode or 0), out.decode()


def wav_info(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as wf:
        return wf.getnchannels(), wf.getsampwidth(), wf.getframerate(), wf.getnframes() / wf.getframerate()


async def test_dev_demo_runs_the_whole_stack(tmp_path: Path, redis_url: str) -> None:
    out_wav = tmp_path / "reply.wav"
    code, out = await run("dev", "--demo", "--pacing", "0", "--listen", "127.0.0.1:0", "--audio-out", str(out_wav),
                          env={"REDIS_URL": ""})
    assert code == 0, out
    assert '[text]   < You said: "Hello? Gemini, are you there?"' in out
    assert "[tools]  < call turn_on_the_lights" in out and 'turn_on_the_lights returned {"result":"ok"}' in out.replace("\n[tools]  < ", "")
    assert "demo complete" in out
    channels, width, rate, seconds = wav_info(out_wav)
    assert (channels, width, rate) == (1, 2, 24000) and seconds > 1.0


async def test_chat_text_turns(stack: dict[str, Any]) -> None:
    code, out = await run("chat", "--target", stack["front"].address, "--message", "Hello there",
                          "--message", "What did I just say?")
    assert code == 0, out
    assert 'You said: "Hello there"' in out and 'You said: "Hello there"' in out.split("What did I just say?")[1]


async def test_chat_audio_in_and_out(stack: dict[str, Any], tmp_path: Path) -> None:
    question = tmp_path / "question.wav"
    write_wav(question, b"\x00\x00" * 3200 + encode_text_tones("what is two plus two"), 16000)
    reply = tmp_path / "reply.wav"
    code, out = await run("chat", "--target", stack["front"].address, "--audio-in", str(question),
                          "--audio-out", str(reply))
    assert code == 0, out
    assert "[you said] what is two plus two" in out
    assert "[model said]" in out
    channels, width, rate, seconds = wav_info(reply)
    assert (channels, width, rate) == (1, 2, 24000) and seconds > 0.5
