"""Energy VAD over real synthesised speech: events, sensitivities, padding, flush, utterances."""

from __future__ import annotations

import time

import numpy as np
import pytest

from emulator import audio
from emulator.vad import Vad, VadConfig, VadEvent

RATE = audio.IN_RATE
HIGH = VadConfig()
LOW = VadConfig(start_sensitivity="START_SENSITIVITY_LOW", end_sensitivity="END_SENSITIVITY_LOW")


def speech_extent_s(pcm: bytes, rate: int = RATE, floor_dbfs: float = -50.0) -> tuple[float, float]:
    """(first, last) second of 10 ms frames louder than ``floor_dbfs``."""
    x = audio.samples(pcm).astype(np.float64)
    hop = rate // 100
    n = x.size // hop
    level = 20 * np.log10(np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)) / 32768 + 1e-12)
    loud = np.flatnonzero(level > floor_dbfs)
    return loud[0] * hop / rate, (loud[-1] + 1) * hop / rate


def sil(ms: float) -> bytes:
    return audio.silence(ms, RATE)


def odd_splits(pcm: bytes, seed: int = 7) -> list[bytes]:
    """Random chunk sizes of 1..1999 bytes, mostly odd, so samples straddle feed() calls."""
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(pcm):
        n = int(rng.integers(1, 2000)) | 1
        out.append(pcm[i : i + n])
        i += n
    return out


def run(config: VadConfig, chunks: list[bytes], flush: bool = True) -> tuple[list[VadEvent], Vad]:
    vad = Vad(config)
    events = [e for c in chunks for e in vad.feed(c)]
    if flush:
        events += vad.flush()
    return events, vad


def scale(pcm: bytes, gain: float) -> bytes:
    return audio.to_pcm(audio.samples(pcm).astype(np.float64) * gain)


def kinds(events: list[VadEvent]) -> list[str]:
    return [e.kind for e in events]


@pytest.mark.parametrize("split", ["20ms", "100ms", "odd"])
def test_one_start_and_one_end_around_the_speech(speech16k: dict[str, bytes], split: str) -> None:
    speech = speech16k["lights"]
    first, last = speech_extent_s(speech)
    stream = sil(1000) + speech + sil(1500)
    chunks = {"20ms": audio.chunk(stream, RATE, 20), "100ms": audio.chunk(stream, RATE, 100), "odd": odd_splits(stream)}[split]
    events, vad = run(HIGH, chunks)
    assert kinds(events) == ["start", "end"]
    start, end = events[0].offset_s, events[1].offset_s
    assert 1.0 + first - 0.03 <= start <= 1.0 + first + 0.1
    assert 1.0 + last - 0.15 <= end <= 1.0 + last + 0.03
    assert not vad.in_speech
    # framing does not change the result
    assert events == run(HIGH, audio.chunk(stream, RATE, 20))[0]


