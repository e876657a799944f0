"""PCM utilities: the Live API's raw audio is signed 16-bit little-endian mono.

Input audio is 16 kHz (:data:`IN_RATE`), output audio 24 kHz (:data:`OUT_RATE`).  All
functions take and return ``bytes`` of s16le mono samples (a trailing odd byte is
ignored), are pure numpy, and are deterministic.
"""

from __future__ import annotations

import functools
import math
import struct
import wave
from os import PathLike

import numpy as np
import numpy.typing as npt

IN_RATE = 16000
OUT_RATE = 24000
MIN_DBFS = -120.0  # what rms_dbfs() reports for digital silence or empty input

_FULL_SCALE = 32768.0
_RESAMPLE_ZERO_CROSSINGS = 16  # half-length of the windowed-sinc kernel, in input zero crossings
_RESAMPLE_KAISER_BETA = 8.0
_RESAMPLE_BLOCK = 16384  # output samples computed per vectorised block

StrPath = str | PathLike[str]


def samples(pcm: bytes) -> npt.NDArray[np.int16]:
    """A read-only int16 view of ``pcm`` (a trailing odd byte is ignored)."""
    return np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)


def to_pcm(x: npt.ArrayLike) -> bytes:
    """Round and clip an array of sample values (int16 scale) to s16le bytes."""
    clipped: npt.NDArray[np.float64] = np.clip(np.rint(np.asarray(x, dtype=np.float64)), -32768, 32767)
    return clipped.astype("<i2").tobytes()


