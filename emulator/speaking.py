"""Speaking a reply: text chunks, or paced 24 kHz PCM chunks (base64 encoded once per chunk, when first sent,
and cached) with output transcription, plus code-execution parts and grounding metadata."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from . import audio, frames
from .model import AUDIO_TOKENS_PER_S, Reply, text_tokens
from .speech import Synthesizer

if TYPE_CHECKING:
    from .session import Session
    from .turns import Generator

BYTES_PER_S_OUT = audio.OUT_RATE * 2


class Chunks:
    """A reply's audio cut into ``chunk_ms`` pieces. Each piece is base64-encoded when it is first sent, not
    all at the start of the reply: sessions that start replies at the same moment would otherwise spend one
    burst of CPU on whole replies before their first chunk, and every other session's frames wait behind it."""

    __slots__ = ("_pcm", "_step", "_b64", "_left", "durations")

    def __init__(self, pcm: bytes, step: int) -> None:
        self._pcm = pcm
        self._step = step
        n = -(-len(pcm) // step)
        self._b64: list[str | None] = [None] * n
        self._left = n  # chunks not encoded yet; at 0 the PCM is let go (the cache keeps only base64)
        self.durations = [min(step, len(pcm) - i * step) / BYTES_PER_S_OUT for i in range(n)]

    def __len__(self) -> int:
        return len(self._b64)

    def b64(self, i: int) -> str:
        data = self._b64[i]
        if data is None:
            data = self._b64[i] = frames.b64(self._pcm[i * self._step : (i + 1) * self._step])
            self._left -= 1
            if not self._left:
                self._pcm = b""
        return data


class ChunkCache:
    """(text, voice, language, chunk_ms) -> the reply's audio ``Chunks``; shared by all sessions of a server."""

    def __init__(self, synthesizer: Synthesizer, max_entries: int = 512) -> None:
        self.synthesizer = synthesizer
        self._max = max_entries
        self._cache: OrderedDict[tuple[str, str, str, int], Chunks] = OrderedDict()
        self._inflight: dict[tuple[str, str, str, int], asyncio.Task[Chunks]] = {}

    async def chunks(self, text: str, voice: str, language: str | None, chunk_ms: int) -> Chunks:
        key = (text, voice, language or "", chunk_ms)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        task = self._inflight.get(key)
        if task is None:  # one synthesis per reply, shared by every session waiting for it
            task = asyncio.get_running_loop().create_task(self._make(text, voice, language, chunk_ms))
            self._inflight[key] = task
            task.add_done_callback(lambda t, key=key: self._settle(key, t))  # type: ignore[misc]
        return await asyncio.shield(task)

    def _settle(self, key: tuple[str, str, str, int], task: asyncio.Task[Chunks]) -> None:
        self._inflight.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return
        self._cache[key] = task.result()
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)

    async def aclose(self) -> None:
        """Cancels syntheses still running (the cache owns them)."""
        tasks = list(self._inflight.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _make(self, text: str, voice: str, language: str | None, chunk_ms: int) -> Chunks:
        pcm = await self.synthesizer.synthesize(text, voice=voice, language_code=language)
        return Chunks(pcm, max(2, BYTES_PER_S_OUT * chunk_ms // 1000 // 2 * 2))


class Speaker:
    def __init__(self, session: Session, generator: Generator) -> None:
        self.s = session
        self.gen = generator

    async def speak(self, reply: Reply) -> dict[str, int]:
        """Sends the reply's model turn; returns response tokens by modality."""
        setup = self.s.setup
        assert setup is not None
        flavour = self.s.flavour
        first = True
        if reply.code is not None:
            code, output = reply.code
            await self.s.send(frames.model_turn(flavour, [{"executableCode": {"language": "PYTHON", "code": code}}]))
            await self._after_chunk(first)
            first = False
            result = {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": output}}
            await self.s.send(frames.model_turn(flavour, [result]))
        extra = {"groundingMetadata": reply.grounding} if reply.grounding else {}
        if not setup.audio_out:
            size = max(1, self.s.config.text_chunk_chars)
            pieces = [reply.text[i : i + size] for i in range(0, len(reply.text), size)] or [""]
            for n, piece in enumerate(pieces):
                last = n == len(pieces) - 1
                await self.s.send(frames.model_turn(flavour, [frames.text_part(piece)], **(extra if last else {})))
                self.gen.spoken += piece
                await self._after_chunk(first)
                first = False
            return {"TEXT": text_tokens(reply.text)}
        return await self._speak_audio(reply, extra, first)

    async def _speak_audio(self, reply: Reply, extra: dict[str, Any], first: bool) -> dict[str, int]:
        setup, cfg = self.s.setup, self.s.config
        assert setup is not None
        chunks = await self.s.server.chunks.chunks(reply.text, setup.voice, setup.language_code, cfg.audio_chunk_ms)
        durations, count = chunks.durations, len(chunks)
        words = reply.text.split()
        said = 0
        pacing = cfg.pacing
        start = time.monotonic()
        elapsed = 0.0
        interval = cfg.resumption_update_interval_s
        last_update = start
        for n, dur in enumerate(durations):
            if pacing > 0:
                delay = start + elapsed * pacing - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            last = n == count - 1
            part = frames.audio_part(self.s.flavour, chunks.b64(n))
            await self.s.send(frames.model_turn(self.s.flavour, [part], **(extra if last else {})))
            elapsed += dur
            upto = len(words) if last else math.floor(len(words) * (n + 1) / count)
            if upto > said:
                piece = " ".join(words[said:upto])
                piece = piece if said == 0 else " " + piece
                said = upto
                self.gen.spoken += piece
                if setup.output_transcription:
                    await self.s.send(frames.transcription("outputTranscription", piece))
            await self._after_chunk(first)
            first = False
            if interval > 0 and time.monotonic() - last_update >= interval:
                last_update = time.monotonic()
                await self.gen.send_resumption_update(resumable=False)
        if not count and setup.output_transcription and reply.text:
            await self.s.send(frames.transcription("outputTranscription", reply.text))
        return {"AUDIO": math.ceil(sum(durations) * AUDIO_TOKENS_PER_S)}

    async def _after_chunk(self, first: bool) -> None:
        if first:
            await self.s.fault_point("mid_turn")
