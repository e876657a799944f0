"""Streaming energy VAD with the Live API's ``automaticActivityDetection`` knobs.

The stream is cut into 20 ms frames (:data:`FRAME_MS`); each frame's RMS level in dBFS
is computed with numpy (one vectorised pass per ``feed``), and a small per-frame state
machine applies the rules below.  Offsets are seconds from the start of the stream.

Levels.  A noise-floor tracker (starts at -90 dBFS; see *Noise floor* below) sets the
*start threshold* ``max(START_DBFS[s], floor + START_MARGIN_DB[s])`` for start sensitivity
``s``; once in speech a frame stays voiced down to ``start threshold - HOLD_DB[e]``
(hysteresis) for end sensitivity ``e``.

=========================  ======================  =====================
rule                       HIGH                    LOW
=========================  ======================  =====================
start level (absolute)     -50 dBFS                -38 dBFS
start margin over floor    +9 dB                   +15 dB
voiced frames to start     2 (40 ms)               6 (120 ms)
hold (hysteresis)          6 dB below start level  10 dB below start level
silence that ends speech   ``silence_duration_ms``   2 x ``silence_duration_ms``
=========================  ======================  =====================

* **Start**: ``max(frames[s], ceil(prefix_padding_ms / 20))`` consecutive voiced frames
  commit a start (``prefix_padding_ms`` is "the required duration of detected speech
  before start-of-speech is committed").  The start event's ``offset_s`` is the
  beginning of the first frame of that run; it is emitted by the ``feed`` call that
  delivers the committing frame.
* **End**: ``silence_duration_ms`` (500 ms when 0 or negative) of consecutive unvoiced
  frames, doubled for ``END_SENSITIVITY_LOW``, rounded up to whole frames.  The end
  event's ``offset_s`` is the end of the last voiced frame (where the silence began).
* **Noise floor**: outside activities it follows unvoiced frames (falls with weight 0.5, rises
  with 0.02 per frame).  During an activity, once per second it moves 15 % of the way up to
  that second's quietest frame: speech always has quieter frames, so this stays below it,
  but a steady noise louder than the start level (a fan at -45 dBFS with HIGH) ends its
  activity after about 20 s instead of holding it open forever, and is ignored afterwards.
  (Tone-convention messages, steady too, therefore stay one activity up to about 20 s.)
* :meth:`Vad.flush` (``audioStreamEnd``) ends an open activity at the end of the last
  voiced frame; an uncommitted run is dropped.
* :meth:`Vad.take_utterance` pops the audio of the last completed activity:
  ``prefix_padding_ms`` of audio before the start offset, through the end offset plus
  :data:`TAIL_MS` (as far as audio was received).  Activities longer than
  :data:`MAX_UTTERANCE_S` keep only their last ``MAX_UTTERANCE_S`` seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

FRAME_MS = 20
TAIL_MS = 100
MAX_UTTERANCE_S = 120.0
DEFAULT_SILENCE_MS = 500

START_HIGH = "START_SENSITIVITY_HIGH"
START_LOW = "START_SENSITIVITY_LOW"
END_HIGH = "END_SENSITIVITY_HIGH"
END_LOW = "END_SENSITIVITY_LOW"

START_DBFS = {START_HIGH: -50.0, START_LOW: -38.0}
START_MARGIN_DB = {START_HIGH: 9.0, START_LOW: 15.0}
START_FRAMES = {START_HIGH: 2, START_LOW: 6}
HOLD_DB = {END_HIGH: 6.0, END_LOW: 10.0}
END_SILENCE_FACTOR = {END_HIGH: 1, END_LOW: 2}

_FLOOR_INIT_DBFS = -90.0
_FLOOR_FALL = 0.5  # per-frame smoothing towards a quieter level
_FLOOR_RISE = 0.02  # per-frame smoothing towards a louder (non-speech) level
_FLOOR_RISE_IN_SPEECH = 0.15  # per second of activity, towards that second's quietest frame
_FRAMES_PER_S = 1000 // FRAME_MS
_MIN_DBFS = -120.0


def _start_key(value: str) -> str:
    """Accept the enum name, or the unspecified value, or a bare ``HIGH``/``LOW``."""
    return START_LOW if value.upper().endswith("LOW") else START_HIGH


def _end_key(value: str) -> str:
    return END_LOW if value.upper().endswith("LOW") else END_HIGH


@dataclass(frozen=True)
class VadConfig:
    start_sensitivity: str = START_HIGH
    end_sensitivity: str = END_HIGH
    prefix_padding_ms: int = 20
    silence_duration_ms: int = 500


@dataclass(frozen=True)
class VadEvent:
    kind: Literal["start", "end"]
    offset_s: float  # seconds from the start of the stream


class Vad:
    """Feed 16-bit PCM in any chunk sizes; get ``start``/``end`` events back."""

    def __init__(self, config: VadConfig, sample_rate: int = 16000) -> None:
        self.config = config
        self.sample_rate = sample_rate
        self._frame = max(1, sample_rate * FRAME_MS // 1000)
        start, end = _start_key(config.start_sensitivity), _end_key(config.end_sensitivity)
        self._start_dbfs = START_DBFS[start]
        self._start_margin = START_MARGIN_DB[start]
        pad_frames = math.ceil(max(0, config.prefix_padding_ms) / FRAME_MS)
        self._start_frames = max(START_FRAMES[start], pad_frames)
        self._hold_db = HOLD_DB[end]
        silence_ms = config.silence_duration_ms if config.silence_duration_ms > 0 else DEFAULT_SILENCE_MS
        self._end_frames = max(1, math.ceil(silence_ms * END_SILENCE_FACTOR[end] / FRAME_MS))
        self._pad_samples = max(0, config.prefix_padding_ms) * sample_rate // 1000
        self._tail_samples = TAIL_MS * sample_rate // 1000
        self._max_samples = int(MAX_UTTERANCE_S * sample_rate)
        self.reset()

    def reset(self) -> None:
        """Forget all state, as for a new stream (offsets restart at 0)."""
        self._odd = b""  # a trailing odd byte from the previous feed
        self._pending = np.zeros(0, dtype=np.int16)  # samples not yet forming a whole frame
        self._frames_done = 0  # frames processed so far
        self._buf: list[np.ndarray] = []  # retained audio chunks, starting at sample _buf_base
        self._buf_base = 0
        self._buf_len = 0
        self._floor = _FLOOR_INIT_DBFS
        self._in_speech = False
        self._run = 0  # consecutive voiced frames while idle
        self._silent = 0  # consecutive unvoiced frames while in speech
        self._onset = 0  # frame index where the current activity started
        self._last_voiced = 0  # frame index of the last voiced frame in the activity
        self._second_min = 0.0  # quietest frame level in the current second of activity
        self._second_frames = 0
        self._utterance = b""

    def __repr__(self) -> str:
        return (
            f"Vad(in_speech={self._in_speech}, at={self._frames_done * FRAME_MS / 1000:.2f}s, "
            f"floor={self._floor:.1f}dBFS, start_frames={self._start_frames}, end_frames={self._end_frames})"
        )

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def stream_offset_s(self) -> float:
        """Seconds of audio processed (whole frames)."""
        return self._frames_done * self._frame / self.sample_rate

    def feed(self, pcm: bytes) -> list[VadEvent]:
        data = self._odd + pcm
        cut = len(data) - len(data) % 2
        self._odd = data[cut:]
        new = np.frombuffer(data, dtype="<i2", count=cut // 2).astype(np.int16)
        if new.size:
            self._buf.append(new)
            self._buf_len += new.size
        pending = np.concatenate([self._pending, new]) if self._pending.size else new
        n_frames = pending.size // self._frame
        self._pending = pending[n_frames * self._frame :]
        if n_frames == 0:
            return []
        frames = pending[: n_frames * self._frame].reshape(n_frames, self._frame).astype(np.float64)
        rms = np.sqrt(np.mean(frames * frames, axis=1)) / 32768.0
        levels = 20.0 * np.log10(np.maximum(rms, 10 ** (_MIN_DBFS / 20)))
        events: list[VadEvent] = []
        for level in levels.tolist():
            self._step(level, events)
        self._trim()
        return events

    def flush(self) -> list[VadEvent]:
        """End an open activity now (``audioStreamEnd``); drops an uncommitted run."""
        self._run = 0
        if not self._in_speech:
            return []
        events: list[VadEvent] = []
        self._finish(events, through_sample=self._buf_base + self._buf_len)
        self._trim()
        return events

    def take_utterance(self) -> bytes:
        """Pop the PCM of the last completed activity (with prefix padding); ``b""`` if none."""
        pcm, self._utterance = self._utterance, b""
        return pcm

    # ------------------------------------------------------------------ internals

    def _step(self, level: float, events: list[VadEvent]) -> None:
        index = self._frames_done
        self._frames_done += 1
        start_level = max(self._start_dbfs, self._floor + self._start_margin)
        if not self._in_speech:
            if level >= start_level:
                self._run += 1
                if self._run >= self._start_frames:
                    self._in_speech = True
                    self._onset = index - self._run + 1
                    self._last_voiced = index
                    self._silent = 0
                    self._run = 0
                    self._second_min, self._second_frames = level, 0
                    events.append(VadEvent("start", self._seconds(self._onset)))
            else:
                self._run = 0
                rate = _FLOOR_FALL if level < self._floor else _FLOOR_RISE
                self._floor += rate * (level - self._floor)
            return
        self._track_floor_in_speech(level)
        if level >= start_level - self._hold_db:
            self._last_voiced = index
            self._silent = 0
            return
        self._silent += 1
        if self._silent >= self._end_frames:
            self._finish(events, through_sample=(self._last_voiced + 1) * self._frame + self._tail_samples)

    def _track_floor_in_speech(self, level: float) -> None:
        """Let a steady noise (no quiet frame for seconds) raise the floor, so it cannot hold an
        activity open forever; speech always has quieter frames, which keep the floor below it."""
        self._second_min = min(self._second_min, level)
        self._second_frames += 1
        if self._second_frames >= _FRAMES_PER_S:
            if self._second_min > self._floor:
                self._floor += _FLOOR_RISE_IN_SPEECH * (self._second_min - self._floor)
            self._second_min, self._second_frames = level, 0

    def _finish(self, events: list[VadEvent], through_sample: int) -> None:
        end_frame = self._last_voiced + 1
        events.append(VadEvent("end", self._seconds(end_frame)))
        first = max(self._buf_base, self._onset * self._frame - self._pad_samples)
        last = min(self._buf_base + self._buf_len, through_sample)
        retained = np.concatenate(self._buf) if self._buf else np.zeros(0, np.int16)
        self._buf = [retained] if retained.size else []
        self._utterance = retained[first - self._buf_base : last - self._buf_base].tobytes()
        self._in_speech = False
        self._silent = 0
        self._run = 0

    def _trim(self) -> None:
        """Keep only the audio a future utterance can still need."""
        end = self._buf_base + self._buf_len
        if self._in_speech:
            keep_from = max(self._onset * self._frame - self._pad_samples, end - self._max_samples)
        else:
            lookback = (self._run + 1) * self._frame + self._pending.size + self._pad_samples
            keep_from = end - lookback
        while self._buf and self._buf_base + self._buf[0].size <= keep_from:
            dropped = self._buf.pop(0)
            self._buf_base += dropped.size
            self._buf_len -= dropped.size
        if self._buf and keep_from > self._buf_base:
            cut = keep_from - self._buf_base
            self._buf[0] = self._buf[0][cut:]
            self._buf_base += cut
            self._buf_len -= cut

    def _seconds(self, frame_index: int) -> float:
        return frame_index * self._frame / self.sample_rate