def duration_s(pcm: bytes, rate: int) -> float:
    return (len(pcm) // 2) / float(rate)


def rms_dbfs(pcm: bytes) -> float:
    """RMS level in dBFS (a full-scale square wave is 0 dB); :data:`MIN_DBFS` for silence."""
    x = samples(pcm)
    if x.size == 0:
        return MIN_DBFS
    rms = math.sqrt(float(np.mean(np.square(x, dtype=np.float64))))
    if rms <= 0.0:
        return MIN_DBFS
    return max(MIN_DBFS, 20.0 * math.log10(rms / _FULL_SCALE))


def silence(ms: float, rate: int) -> bytes:
    return bytes(2 * int(round(ms * rate / 1000.0)))


def chunk(pcm: bytes, rate: int, ms: float) -> list[bytes]:
    """Split ``pcm`` into consecutive chunks of ``ms`` milliseconds (the last may be shorter)."""
    step = 2 * max(1, int(round(ms * rate / 1000.0)))
    n = len(pcm) - len(pcm) % 2
    return [pcm[i : min(i + step, n)] for i in range(0, n, step)]


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample with a Kaiser-windowed sinc polyphase filter (band-limited, deterministic).

    Output length is ``floor(n * to_rate / from_rate)``.  Resample whole utterances: each
    call treats the audio outside ``pcm`` as silence.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    x = samples(pcm)
    if from_rate == to_rate or x.size == 0:
        return x.tobytes()
    up, down = _ratio(from_rate, to_rate)
    _, half = _polyphase_table(up, down)
    padded = np.concatenate([np.zeros(half, np.float64), x.astype(np.float64), np.zeros(half + 1, np.float64)])
    return to_pcm(_filter(padded, -half, 0, (x.size * up) // down, up, down))


class Resampler:
    """Streaming form of :func:`resample` for audio that arrives in chunks.

    ``process()`` returns what can be computed so far (the filter looks ``half`` input samples
    ahead, about 1 ms), ``flush()`` the rest; together they give exactly ``resample()`` of the
    concatenated input, without the edge effects of resampling each chunk on its own.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
        self.from_rate, self.to_rate = from_rate, to_rate
        self._up, self._down = _ratio(from_rate, to_rate)
        self._half = _polyphase_table(self._up, self._down)[1]
        self._reset()

    def _reset(self) -> None:
        self._odd = b""
        self._buf = np.zeros(self._half, np.float64)  # input samples from absolute index _start
        self._start = -self._half
        self._n_in = 0  # input samples received
        self._k = 0  # next output sample

    def __repr__(self) -> str:
        return f"Resampler({self.from_rate}->{self.to_rate}, in={self._n_in}, out={self._k})"

    def process(self, pcm: bytes) -> bytes:
        data = self._odd + pcm
        cut = len(data) - len(data) % 2
        self._odd = data[cut:]
        if self.from_rate == self.to_rate:
            return data[:cut]
        x = np.frombuffer(data, "<i2", count=cut // 2).astype(np.float64)
        self._buf = np.concatenate([self._buf, x])
        self._n_in += x.size
        last_base = self._n_in - 1 - self._half  # outputs whose taps are all received
        k_end = ((last_base + 1) * self._up - 1) // self._down + 1 if last_base >= 0 else 0
        return self._emit(k_end)

    def flush(self) -> bytes:
        """The remaining output (the stream is treated as followed by silence); then reset."""
        self._odd = b""
        if self.from_rate == self.to_rate:
            return b""
        self._buf = np.concatenate([self._buf, np.zeros(self._half + 1, np.float64)])
        out = self._emit((self._n_in * self._up) // self._down)
        self._reset()
        return out

    def _emit(self, k_end: int) -> bytes:
        if k_end <= self._k:
            return b""
        y = _filter(self._buf, self._start, self._k, k_end, self._up, self._down)
        self._k = k_end
        keep_from = (k_end * self._down) // self._up - self._half + 1
        if keep_from > self._start:
            self._buf = self._buf[keep_from - self._start :]
            self._start = keep_from
        return to_pcm(y)


def _ratio(from_rate: int, to_rate: int) -> tuple[int, int]:
    g = math.gcd(from_rate, to_rate)
    return to_rate // g, from_rate // g


def _filter(buf: npt.NDArray[np.float64], start: int, k0: int, k1: int, up: int, down: int) -> npt.NDArray[np.float64]:
    """Output samples k0..k1-1; ``buf[i]`` is input sample ``start + i`` and covers every tap."""
    table, half = _polyphase_table(up, down)
    offsets = np.arange(-half + 1, half + 1)  # taps at input index base + j
    out = np.empty(k1 - k0, dtype=np.float64)
    for b0 in range(k0, k1, _RESAMPLE_BLOCK):
        k = np.arange(b0, min(b0 + _RESAMPLE_BLOCK, k1), dtype=np.int64)
        pos = k * down
        base, phase = pos // up, pos % up
        idx = base[:, None] + offsets[None, :] - start
        out[b0 - k0 : b0 - k0 + k.size] = np.einsum("ij,ij->i", buf[idx], table[phase])
    return out


@functools.lru_cache(maxsize=32)
def _polyphase_table(up: int, down: int) -> tuple[npt.NDArray[np.float64], int]:
    """Per-phase FIR taps for output position ``k*down/up``; rows sum to 1 (unity DC gain)."""
    cutoff = min(1.0, up / down)  # fraction of the input Nyquist kept
    half = int(math.ceil(_RESAMPLE_ZERO_CROSSINGS / cutoff))
    offsets = np.arange(-half + 1, half + 1, dtype=np.float64)
    frac = np.arange(up, dtype=np.float64) / up
    d = offsets[None, :] - frac[:, None]  # distance from each tap to the output instant
    arg = np.clip(1.0 - (d / half) ** 2, 0.0, None)
    window = np.i0(_RESAMPLE_KAISER_BETA * np.sqrt(arg)) / np.i0(_RESAMPLE_KAISER_BETA)
    taps = cutoff * np.sinc(cutoff * d) * window
    taps /= taps.sum(axis=1, keepdims=True)
    taps.setflags(write=False)
    return taps, half


# ---------------------------------------------------------------------------- WAV files


def parse_wav(data: bytes) -> tuple[bytes, int]:
    """Decode a RIFF/WAVE byte string to (mono s16le PCM, sample rate).

    Accepts integer PCM of 8/16/24/32 bits and 32/64-bit float (also WAVE_FORMAT_EXTENSIBLE),
    downmixes channels by averaging, and tolerates the bogus sizes that streaming writers
    (``espeak-ng --stdout``) put in the RIFF and data headers.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            tag, channels, rate = struct.unpack_from("<HHI", data, body)
            bits = struct.unpack_from("<H", data, body + 14)[0]
            if tag == 0xFFFE and size >= 26:  # WAVE_FORMAT_EXTENSIBLE: real tag opens the GUID
                tag = struct.unpack_from("<H", data, body + 24)[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError("WAVE data chunk before fmt chunk")
            end = min(len(data), body + size)
            return _decode_frames(data[body:end], *fmt), fmt[2]
        pos = body + size + (size & 1)
    raise ValueError("WAVE file has no data chunk")


def _decode_frames(raw: bytes, tag: int, channels: int, rate: int, bits: int) -> bytes:
    if channels < 1 or rate < 1:
        raise ValueError(f"bad WAVE format: {channels} channels at {rate} Hz")
    width = bits // 8
    frame = width * channels
    raw = raw[: len(raw) - len(raw) % frame] if frame else b""
    x: npt.NDArray[np.float64]
    if tag == 1 and bits == 16:
        x = np.frombuffer(raw, "<i2").astype(np.float64)
    elif tag == 1 and bits == 8:
        x = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) * 256.0
    elif tag == 1 and bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v) / 256.0).astype(np.float64)
    elif tag == 1 and bits == 32:
        x = np.frombuffer(raw, "<i4").astype(np.float64) / 65536.0
    elif tag == 3 and bits in (32, 64):
        x = np.frombuffer(raw, "<f4" if bits == 32 else "<f8").astype(np.float64) * _FULL_SCALE
    else:
        raise ValueError(f"unsupported WAVE encoding: format tag {tag}, {bits} bits")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return to_pcm(x)


def read_wav(path: StrPath) -> tuple[bytes, int]:
    """Read a WAV file as (mono s16le PCM, sample rate); stereo is downmixed."""
    with open(path, "rb") as f:
        return parse_wav(f.read())


def write_wav(path: StrPath, pcm: bytes, rate: int) -> None:
    """Write mono s16le ``pcm`` as a 16-bit PCM WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm[: len(pcm) - len(pcm) % 2])
