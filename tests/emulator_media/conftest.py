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


def _trim(pcm: bytes, floor_dbfs: float = -60.0) -> bytes:
    """Cut leading/trailing quiet (espeak-ng ends with ~0.3 s of it) so pauses are exact."""
    x = audio.samples(pcm).astype(np.float64)
    hop = audio.IN_RATE // 100
    n = x.size // hop
    level = 20 * np.log10(np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)) / 32768 + 1e-12)
    loud = np.flatnonzero(level > floor_dbfs)
    first, last = max(0, loud[0] - 2) * hop, min(n, loud[-1] + 3) * hop
    return x[first:last].astype("<i2").tobytes()


@pytest.fixture(scope="session")
def speech16k() -> dict[str, bytes]:
    """Each phrase of PHRASES spoken by Puck, resampled to 16 kHz, trimmed to the sound (+-20 ms)."""

    async def make() -> dict[str, bytes]:
        synth = Synthesizer("auto")
        out = {}
        for key, text in PHRASES.items():
            pcm = await synth.synthesize(text, voice="Puck", language_code="en-US")
            out[key] = _trim(audio.resample(pcm, audio.OUT_RATE, audio.IN_RATE))
        return out

    return asyncio.run(make())
