"""Shared clips for the emulator media tests: real synthesised speech, made once per session."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from emulator import audio
from emulator.speech import Synthesizer

ESPEAK = shutil.which("espeak-ng") is not None
requires_espeak = pytest.mark.skipif(
    not ESPEAK, reason="espeak-ng is not on PATH (Debian: apt-get install -y espeak-ng)"
)

# The phrases the VAD tests speak, 16 kHz, by whatever engine "auto" picks.
PHRASES = {
    "lights": "Turn on the lights in the kitchen please",
    "hello": "Hello world",
    "weather": "What is the weather like today",
}


def speech_extent_s(pcm: bytes, rate: int = audio.IN_RATE, floor_dbfs: float = -50.0) -> tuple[float, float]:
    """(first, last) second of 10 ms frames louder than ``floor_dbfs``."""
    x = audio.samples(pcm).astype(np.float64)
    hop = rate // 100
    n = x.size // hop
    level = 20 * np.log10(np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)) / 32768 + 1e-12)
    loud = np.flatnonzero(level > floor_dbfs)
    return loud[0] * hop / rate, (loud[-1] + 1) * hop / rate


@pytest.fixture(scope="session")
def speech16k() -> dict[str, bytes]:
    """Each phrase of PHRASES spoken by Puck, resampled to 16 kHz."""

    async def make() -> dict[str, bytes]:
        synth = Synthesizer("auto")
        out = {}
        for key, text in PHRASES.items():
            pcm = await synth.synthesize(text, voice="Puck", language_code="en-US")
            out[key] = audio.resample(pcm, audio.OUT_RATE, audio.IN_RATE)
        return out

    return asyncio.run(make())