def test_events_arrive_when_decided(speech16k: dict[str, bytes]) -> None:
    speech = speech16k["hello"]
    vad = Vad(HIGH)
    assert vad.feed(sil(500)) == [] and not vad.in_speech
    events = vad.feed(speech[: len(speech) // 2])
    assert kinds(events) == ["start"] and vad.in_speech
    assert vad.feed(speech[len(speech) // 2 :]) == []
    assert vad.feed(sil(300)) == [] and vad.in_speech  # 300 ms < 500 ms of silence so far
    assert kinds(vad.feed(sil(600))) == ["end"]
    assert not vad.in_speech and vad.flush() == []


def test_silence_duration_is_honoured(speech16k: dict[str, bytes]) -> None:
    a, b = speech16k["hello"], speech16k["weather"]

    def utterances(pause_ms: int, silence_ms: int) -> int:
        stream = sil(300) + a + sil(pause_ms) + b + sil(2500)
        events, _ = run(VadConfig(silence_duration_ms=silence_ms), audio.chunk(stream, RATE, 20))
        assert kinds(events) == ["start", "end"] * (len(events) // 2)
        return len(events) // 2

    # the clips carry their own trailing quiet (espeak ends ~0.3 s after the last phoneme)
    assert utterances(pause_ms=0, silence_ms=800) == 1
    assert utterances(pause_ms=1000, silence_ms=800) == 2
    assert utterances(pause_ms=1000, silence_ms=2000) == 1
    assert utterances(pause_ms=1500, silence_ms=0) == 2  # 0 means the 500 ms default


def test_end_sensitivity_low_waits_twice_as_long(speech16k: dict[str, bytes]) -> None:
    stream = sil(300) + speech16k["hello"] + sil(700) + speech16k["hello"] + sil(3000)
    chunks = audio.chunk(stream, RATE, 20)
    high, _ = run(VadConfig(silence_duration_ms=500), chunks)
    low, _ = run(VadConfig(silence_duration_ms=500, end_sensitivity="END_SENSITIVITY_LOW"), chunks)
    assert kinds(high) == ["start", "end", "start", "end"]
    assert kinds(low) == ["start", "end"]
    # the end is reported where the silence began, but decided 500 vs 1000 ms later
    vad = Vad(VadConfig(end_sensitivity="END_SENSITIVITY_LOW"))
    vad.feed(sil(300) + speech16k["hello"])
    assert vad.feed(sil(900)) == [] and kinds(vad.feed(sil(400))) == ["end"]


def test_start_sensitivity_low_needs_louder_and_longer_sound(speech16k: dict[str, bytes]) -> None:
    speech = speech16k["weather"]
    quiet = scale(speech, 10 ** ((-47 - audio.rms_dbfs(speech)) / 20))  # -47 dBFS on average
    stream = sil(500) + quiet + sil(1500)
    assert kinds(run(HIGH, audio.chunk(stream, RATE, 20))[0]) == ["start", "end"]
    assert run(LOW, audio.chunk(stream, RATE, 20))[0] == []
    # a 60 ms knock: 3 loud frames start HIGH (needs 2) but not LOW (needs 6)
    knock = audio.to_pcm(np.random.default_rng(1).standard_normal(RATE * 60 // 1000) * 8000)
    stream = sil(500) + knock + sil(1500)
    assert kinds(run(HIGH, [stream])[0]) == ["start", "end"]
    assert run(LOW, [stream])[0] == []


def test_prefix_padding_is_required_speech_and_kept_audio() -> None:
    burst = audio.to_pcm(np.random.default_rng(2).standard_normal(RATE // 10) * 6000)  # 100 ms
    stream = sil(500) + burst + sil(1000)
    assert run(VadConfig(prefix_padding_ms=200), [stream])[0] == []
    events, vad = run(VadConfig(prefix_padding_ms=80), [stream])
    assert kinds(events) == ["start", "end"] and events[0].offset_s == pytest.approx(0.5)
    utterance = vad.take_utterance()
    # 80 ms of padding before the start, the burst, then TAIL_MS (100 ms) after the end
    assert audio.duration_s(utterance, RATE) == pytest.approx(0.08 + 0.1 + 0.1, abs=0.021)
    assert utterance[: 2 * RATE * 80 // 1000] == bytes(2 * RATE * 80 // 1000)
    assert burst in utterance


def test_flush_closes_an_open_activity(speech16k: dict[str, bytes]) -> None:
    speech = speech16k["lights"]
    vad = Vad(HIGH)
    events = vad.feed(sil(400) + speech[: len(speech) // 2])
    assert kinds(events) == ["start"] and vad.in_speech
    assert vad.take_utterance() == b""
    end = vad.flush()
    assert kinds(end) == ["end"] and end[0].offset_s > events[0].offset_s
    assert not vad.in_speech and vad.flush() == []
    utterance = vad.take_utterance()
    assert audio.duration_s(utterance, RATE) == pytest.approx(audio.duration_s(speech, RATE) / 2 + 0.02, abs=0.08)
    assert vad.take_utterance() == b""  # taken once


def test_take_utterance_returns_the_speech(speech16k: dict[str, bytes]) -> None:
    speech = speech16k["weather"]
    first, last = speech_extent_s(speech)
    stream = sil(700) + speech + sil(1200)
    events, vad = run(HIGH, odd_splits(stream, seed=3), flush=False)
    assert kinds(events) == ["start", "end"]
    utterance = vad.take_utterance()
    start = int(round((events[0].offset_s - 0.02) * RATE)) * 2
    assert stream[start : start + len(utterance)] == utterance  # a verbatim slice of the stream
    voiced = speech[int(first * RATE) * 2 : int((last - 0.05) * RATE) * 2]
    assert voiced in utterance
    assert audio.duration_s(utterance, RATE) < last - first + 0.4


def test_background_noise_does_not_hold_the_activity_open(speech16k: dict[str, bytes]) -> None:
    rng = np.random.default_rng(5)
    speech = speech16k["hello"] + sil(1500)
    clean = sil(2000) + speech + speech
    noise = rng.standard_normal(len(clean) // 2) * 32768 * 10 ** (-62 / 20)  # -62 dBFS hiss
    noisy = audio.to_pcm(audio.samples(clean).astype(np.float64) + noise)
    events, _ = run(HIGH, audio.chunk(noisy, RATE, 20))
    assert kinds(events) == ["start", "end", "start", "end"]


def test_silence_and_empty_input() -> None:
    vad = Vad(HIGH)
    assert vad.feed(b"") == [] and vad.feed(b"\x00") == [] and vad.feed(sil(3000)) == []
    assert vad.flush() == [] and vad.take_utterance() == b""
    assert vad.stream_offset_s == pytest.approx(3.0, abs=0.02)


def test_cheap_enough_for_hundreds_of_sessions() -> None:
    rng = np.random.default_rng(0)
    n = RATE * 60
    gate = np.sin(np.arange(n) / RATE * 2 * np.pi * 0.2) > 0
    chunks = audio.chunk(audio.to_pcm(rng.standard_normal(n) * 3000 * gate), RATE, 20)
    vad = Vad(HIGH)
    t0 = time.perf_counter()
    events = [e for c in chunks for e in vad.feed(c)]
    per_chunk_us = (time.perf_counter() - t0) / len(chunks) * 1e6
    assert kinds(events) == ["start", "end"] * 12
    assert per_chunk_us < 200, f"{per_chunk_us:.0f} us per 20 ms chunk"


def test_steady_noise_cannot_hold_an_activity_open_forever(speech16k: dict[str, bytes]) -> None:
    rng = np.random.default_rng(11)
    seconds = 40
    fan = rng.standard_normal(RATE * seconds) * 32768 * 10 ** (-45 / 20)  # louder than HIGH's -50 dBFS
    speech = audio.samples(speech16k["weather"]).astype(np.float64)
    speech *= 10 ** ((-20 - audio.rms_dbfs(speech16k["weather"])) / 20)
    at = RATE * 32
    mix = fan.copy()
    mix[at : at + speech.size] += speech
    events, _ = run(HIGH, audio.chunk(audio.to_pcm(mix), RATE, 20))
    assert kinds(events) == ["start", "end", "start", "end"]
    assert events[0].offset_s < 0.5 and 10 < events[1].offset_s < 30  # the fan, until the floor adapts
    assert events[2].offset_s == pytest.approx(32, abs=0.3)  # then only the speech
    assert events[3].offset_s == pytest.approx(32 + speech.size / RATE, abs=0.3)
