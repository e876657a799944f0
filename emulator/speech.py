"""Speech synthesis for the emulator's AUDIO responses: 24 kHz s16le mono PCM.

Two engines:

* ``espeak``: espeak-ng run as an async subprocess (``--stdout`` WAV at 22050 Hz,
  resampled to 24 kHz).  Each Live voice maps to an espeak-ng variant and pitch
  (:func:`emulator.voices.voice_profile`), each language code to an espeak-ng voice
  (:func:`emulator.voices.espeak_language`, falling back to English).
* ``synthetic``: pure numpy, speech-like but not speech: a voiced source at the
  voice's pitch, harmonics shaped by formant-ish resonances that move per character,
  amplitude-modulated at a syllable rate.  About 60 ms per character, never silent.
  Rendered word by word (a word with its trailing space), each word cached per voice: a
  conversation repeats its words, so after warm-up an answer costs a few copies, not a
  numpy synthesis (which took ~15 ms of CPU per second of audio and dominated the
  emulator under load).

``"auto"`` picks espeak when ``espeak-ng`` is on PATH, else synthetic.  Results are
deterministic for the same arguments and cached per instance (LRU, bounded by entries
and bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import zlib
from collections import OrderedDict

import numpy as np

from emulator import audio
from emulator.voices import VoiceProfile, espeak_language, voice_profile

logger = logging.getLogger(__name__)

ENGINES = ("auto", "espeak", "synthetic")
ESPEAK_BINARY = "espeak-ng"
SYNTH_CHAR_S = 0.060  # synthetic engine: seconds of audio per character
_CACHE_ENTRIES = 256
_CACHE_BYTES = 64 * 1024 * 1024
_ESPEAK_TIMEOUT_S = 30.0
_MAX_TEXT_CHARS = 5000  # longer texts are cut (about 5 minutes of speech)
_MAX_ESPEAK_PROCS = max(2, os.cpu_count() or 2)  # concurrent espeak-ng processes per Synthesizer
_WORD_CACHE_ENTRIES = 4096  # synthetic engine: rendered words kept per Synthesizer (~3 KB per character)
_WORDS = re.compile(r"\S+\s*|\s+")


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed."""


class Synthesizer:
    """Text -> 24 kHz s16le mono PCM, by espeak-ng or a numpy waveform."""

    def __init__(self, engine: str = "auto", *, max_processes: int = _MAX_ESPEAK_PROCS) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown speech engine {engine!r}; expected one of {ENGINES}")
        espeak_path = shutil.which(ESPEAK_BINARY)
        if engine == "espeak" and espeak_path is None:
            raise SynthesisError(
                f"speech engine 'espeak' requested but {ESPEAK_BINARY!r} is not on PATH "
                "(install it: apt-get install -y espeak-ng), or use engine='synthetic'"
            )
        if engine == "auto":
            engine = "espeak" if espeak_path else "synthetic"
        self._engine = engine
        self._espeak_path = espeak_path
        self._cache: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._cache_bytes = 0
        self._words: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._rendering: dict[tuple[str, str], asyncio.Future[bytes]] = {}
        self._max_processes = max(1, max_processes)
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    @property
    def engine_name(self) -> str:
        """``"espeak"`` or ``"synthetic"`` (never ``"auto"``)."""
        return self._engine

    def __repr__(self) -> str:
        return f"Synthesizer(engine={self._engine!r}, cached={len(self._cache)}, cached_bytes={self._cache_bytes})"

    async def synthesize(self, text: str, *, voice: str, language_code: str | None = None) -> bytes:
        """Speak ``text`` in ``voice``; 24 kHz s16le mono.  Empty/blank text gives ``b""``."""
        text = " ".join(text.split())[:_MAX_TEXT_CHARS]
        if not text:
            return b""
        profile = voice_profile(voice)
        lang = espeak_language(language_code)
        key = (text, profile.name, lang)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        if self._engine == "espeak":
            pcm = await self._espeak(text, profile, lang)
        else:
            pcm = await self._synthetic(text, profile)
        self._remember(key, pcm)
        return pcm

    async def _synthetic(self, text: str, profile: VoiceProfile) -> bytes:
        """``synthetic_speech`` word by word, each word cached: same duration per character, same voice."""
        parts = []
        for word in _WORDS.findall(text):
            key = (word, profile.name)
            pcm = self._words.get(key)
            if pcm is not None:
                self._words.move_to_end(key)
            else:
                # sessions speaking at once share one rendering of a new word
                pending = self._rendering.get(key)
                if pending is None:
                    pending = self._rendering[key] = asyncio.ensure_future(
                        asyncio.to_thread(synthetic_speech, word, profile))
                    pending.add_done_callback(lambda f, key=key: self._rendered(key, f))
                pcm = await asyncio.shield(pending)
            parts.append(pcm)
        return b"".join(parts)

    def _rendered(self, key: tuple[str, str], fut: asyncio.Future[bytes]) -> None:
        self._rendering.pop(key, None)
        if fut.cancelled() or fut.exception() is not None:
            return
        self._words[key] = fut.result()
        if len(self._words) > _WORD_CACHE_ENTRIES:
            self._words.popitem(last=False)

    def _remember(self, key: tuple[str, str, str], pcm: bytes) -> None:
        if len(pcm) > _CACHE_BYTES // 4:
            return
        self._cache[key] = pcm
        self._cache_bytes += len(pcm)
        while len(self._cache) > _CACHE_ENTRIES or self._cache_bytes > _CACHE_BYTES:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= len(old)

    def _process_slots(self) -> asyncio.Semaphore:
        """The semaphore bounding espeak-ng processes, made for the running loop."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self._max_processes))
        return self._slots[1]

    async def _espeak(self, text: str, profile: VoiceProfile, lang: str) -> bytes:
        async with self._process_slots():
            return await self._run_espeak(text, profile, lang)

    async def _run_espeak(self, text: str, profile: VoiceProfile, lang: str) -> bytes:
        assert self._espeak_path is not None
        args = [
            self._espeak_path, "--stdout", "-b", "1",
            "-v", f"{lang}+{profile.espeak_variant}",
            "-p", str(profile.espeak_pitch), "-s", str(profile.espeak_speed_wpm),
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(text.encode("utf-8")), _ESPEAK_TIMEOUT_S)
        except BaseException:  # cancelled (barge-in) or timed out: do not leave espeak-ng running
            await _kill(proc)
            raise
        if proc.returncode != 0:
            raise SynthesisError(f"espeak-ng exited {proc.returncode}: {err.decode(errors='replace').strip()}")
        # decoding is numpy work proportional to the audio (~1 s of CPU for a 15-minute answer): off the event
        # loop, which the emulator shares with a whole gateway in `livegate dev`
        return await asyncio.to_thread(_decode_espeak, out, text)


def _decode_espeak(out: bytes, text: str) -> bytes:
    """espeak-ng's WAV as 24 kHz s16le mono PCM (run in a thread)."""
    try:
        pcm, rate = audio.parse_wav(out)
    except ValueError as e:
        raise SynthesisError(f"espeak-ng produced no usable WAV: {e}") from e
    if not pcm:
        raise SynthesisError(f"espeak-ng produced no audio for {text[:40]!r}")
    return audio.resample(pcm, rate, audio.OUT_RATE)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill and reap ``proc``.  A ``communicate()`` cancelled midway leaves stdin open and stdout
    paused, and ``wait()`` only returns once every pipe is closed: so close stdin and drain the
    output to EOF (``communicate()`` again) rather than just ``wait()``."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    if proc.stdin is not None:
        proc.stdin.close()
    with contextlib.suppress(asyncio.TimeoutError, OSError):
        await asyncio.wait_for(proc.communicate(), 5.0)


