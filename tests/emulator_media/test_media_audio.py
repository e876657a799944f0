"""PCM utilities: resampling, WAV I/O, levels and framing."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from emulator import audio


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return audio.to_pcm(amplitude * 32767 * np.sin(2 * np.pi * freq * t))


def dominant_hz(pcm: bytes, rate: int) -> float:
    x = audio.samples(pcm).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


def test_constants() -> None:
    assert (audio.IN_RATE, audio.OUT_RATE) == (16000, 24000)


@pytest.mark.parametrize(("src", "dst"), [(22050, 24000), (16000, 24000), (24000, 16000), (48000, 16000), (8000, 16000)])
def test_resample_keeps_pitch_level_and_length(src: int, dst: int) -> None:
    pcm = tone(440.0, 1.0, src)
    out = audio.resample(pcm, src, dst)
    assert len(out) == 2 * (src * dst // src)  # floor(n * dst / src) samples
    assert dominant_hz(out, dst) == pytest.approx(440.0, abs=2.0)
    middle = audio.samples(out)[dst // 10 : -dst // 10].tobytes()  # away from the edges
    assert audio.rms_dbfs(middle) == pytest.approx(audio.rms_dbfs(pcm), abs=0.2)


def test_resample_is_deterministic_and_identity_at_equal_rates() -> None:
    pcm = tone(1000.0, 0.3, 22050)
    assert audio.resample(pcm, 22050, 24000) == audio.resample(pcm, 22050, 24000)
    assert audio.resample(pcm, 16000, 16000) == pcm
    assert audio.resample(b"", 16000, 24000) == b""
    assert audio.resample(pcm + b"\x01", 16000, 16000) == pcm  # trailing odd byte dropped


def test_downsampling_removes_content_above_the_new_nyquist() -> None:
    # 10 kHz cannot exist at 16 kHz: a band-limited resampler must not alias it to 6 kHz.
    out = audio.resample(tone(10000.0, 0.5, 48000), 48000, 16000)
    assert audio.rms_dbfs(audio.samples(out)[800:-800].tobytes()) < -50


def test_resample_rejects_bad_rates() -> None:
    with pytest.raises(ValueError):
        audio.resample(b"\x00\x00", 0, 16000)


def test_wav_round_trip(tmp_path: Path) -> None:
    pcm = tone(300.0, 0.25, 16000)
    path = tmp_path / "a.wav"
    audio.write_wav(path, pcm, 16000)
    assert audio.read_wav(path) == (pcm, 16000)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)


def test_read_wav_downmixes_stereo(tmp_path: Path) -> None:
    left = audio.samples(tone(300.0, 0.1, 8000)).astype(np.int32)
    stereo = np.stack([left, np.zeros_like(left)], axis=1).astype("<i2")
    path = tmp_path / "s.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(stereo.tobytes())
    pcm, rate = audio.read_wav(path)
    assert rate == 8000
    assert np.array_equal(audio.samples(pcm), np.rint(left / 2).astype(np.int16))


def test_parse_wav_tolerates_streaming_sizes_and_other_encodings() -> None:
    body = np.array([0, 16384, -16384, 32767], "<i2").tobytes()
    # espeak-ng --stdout writes 0x7ffff000-ish sizes because it streams
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 22050, 44100, 2, 16)
    data = b"RIFF" + struct.pack("<I", 0x7FFFF024) + b"WAVE" + fmt + b"data" + struct.pack("<I", 0x7FFFF000) + body
    assert audio.parse_wav(data) == (body, 22050)
    floats = np.array([0.0, 0.5, -0.5, 1.0], "<f4").tobytes()
    fmt_f = struct.pack("<4sIHHIIHH", b"fmt ", 16, 3, 1, 8000, 32000, 4, 32)
    data_f = b"RIFF" + struct.pack("<I", 36 + 16) + b"WAVE" + fmt_f + b"data" + struct.pack("<I", 16) + floats
    pcm, rate = audio.parse_wav(data_f)
    assert rate == 8000 and audio.samples(pcm).tolist() == [0, 16384, -16384, 32767]
    with pytest.raises(ValueError):
        audio.parse_wav(b"not a wav file at all")


def test_levels_durations_silence_and_chunks() -> None:
    assert audio.duration_s(bytes(32000), 16000) == 1.0
    assert audio.silence(20, 16000) == bytes(640)
    assert audio.rms_dbfs(audio.silence(100, 16000)) == audio.MIN_DBFS
    assert audio.rms_dbfs(b"") == audio.MIN_DBFS
    assert audio.rms_dbfs(tone(1000.0, 0.5, 16000, amplitude=1.0)) == pytest.approx(-3.01, abs=0.05)
    pcm = bytes(range(256)) * 10  # 1280 samples
    parts = audio.chunk(pcm, 16000, 20)
    assert [len(p) for p in parts] == [640] * 4
    assert b"".join(parts) == pcm
    odd = audio.chunk(pcm[:-2] + b"\x05", 16000, 30)
    assert all(len(p) % 2 == 0 for p in odd) and b"".join(odd) == pcm[:-2]


@pytest.mark.parametrize(("src", "dst"), [(48000, 16000), (44100, 16000), (22050, 24000), (8000, 16000), (16000, 16000)])
def test_streaming_resampler_equals_whole_buffer_resampling(src: int, dst: int) -> None:
    rng = np.random.default_rng(src)
    pcm = audio.to_pcm(rng.standard_normal(src) * 3000)
    resampler = audio.Resampler(src, dst)
    out, i = [], 0
    while i < len(pcm):
        n = int(rng.integers(1, 3000))  # odd byte counts too
        out.append(resampler.process(pcm[i : i + n]))
        i += n
    out.append(resampler.flush())
    assert b"".join(out) == audio.resample(pcm, src, dst)
    # flush() resets: the same object serves the next stream
    assert resampler.process(pcm) + resampler.flush() == audio.resample(pcm, src, dst)
