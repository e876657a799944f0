"""Realtime input: audio through the VAD (or between activityStart/activityEnd), video, text, stream end.

Indexing for transparent resumption: a client message is "consumed" once its effect is in the history.
Audio of an utterance that has not ended yet is not consumed: `Listener.pending_since` is the index of
the first message of the open utterance, and `lastConsumedClientMessageIndex` stays below it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import audio, closes
from .closes import SessionClosed
from .model import VIDEO_TOKENS_PER_S
from .vad import Vad, VadConfig
from .wire import RealtimeEvent

if TYPE_CHECKING:
    from .session import Session


class Listener:
    def __init__(self, session: Session) -> None:
        self.session = session
        setup = session.setup
        assert setup is not None
        self.settings = setup.vad
        self.vad: Vad | None = None
        if not self.settings.disabled:
            self.vad = Vad(
                VadConfig(
                    start_sensitivity=self.settings.start_sensitivity,
                    end_sensitivity=self.settings.end_sensitivity,
                    prefix_padding_ms=self.settings.prefix_padding_ms,
                    silence_duration_ms=self.settings.silence_duration_ms,
                ),
                audio.IN_RATE,
            )
        self.manual_active = False
        self.manual_audio: list[bytes] = []
        self.pending_since: int | None = None  # first message index of an utterance in progress
        self.resamplers: dict[int, audio.Resampler] = {}  # streaming, per input rate (no chunk-edge artefacts)
        self.audio_bytes = 0
        self.video_frames = 0
        self.last_video: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return f"Listener(vad={self.vad!r}, manual_active={self.manual_active}, pending={self.pending_since})"

    async def on_event(self, event: RealtimeEvent) -> None:
        gen = self.session.generator
        assert gen is not None
        kind = event.kind
        if kind == "audio":
            if event.rate == audio.IN_RATE:
                pcm = event.data
            else:
                resampler = self.resamplers.get(event.rate)
                if resampler is None:
                    resampler = self.resamplers[event.rate] = audio.Resampler(event.rate, audio.IN_RATE)
                pcm = resampler.process(event.data)
            self.audio_bytes += len(pcm)
            await self._on_audio(pcm)
        elif kind == "video":
            self.video_frames += 1
            self.last_video = (event.mime_type, len(event.data))
            conv = self.session.conv
            assert conv is not None
            if not conv.video_seen:
                conv.video_seen = True
                self.session.limits_changed()
            gen.add_video_tokens(VIDEO_TOKENS_PER_S)
        elif kind == "text":
            if event.text.strip():
                await gen.interrupt_for_activity()
                gen.start_text_turn(event.text)
        elif kind in ("activityStart", "activityEnd"):
            if self.vad is not None:
                if self.session.config.activity_under_vad == "reject":
                    raise SessionClosed.of(closes.NOT_IMPLEMENTED)
                return
            if kind == "activityStart":
                self.manual_active = True
                self.manual_audio = []
                self.pending_since = self.session.index
                await gen.interrupt_for_activity()
            elif self.manual_active:
                await self._on_audio(self._flush_resamplers())
                self.manual_active = False
                pcm = b"".join(self.manual_audio)
                self.manual_audio = []
                self.pending_since = None
                gen.start_audio_turn(pcm)
        elif kind == "audioStreamEnd" and self.vad is not None:
            await self._on_audio(self._flush_resamplers())
            for ev in self.vad.flush():
                await self._vad_event(ev.kind)

    def _flush_resamplers(self) -> bytes:
        return b"".join(r.flush() for r in self.resamplers.values())

    async def _on_audio(self, pcm: bytes) -> None:
        if not pcm:
            return
        if self.vad is None:
            if self.manual_active:
                self.manual_audio.append(pcm)
            return  # audio outside activityStart/End is not part of any turn
        for ev in self.vad.feed(pcm):
            await self._vad_event(ev.kind)

    async def _vad_event(self, kind: str) -> None:
        gen = self.session.generator
        assert gen is not None and self.vad is not None
        if kind == "start":
            self.pending_since = self.session.index
            await gen.interrupt_for_activity()
        else:
            self.pending_since = None
            gen.start_audio_turn(self.vad.take_utterance())

    def consumed_index(self) -> int:
        """lastConsumedClientMessageIndex: everything up to it is in the history (setup = 0)."""
        gen = self.session.generator
        firsts = [i for i in (self.pending_since, gen.unfinished_index() if gen else None) if i is not None]
        return max(0, min(firsts) - 1) if firsts else self.session.index