# --------------------------------------------------------------------- synthetic engine

# Formant centres (F1, F2, F3 in Hz) for vowels; consonants and others get a hashed set.
_VOWEL_FORMANTS: dict[str, tuple[float, float, float]] = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
    "y": (400.0, 1900.0, 2600.0),
}
_PAUSE_CHARS = frozenset(".,;:!?")
_SYLLABLE_HZ = 4.5
_TARGET_RMS = 0.12  # of full scale, about -18 dBFS


def synthetic_speech(text: str, profile: VoiceProfile, rate: int = audio.OUT_RATE) -> bytes:
    """A deterministic, speech-like s16le waveform: ``SYNTH_CHAR_S`` per character, never silent.

    Computed in one-second blocks, so memory stays bounded for long texts.
    """
    chars = text or " "
    n = max(1, int(round(len(chars) * SYNTH_CHAR_S * rate)))
    dur = n / rate
    # Per-character targets, interpolated between character centres.
    f1, f2, f3, gain = (np.empty(len(chars)) for _ in range(4))
    for i, ch in enumerate(chars.lower()):
        if ch in _VOWEL_FORMANTS:
            f1[i], f2[i], f3[i] = _VOWEL_FORMANTS[ch]
            gain[i] = 1.0
        else:
            h = zlib.crc32(ch.encode("utf-8"))
            f1[i] = 300.0 + h % 400
            f2[i] = 1000.0 + (h >> 9) % 1200
            f3[i] = 2300.0 + (h >> 20) % 700
            gain[i] = 0.15 if ch.isspace() else 0.08 if ch in _PAUSE_CHARS else 0.6
    centres = (np.arange(len(chars)) + 0.5) * SYNTH_CHAR_S
    n_harm = int(min(24, 3800.0 // profile.f0_hz))
    rng = np.random.default_rng(zlib.crc32(f"{profile.name}\0{text}".encode()))
    out = np.empty(n, dtype=np.float32)
    phase0 = 0.0
    for a in range(0, n, rate):
        t = np.arange(a, min(a + rate, n), dtype=np.float64) / rate
        formants = [np.interp(t, centres, f) for f in (f1, f2, f3)]
        # Voice pitch with slow intonation and declination.
        f0 = profile.f0_hz * (1.0 + 0.07 * np.sin(2 * np.pi * 0.8 * t)) * (1.0 - 0.12 * t / dur)
        phase = phase0 + 2 * np.pi * np.cumsum(f0) / rate
        phase0 = float(phase[-1])
        voiced = np.zeros(t.size)
        for k in range(1, n_harm + 1):
            hk = k * f0
            amp = sum(1.0 / (1.0 + ((hk - fc) / (60.0 + 0.06 * fc)) ** 2) for fc in formants) / k**0.5
            voiced += amp * np.sin(k * phase)
        syllables = 0.6 - 0.4 * np.cos(2 * np.pi * _SYLLABLE_HZ * t)
        noise = rng.standard_normal(t.size) * 0.05
        out[a : a + t.size] = (voiced + noise) * syllables * np.interp(t, centres, gain)
    ramp = min(n // 2, int(0.01 * rate))
    if ramp:
        fade = np.linspace(0.0, 1.0, ramp, dtype=np.float32)
        out[:ramp] *= fade
        out[n - ramp :] *= fade[::-1]
    rms = float(np.sqrt(np.mean(np.square(out, dtype=np.float64)))) or 1.0
    return audio.to_pcm(out * (_TARGET_RMS * 32767.0 / rms))
