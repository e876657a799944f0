"""Model turns: one worker task per session generating replies, tool calls, interruptions, usage,
context-window compression and resumption updates."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import zlib
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from . import audio, frames
from . import model as mdl
from .closes import SessionClosed
from .model import AUDIO_TOKENS_PER_S, Entry, Reply, text_tokens
from .setup import validate_tools
from .speaking import Speaker
from .tools import Declaration, Toolbox, call_id
from .wire import ClientContent, ContextUpdate, FunctionResponse, invalid

if TYPE_CHECKING:
    from .session import Session

logger = logging.getLogger(__name__)


@dataclass
class TurnRequest:
    text: str = ""
    pcm: bytes | None = None  # an utterance (16 kHz) to transcribe first
    tool_results: list[tuple[str, Any]] | None = None  # a reply to NON_BLOCKING results
    prior_len: int | None = None  # history length before this turn's user entries (clientContent)
    index: int = 0  # the client message that asked for this turn


class Generator:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.setup = session.setup
        self.conv = session.conv
        assert self.setup is not None and self.conv is not None
        self.flavour = session.flavour
        self.toolbox = Toolbox.from_tools(self.setup.tools)
        self.system_instruction = self.setup.system_instruction
        self.rng = random.Random(zlib.crc32(session.id.encode()))
        self.queue: deque[TurnRequest] = deque()
        self.task: asyncio.Task[None] | None = None
        self.pending_blocking: dict[str, Declaration] = {}
        self.blocking_results: list[tuple[str, Any]] = []
        self.blocking_done = asyncio.Event()
        self.nonblocking: dict[str, Declaration] = {}
        self.idle_results: list[tuple[str, Any]] = []
        self.in_initial_history = self.setup.initial_history
        self.video_tokens = 0
        self.speaker = Speaker(session, self)
        self.spoken = ""  # what the current turn has sent so far (kept in history on interruption)
        self.running_index: int | None = None  # message index of the turn being generated
        self.in_turn = False  # between the start of a turn and its turnComplete

    def __repr__(self) -> str:
        busy = self.task is not None and not self.task.done()
        return f"Generator(busy={busy}, queued={len(self.queue)}, pending_calls={list(self.pending_blocking)})"

    @property
    def history(self) -> list[Entry]:
        assert self.conv is not None
        return self.conv.history

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    async def aclose(self) -> None:
        if self.busy:
            assert self.task is not None
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    # --- input --------------------------------------------------------------------------------

    async def on_client_content(self, content: ClientContent) -> None:
        await self.interrupt()  # a clientContent message interrupts current generation
        prior = len(self.history)
        for turn in content.turns:
            if turn.role == "system":
                if self.s.config.system_role == "reject":
                    raise invalid("role system")
                self.system_instruction = turn.text
                continue
            if turn.role not in ("user", "model"):
                raise invalid(f"role {turn.role!r}")
            extra = sum(len(p.data) for p in turn.parts if p.mime_type.startswith("audio/"))
            tokens = text_tokens(turn.text) + math.ceil(extra / 32000 * AUDIO_TOKENS_PER_S)
            self.history.append(Entry.of_text(turn.role, turn.text, tokens=tokens))
        if self.in_initial_history:
            if content.turn_complete:
                self.in_initial_history = False
            return
        if content.turn_complete:
            text = " ".join(t.text for t in content.turns if t.role == "user" and t.text)
            self._enqueue(TurnRequest(text=text, prior_len=prior))

    def start_text_turn(self, text: str) -> None:
        self._enqueue(TurnRequest(text=text))

    def start_audio_turn(self, pcm: bytes) -> None:
        self._enqueue(TurnRequest(pcm=pcm))

    def add_video_tokens(self, n: int) -> None:
        self.video_tokens += n

    async def interrupt_for_activity(self) -> None:
        assert self.setup is not None
        if self.setup.vad.interrupts:
            await self.interrupt()

    async def on_tool_response(self, responses: list[FunctionResponse]) -> None:
        deferred: list[tuple[str, Any]] = []
        interrupting: list[tuple[str, Any]] = []
        for fr in responses:
            call_key = fr.id or next((k for k, d in self.pending_blocking.items() if d.name == fr.name), "")
            name = fr.name or (self.pending_blocking.get(call_key) or self.nonblocking.get(call_key) or _NO).name
            self.history.append(Entry.of_text("tool", f"{name} returned {orjson.dumps(fr.response).decode()}"))
            if call_key in self.pending_blocking:
                del self.pending_blocking[call_key]
                self.blocking_results.append((name, fr.response))
            elif call_key in self.nonblocking:
                del self.nonblocking[call_key]
                scheduling = fr.scheduling or "WHEN_IDLE"
                if scheduling == "INTERRUPT":
                    interrupting.append((name, fr.response))
                elif scheduling != "SILENT":
                    deferred.append((name, fr.response))
        if not self.pending_blocking:
            self.blocking_done.set()
        if interrupting:
            await self.interrupt()
            self._enqueue(TurnRequest(tool_results=interrupting))
        if deferred:
            if self.busy:
                self.idle_results.extend(deferred)
            else:
                self._enqueue(TurnRequest(tool_results=deferred))

    def on_context_update(self, update: ContextUpdate) -> None:
        if update.system_instruction is not None:
            self.system_instruction = update.system_instruction
        if update.tools is not None:
            self.toolbox = Toolbox.from_tools(validate_tools(update.tools, self.flavour))

    # --- the worker ---------------------------------------------------------------------------

    def _enqueue(self, request: TurnRequest) -> None:
        request.index = self.s.index
        self.queue.append(request)
        if not self.busy:
            self.task = asyncio.get_running_loop().create_task(self._worker(), name=f"turns {self.s.id[:8]}")

    async def _worker(self) -> None:
        try:
            while self.queue or self.idle_results:
                if self.queue:
                    request = self.queue.popleft()
                else:
                    request = TurnRequest(tool_results=self.idle_results, index=self.s.index)
                    self.idle_results = []
                self.running_index = request.index
                self.in_turn = True
                try:
                    await self._run_turn(request)
                finally:
                    self.running_index = None
                    self.in_turn = False
        except SessionClosed as exc:
            await self.s.close(exc.code, exc.reason)
        except Exception as exc:  # ConnectionClosed, transport gone
            if not self.s.closing and type(exc).__name__ not in ("ConnectionClosedOK", "ConnectionClosedError"):
                logger.exception("session %s: turn failed", self.s.id[:8])

    async def interrupt(self) -> None:
        """Barge-in: stop the turn, `interrupted`, `toolCallCancellation` for pending calls, `turnComplete`.
        Nothing to interrupt once the turn's turnComplete went out (the worker is only sending updates)."""
        if not self.busy or not self.in_turn:
            return
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.task = None
        if self.spoken:
            self.history.append(Entry.of_text("model", self.spoken))
            self.spoken = ""
        ids = list(self.pending_blocking)
        self.pending_blocking.clear()
        await self.s.send(frames.server_content(interrupted=True))
        if ids:
            await self.s.send(frames.tool_call_cancellation(ids))
        await self.s.send(frames.turn_complete(self.flavour, self._usage({})))
        if self.queue or self.idle_results:
            self.task = asyncio.get_running_loop().create_task(self._worker(), name=f"turns {self.s.id[:8]}")

    async def _run_turn(self, req: TurnRequest) -> None:
        assert self.setup is not None and self.conv is not None
        self.spoken = ""
        prior = len(self.history) if req.prior_len is None else req.prior_len
        text, audio_s = req.text, 0.0
        if req.pcm is not None:
            audio_s = audio.duration_s(req.pcm, audio.IN_RATE)
            text = await self.s.server.transcriber.transcribe(req.pcm) if req.pcm else ""
            if self.setup.input_transcription and text:
                await self.s.send(frames.transcription("inputTranscription", text, finished=True))
            self.history.append(
                Entry.of_text("user", text, "AUDIO", tokens=math.ceil(audio_s * AUDIO_TOKENS_PER_S))
            )
        elif req.tool_results is None and req.prior_len is None:
            self.history.append(Entry.of_text("user", text))
        if self.video_tokens:
            self.history.append(Entry("user", "", "VIDEO", self.video_tokens))
            self.video_tokens = 0
        prompt = self._prompt_tokens()
        if req.tool_results is not None:
            reply = mdl.tool_result_reply(req.tool_results)
        else:
            ctx = mdl.Context(
                text=text,
                history=self.history[:prior],
                system_instruction=self.system_instruction,
                toolbox=self.toolbox,
                memory=self.s.server.memory,
                audio_s=audio_s,
                proactive=self.setup.proactive_audio,
                affective=self.setup.affective_dialog,
                video_frames=self.s.listener.video_frames if self.s.listener else 0,
                last_video=self.s.listener.last_video if self.s.listener else None,
            )
            reply = mdl.reply(ctx)
        self._store_context(text if req.tool_results is None else "")
        if reply.silent:
            self.in_turn = False
            await self.s.send(frames.turn_complete(self.flavour, self._usage_of(prompt, {})))
            await self._after_turn()
            return
        if reply.calls:
            reply = await self._call_tools(reply)
        response = await self.speaker.speak(reply)
        self.history.append(Entry.of_text("model", self.spoken or reply.text, tokens=sum(response.values())))
        self.spoken = ""
        await self.s.send(frames.server_content(generationComplete=True))
        self.in_turn = False
        await self.s.send(frames.turn_complete(self.flavour, self._usage_of(prompt, response)))
        await self._after_turn()

    async def _call_tools(self, reply: Reply) -> Reply:
        calls, blocking = [], []
        for decl, args in reply.calls:
            cid = call_id(self.flavour, self.rng)
            calls.append({"id": cid, "name": decl.name, "args": args})
            if decl.blocking:
                self.pending_blocking[cid] = decl
                blocking.append(decl.name)
            else:
                self.nonblocking[cid] = decl
            self.history.append(Entry.of_text("model", f"[call {decl.name} {orjson.dumps(args).decode()}]"))
        self.blocking_results = []
        self.blocking_done.clear()
        await self.s.send(frames.tool_call(calls))
        await self.send_resumption_update(resumable=False)
        if not blocking:
            names = ", ".join(d.name for d, _ in reply.calls)
            return Reply(f"I started {names} in the background.")
        if self.pending_blocking:
            await self.blocking_done.wait()
        return mdl.tool_result_reply(self.blocking_results)

    def unfinished_index(self) -> int | None:
        """The lowest client message index whose turn is queued or running (not yet consumed)."""
        indexes = [r.index for r in self.queue]
        if self.running_index is not None:
            indexes.append(self.running_index)
        return min(indexes) if indexes else None

    async def _after_turn(self) -> None:
        self.running_index = None
        self._compress()
        await self.send_resumption_update(resumable=True)

    # --- accounting ---------------------------------------------------------------------------

    def _prompt_tokens(self) -> dict[str, int]:
        out = {"TEXT": text_tokens(self.system_instruction), "AUDIO": 0, "VIDEO": 0}
        for e in self.history:
            out[e.modality] = out.get(e.modality, 0) + e.tokens
        return out

    def _usage_of(self, prompt: dict[str, int], response: dict[str, int]) -> dict[str, Any]:
        return frames.usage(self.flavour, prompt, response)

    def _usage(self, response: dict[str, int]) -> dict[str, Any]:
        return frames.usage(self.flavour, self._prompt_tokens(), response)

    def context_tokens(self) -> int:
        return sum(self._prompt_tokens().values())

    def _compress(self) -> None:
        assert self.setup is not None
        cfg = self.s.config
        window = cfg.native_audio_context_window_tokens if self.setup.native_audio else cfg.context_window_tokens
        total = self.context_tokens()
        if not self.setup.compression:
            if total > window:
                raise invalid("context window exhausted")
            return
        trigger = self.setup.trigger_tokens or int(window * 0.8)
        target = self.setup.target_tokens or trigger // 2
        if total <= trigger:
            return
        history = self.history
        last_user = max((i for i, e in enumerate(history) if e.role == "user"), default=len(history))
        dropped = 0
        while dropped < last_user and total > target:  # whole oldest turns; the latest one stays
            total -= history[dropped].tokens
            dropped += 1
        while dropped < last_user and history[dropped].role != "user":  # restart at a user turn
            total -= history[dropped].tokens
            dropped += 1
        del history[:dropped]
        logger.info("session %s: context compressed to %d tokens", self.s.id[:8], total)

    def _store_context(self, text: str) -> None:
        if self.toolbox.store_context and text:
            for corpus in self.toolbox.rag_corpora:
                self.s.server.memory.store(corpus, text)

    # --- resumption ---------------------------------------------------------------------------

    async def send_resumption_update(self, *, resumable: bool) -> None:
        setup, conv, listener = self.setup, self.conv, self.s.listener
        if setup is None or conv is None or listener is None or not setup.resumption:
            return
        consumed = listener.consumed_index()
        if resumable and not self.pending_blocking:
            # the snapshot holds what is consumed: a queued clientContent turn's user entry, already in the
            # history, is not (a resume gets it again from the client, after lastConsumedClientMessageIndex)
            queued = [r.prior_len for r in self.queue if r.prior_len is not None]
            handle = self.s.server.handles.issue(conv, consumed, min(queued) if queued else None)
            frame = frames.resumption_update(handle, True, consumed if setup.transparent else None)
        else:
            frame = frames.resumption_update("", False, consumed if setup.transparent else None)
        await self.s.send(frame)


class _NoDecl:
    name = ""


_NO: Any = _NoDecl()
