"""Speech synthesis: both engines give 24 kHz s16le mono speech that behaves like speech."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from emulator import audio, speech
from emulator.speech import SynthesisError, Synthesizer

ESPEAK = shutil.which("espeak-ng") is not None
ENGINES = [
    "synthetic",
    pytest.param(
        "espeak",
        marks=pytest.mark.skipif(not ESPEAK, reason="espeak-ng is not on PATH (apt-get install -y espeak-ng)"),
    ),
]


def median_f0(pcm: bytes, rate: int = audio.OUT_RATE) -> float:
    """Median autocorrelation pitch (70-400 Hz) over the loud 40 ms frames."""
    x = audio.samples(pcm).astype(np.float64)
    n = rate * 40 // 1000
    frames = x[: x.size // n * n].reshape(-1, n)
    loud = frames[np.sqrt(np.mean(frames**2, axis=1)) > 0.3 * np.sqrt(np.mean(x**2))]
    lo, hi = rate // 400, rate // 70
    f0s = []
    for f in loud:
        f = f - f.mean()
        ac = np.correlate(f, f, "full")[n - 1 :]
        f0s.append(rate / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(f0s))


@pytest.mark.parametrize("engine", ENGINES)
async def test_valid_nonsilent_24k_pcm_that_grows_with_text(engine: str) -> None:
    synth = Synthesizer(engine)
    assert synth.engine_name == engine
    short = await synth.synthesize("Hello.", voice="Puck")
    long = await synth.synthesize("Hello. The weather today is sunny with a light breeze.", voice="Puck")
    for pcm in (short, long):
        assert len(pcm) > 0 and len(pcm) % 2 == 0
        assert audio.rms_dbfs(pcm) > -35
    assert audio.duration_s(long, 24000) > 2 * audio.duration_s(short, 24000)
    assert 2.0 < audio.duration_s(long, 24000) < 6.0


@pytest.mark.skipif(not ESPEAK, reason="espeak-ng is not on PATH (apt-get install -y espeak-ng)")
async def test_espeak_output_is_espeak_resampled_to_24k() -> None:
    synth = Synthesizer("espeak")
    pcm = await synth.synthesize("Testing one two three", voice="Kore", language_code="en-US")
    p = speech.voice_profile("Kore")
    raw = subprocess.run(
        ["espeak-ng", "--stdout", "-v", f"en-us+{p.espeak_variant}", "-p", str(p.espeak_pitch),
         "-s", str(p.espeak_speed_wpm), "Testing one two three"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    ref, rate = audio.parse_wav(raw)
    assert rate == 22050
    assert len(pcm) // 2 == (len(ref) // 2) * 24000 // 22050
    assert pcm == audio.resample(ref, 22050, 24000)


def test_synthetic_duration_is_60ms_per_character() -> None:
    pcm = speech.synthetic_speech("abcdefghij" * 3, speech.voice_profile("Leda"))
    assert audio.duration_s(pcm, 24000) == pytest.approx(30 * speech.SYNTH_CHAR_S, abs=1e-3)


@pytest.mark.parametrize("engine", ENGINES)
async def test_deterministic_and_cached(engine: str) -> None:
    a, b = Synthesizer(engine), Synthesizer(engine)
    text = "Deterministic output, please."
    first = await a.synthesize(text, voice="Charon", language_code="en-GB")
    assert await b.synthesize(text, voice="Charon", language_code="en-GB") == first
    assert await a.synthesize(text, voice="Charon", language_code="en-GB") is first  # served from the cache
    assert await a.synthesize("  Deterministic   output,\nplease. ", voice="charon", language_code="en-GB") is first


@pytest.mark.parametrize("engine", ENGINES)
async def test_voices_differ_and_female_voices_are_higher(engine: str) -> None:
    synth = Synthesizer(engine)
    text = "We were away a year ago"
    out = {v: await synth.synthesize(text, voice=v) for v in ("Puck", "Charon", "Kore", "Aoede")}
    assert len(set(out.values())) == 4
    female = min(median_f0(out["Kore"]), median_f0(out["Aoede"]))
    male = max(median_f0(out["Puck"]), median_f0(out["Charon"]))
    assert female > 1.3 * male, (female, male)


@pytest.mark.skipif(not ESPEAK, reason="espeak-ng is not on PATH (apt-get install -y espeak-ng)")
async def test_language_codes_select_espeak_voices_with_english_fallback() -> None:
    synth = Synthesizer("espeak")
    text = "Guten Morgen, wie geht es dir?"
    english = await synth.synthesize(text, voice="Puck", language_code="en-US")
    assert await synth.synthesize(text, voice="Puck", language_code="de-DE") != english
    assert await synth.synthesize(text, voice="Puck", language_code="xx-XX") == english
    assert await synth.synthesize(text, voice="Puck") == english
    for code in ("ja-JP", "cmn-CN", "hi-IN", "ar-XA"):
        assert audio.rms_dbfs(await synth.synthesize("こんにちは 你好 नमस्ते hello", voice="Kore", language_code=code)) > -35


@pytest.mark.parametrize("engine", ENGINES)
async def test_blank_text_gives_no_audio(engine: str) -> None:
    assert await Synthesizer(engine).synthesize(" \n ", voice="Puck") == b""


@pytest.mark.parametrize("engine", ENGINES)
async def test_event_loop_keeps_running_during_synthesis(engine: str) -> None:
    synth = Synthesizer(engine)
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    texts = [f"Sentence number {i} is a fairly long one, spoken for the loop test." * 3 for i in range(4)]
    results = await asyncio.gather(*(synth.synthesize(t, voice="Orus") for t in texts))
    done.set()
    await task
    assert all(audio.duration_s(r, 24000) > 5 for r in results)
    assert max(gaps) < 0.1, max(gaps)


def test_engine_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown speech engine"):
        Synthesizer("festival")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert Synthesizer("auto").engine_name == "synthetic"
    with pytest.raises(SynthesisError, match="apt-get install -y espeak-ng"):
        Synthesizer("espeak")
    if ESPEAK:
        monkeypatch.undo()
        assert Synthesizer("auto").engine_name == "espeak"


@pytest.mark.skipif(not ESPEAK, reason="espeak-ng is not on PATH (apt-get install -y espeak-ng)")
async def test_bounded_espeak_processes_serve_a_burst() -> None:
    synth = Synthesizer("espeak", max_processes=2)
    texts = [f"Reply number {i}." for i in range(12)]
    burst = await asyncio.gather(*(synth.synthesize(t, voice="Leda") for t in texts))
    fresh = Synthesizer("espeak")
    assert burst == [await fresh.synthesize(t, voice="Leda") for t in texts]


def _espeak_children() -> list[int]:
    """Live espeak-ng processes whose parent is this test process (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if comm == "espeak-ng" and int(rest[1]) == os.getpid() and rest[0] != "Z":
            found.append(int(entry))
    return found


@pytest.mark.skipif(not ESPEAK or not os.path.isdir("/proc"), reason="needs espeak-ng on PATH and Linux /proc")
async def test_cancelled_synthesis_kills_espeak() -> None:
    synth = Synthesizer("espeak")
    task = asyncio.create_task(synth.synthesize("A very long reply that gets interrupted. " * 200, voice="Puck"))
    await asyncio.sleep(0.05)
    assert _espeak_children()  # it is running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _espeak_children() == []
    assert len(await synth.synthesize("still works", voice="Puck")) > 0


async def test_synthetic_engine_renders_word_by_word_with_the_same_timing() -> None:
    synth = Synthesizer("synthetic")
    text = "the quick brown fox, the lazy dog"
    pcm = await synth.synthesize(text, voice="Puck")
    assert audio.duration_s(pcm, 24000) == pytest.approx(len(text) * speech.SYNTH_CHAR_S, abs=1e-3)
    profile = speech.voice_profile("Puck")
    assert pcm == b"".join(speech.synthetic_speech(w, profile) for w in ("the ", "quick ", "brown ", "fox, ", "the ",
                                                                          "lazy ", "dog"))
    # a new sentence made of words already spoken is assembled from them
    again = await synth.synthesize("the lazy fox, the", voice="Puck")
    assert again == b"".join(speech.synthetic_speech(w, profile) for w in ("the ", "lazy ", "fox, ", "the"))


def test_reply_chunks_are_encoded_when_sent_and_cover_the_audio_exactly() -> None:
    from emulator.speaking import BYTES_PER_S_OUT, Chunks

    pcm = bytes(range(256)) * 20 + b"\x01\x02"  # 5122 B: two full 2400 B chunks and a 322 B tail
    chunks = Chunks(pcm, 2400)
    assert len(chunks) == 3
    assert chunks._b64 == [None, None, None]  # nothing encoded before the first send
    assert base64.b64decode(chunks.b64(1)) == pcm[2400:4800]
    assert chunks._b64[0] is None and chunks._b64[2] is None
    assert b"".join(base64.b64decode(chunks.b64(i)) for i in range(3)) == pcm
    assert chunks.b64(1) is chunks.b64(1)  # encoded once, shared by every session sending this reply
    assert chunks._pcm == b""  # all encoded: the cache holds the base64 only, as before
    assert chunks.durations == [2400 / BYTES_PER_S_OUT, 2400 / BYTES_PER_S_OUT, 322 / BYTES_PER_S_OUT]
    assert len(Chunks(b"", 2400)) == 0
