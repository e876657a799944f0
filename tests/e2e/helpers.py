"""Small helpers for end-to-end tests through the gateway."""

from __future__ import annotations

import asyncio
from typing import Any

FRAME_BYTES_16K = 640  # 20 ms of 16 kHz s16le


async def collect_turn(session: Any, timeout_s: float = 20.0) -> list[Any]:
    """Every message of one turn (google-genai LiveServerMessage objects), ending at turn_complete."""
    async with asyncio.timeout(timeout_s):
        return [m async for m in session.receive()]


def text_of(messages: list[Any]) -> str:
    return "".join(m.text for m in messages if m.text)


def audio_of(messages: list[Any]) -> bytes:
    return b"".join(m.data for m in messages if m.data)


def transcript(messages: list[Any], which: str) -> str:
    out = []
    for m in messages:
        sc = m.server_content
        t = getattr(sc, which, None) if sc else None
        if t is not None and t.text:
            out.append(t.text)
    return "".join(out)


def frames(pcm: bytes, size: int = FRAME_BYTES_16K) -> list[bytes]:
    return [pcm[i:i + size] for i in range(0, len(pcm), size)]


async def send_audio(session: Any, pcm: bytes, mime: str = "audio/pcm;rate=16000") -> None:
    for chunk in frames(pcm):
        await session.send_realtime_input(audio={"data": chunk, "mime_type": mime})


async def redis_keys(redis: Any) -> list[str]:
    return sorted(k.decode() for k in await redis.keys("*"))
