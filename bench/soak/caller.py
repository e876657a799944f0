"""One soak caller (:class:`Caller`): a conversation on the raw gRPC API kept across reattaches and
resumptions, checked turn by turn, and the counts every caller adds to (:class:`Counts`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import duration_pb2

from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc

if TYPE_CHECKING:
    from bench.soak.faults import Fleet

MODEL = "gemini-live-2.5-flash"
# a caller's stream breaks when the front stops answering pings (a paused front): it then reattaches elsewhere
CHANNEL_OPTIONS = [("grpc.keepalive_time_ms", 5000), ("grpc.keepalive_timeout_ms", 3000),
                   ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED,
             grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


@dataclass
class Counts:
    turns_sent: int = 0
    turns_answered: int = 0
    turns_lost: int = 0
    turns_duplicated: int = 0
    turns_refused: int = 0  # not answered because their session ended with a typed status (not an error here)
    answers_repeated: int = 0  # an earlier turn's answer delivered again after a crash (at least once, documented)
    messages_missing_after_reattach: int = 0
    silent: int = 0
    wrong_answers: int = 0
    reattaches: int = 0
    resumes: int = 0
    resent_after_reattach: int = 0
    ended_with_status: collections.Counter[str] = field(default_factory=collections.Counter)
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (time, who, what), for the report
    t0: float = field(default_factory=time.monotonic)

    def event(self, who: str, what: str) -> None:
        self.events.append((round(time.monotonic() - self.t0, 2), who, what))


class StreamBroken(Exception):
    """The caller's stream ended without the session's end: reattach (or resume) and go on."""


class Caller:
    """One caller: a conversation kept across reattaches and resumptions, checked turn by turn."""

    def __init__(self, n: int, fleet: Fleet, counts: Counts, *, audio: bool, silent_s: float, grace_s: float,
                 question_pcm: bytes) -> None:
        self.tag = f"c{n:03d}"
        self.fleet, self.counts, self.audio = fleet, counts, audio
        self.silent_s, self.grace_s = silent_s, grace_s
        self.question_pcm = question_pcm
        self.sent: list[str] = []  # the turns the gateway accepted or may have (text callers), in order
        self.refused: set[str] = set()  # turns whose session ended with a status before their answer
        self.current = ""
        self.pending_fault: str | None = None
        self.channel: grpc.aio.Channel | None = None
        self.call: Any = None
        self.info: gw.SessionInfo | None = None
        self.last_seq = 0
        self.index = 0  # client messages sent on this session (the gateway counts the same)
        self.unconfirmed: list[gw.ClientMessage] = []  # sent since the last reattach's client_index
        self.handle = ""
        self.handle_seq = 0
        self.turn_end_seq = 0
        self.conversations: set[str] = set()

    # -- streams --------------------------------------------------------------------------------------

    async def _open_channel(self) -> Any:
        if self.channel is not None:
            await self.channel.close(None)
        self.channel = grpc.aio.insecure_channel(random.choice(self.fleet.live_fronts()), options=CHANNEL_OPTIONS)
        return gateway_pb2_grpc.LiveGatewayStub(self.channel)

    def _setup(self) -> gw.ClientMessage:
        m = gw.ClientMessage()
        m.setup.model = MODEL
        m.setup.generation_config.response_modalities.append(1)  # TEXT
        m.setup.session_resumption.SetInParent()
        if self.handle:
            m.setup.session_resumption.handle = self.handle
        if self.audio:
            m.setup.input_audio_transcription.SetInParent()
        m.options.reattach_grace.CopyFrom(duration_pb2.Duration(seconds=int(self.grace_s)))
        return m

    async def start(self) -> None:
        """A new session (or the conversation resumed with its handle), retried while fronts come and go."""
        deadline = time.monotonic() + 60
        while True:
            stub = await self._open_channel()
            self.call = stub.Connect()
            try:
                await self.call.write(self._setup())
                first = await self._read(self.silent_s)
                if first.WhichOneof("message") != "session":
                    raise RuntimeError(f"{self.tag}: first message {first}")
                self.info = first.session
                self.last_seq, self.index, self.unconfirmed = 0, 0, []
                self.turn_end_seq = self.handle_seq = 0
                await self._read_until(lambda m: m.WhichOneof("message") == "setup_complete")
                return
            except (grpc.aio.AioRpcError, StreamBroken) as err:
                self.call.cancel()
                code = err.code() if isinstance(err, grpc.aio.AioRpcError) else grpc.StatusCode.UNAVAILABLE
                if code == grpc.StatusCode.NOT_FOUND and self.handle:  # the handle expired meanwhile: start afresh
                    self.handle = ""
                elif code not in RETRYABLE and code != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def reattach(self) -> None:
        assert self.info is not None
        deadline = time.monotonic() + max(self.grace_s, 10)
        while True:
            stub = await self._open_channel()
            self.call = stub.Connect()
            try:
                await self.call.write(gw.ClientMessage(reattach=gw.Reattach(
                    session_id=self.info.session_id, reattach_token=self.info.reattach_token, last_seq=self.last_seq)))
                first = await self._read(self.silent_s)
                break
            except (grpc.aio.AioRpcError, StreamBroken) as err:
                self.call.cancel()
                code = err.code() if isinstance(err, grpc.aio.AioRpcError) else grpc.StatusCode.UNAVAILABLE
                if code not in RETRYABLE or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
        self.counts.reattaches += 1
        self.counts.event(self.tag, f"reattached to {self.info.session_id} at seq {self.last_seq}, accepted "
                                    f"{first.session.client_index} of {self.index}")
        # resend what the broken stream lost: the messages after the count the gateway accepted
        accepted = first.session.client_index
        lost = self.unconfirmed[len(self.unconfirmed) - (self.index - accepted):] if self.index > accepted else []
        self.unconfirmed, self.index = [], accepted
        for m in lost:
            self.counts.resent_after_reattach += 1
            await self._write(m)

    async def _write(self, m: gw.ClientMessage) -> None:
        self.index += 1
        self.unconfirmed.append(m)
        del self.unconfirmed[:-64]
        try:
            await self.call.write(m)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as err:
            raise StreamBroken(str(err)) from None

    async def _read(self, timeout_s: float) -> gw.ServerMessage:
        try:
            async with asyncio.timeout(timeout_s):
                m = await self.call.read()
        except TimeoutError:
            raise StreamBroken("no message within the silence bound") from None
        if m is grpc.aio.EOF:
            raise StreamBroken("the stream ended without a status")
        if m.seq:
            if self.last_seq and m.seq != self.last_seq + 1:
                self.counts.messages_missing_after_reattach += max(0, m.seq - self.last_seq - 1)
            self.last_seq = max(self.last_seq, m.seq)
        kind = m.WhichOneof("message")
        if kind == "session_resumption_update" and m.session_resumption_update.new_handle:
            self.handle = m.session_resumption_update.new_handle
            self.handle_seq = m.seq
        elif kind == "drain":
            raise StreamBroken("front draining")
        return m

    async def _read_until(self, pred: Any) -> list[gw.ServerMessage]:
        out = []
        while True:
            m = await self._read(self.silent_s)
            out.append(m)
            if pred(m):
                return out

    # -- turns ----------------------------------------------------------------------------------------

    async def turn(self, k: int) -> None:
        """Send turn ``k`` and read its answer, across any number of broken streams."""
        text = f"soak {self.tag} turn {k}"
        if self.audio:
            msgs = [_audio_msg(self.question_pcm[i:i + 3200]) for i in range(0, len(self.question_pcm), 3200)]
            msgs.append(_audio_msg(b"\x00\x00" * 16000))  # a second of silence ends the utterance
        else:
            msgs = [_text_msg(text)]
            self.sent.append(text)
        self.counts.turns_sent += 1
        self.counts.event(self.tag, f"turn {k} sent on {self.info.session_id if self.info else '?'}")
        started = time.monotonic()
        sent = 0
        self.current = text
        while True:
            try:
                while sent < len(msgs):
                    sent += 1  # handed over: if the write breaks, the reattach's resend owns it
                    await self._write(msgs[sent - 1])
                    if self.audio:
                        await asyncio.sleep(0.1)  # real time: 100 ms of audio per message
                    if self.pending_fault == "caller_reattach" and sent == len(msgs):
                        self.pending_fault = None
                        raise StreamBroken("the caller cancels its stream mid-turn")
                got = await self._read_until(lambda m: m.server_content.turn_complete)
                answer = "".join(p.text for m in got for p in m.server_content.model_turn.parts)
                while not self.audio and (repeat := re.search(rf"soak {self.tag} turn (\d+)\b", answer)) \
                        and int(repeat.group(1)) < k:
                    # an earlier turn answered again: a worker died after that turn's answer and before a
                    # resumption handle covered it, and its successor resumed before it (at least once, as
                    # docs/durability.md says of a turn in flight at a crash): the caller skips it
                    self.counts.answers_repeated += 1
                    self.counts.event(self.tag, f"turn {k}: turn {repeat.group(1)} answered again")
                    got = await self._read_until(lambda m: m.server_content.turn_complete)
                    answer = "".join(p.text for m in got for p in m.server_content.model_turn.parts)
                self.turn_end_seq = got[-1].seq
                expected = "two plus two" if self.audio else text
                if expected not in answer:
                    self.counts.wrong_answers += 1
                    self.counts.event(self.tag, f"turn {k}: WRONG answer {answer[:200]!r}, expected {expected!r}")
                self.counts.turns_answered += 1
                return
            except StreamBroken as err:
                self.counts.event(self.tag, f"turn {k}: {err}")
                if time.monotonic() - started > self.silent_s:
                    self.counts.silent += 1
                    self.counts.event(self.tag, f"turn {k}: SILENT for {time.monotonic() - started:.1f}s "
                                                f"(session {self.info.session_id if self.info else '?'})")
                    raise
                self.call.cancel()
                await self.reattach()  # resends what the broken stream lost; the rest of the turn follows
            except grpc.aio.AioRpcError as err:
                self.counts.event(self.tag, f"turn {k}: {err.code().name} {err.details()[:120]}")
                if err.code() in RETRYABLE and time.monotonic() - started < self.silent_s:
                    await self.reattach()  # the stream broke again (its new front died too, say): again
                    continue
                raise

    async def resume_with_handle(self) -> bool:
        """Drop the stream without a word and resume the conversation with the latest handle (the Live
        API's own resumption flow), once the handle covers the last answered turn."""
        with contextlib.suppress(StreamBroken):  # the update follows the turn's end: read it (bounded)
            while self.handle_seq < self.turn_end_seq:
                await self._read(3.0)
        if not self.handle or self.handle_seq < self.turn_end_seq:
            return False
        self.call.cancel()  # abnormal end: the old session is detached for its grace, upstream still open
        self.counts.resumes += 1
        await self.start()
        return True

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.call.done_writing()
            async with asyncio.timeout(15):
                while await self.call.read() is not grpc.aio.EOF:
                    pass
        self.call.cancel()
        if self.channel is not None:
            await self.channel.close(None)

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        k = 0
        while not stop.is_set():
            k += 1
            try:
                if self.pending_fault == "caller_resume" and await self.resume_with_handle():
                    self.pending_fault = None
                await self.turn(k)
            except (grpc.aio.AioRpcError, StreamBroken) as err:
                reason = _reason(err)
                self.counts.ended_with_status[reason] += 1
                if isinstance(err, grpc.aio.AioRpcError) and self.current:
                    self.refused.add(self.current)  # ended with a status: refused, not lost silently
                self.counts.event(self.tag, f"session ended: {err!r:.300}")
                with contextlib.suppress(Exception):
                    self.call.cancel()
                self.handle = "" if reason in ("HANDLE_NOT_FOUND",) else self.handle
                if stop.is_set():
                    return
                await self.start()
            await asyncio.sleep(random.uniform(0.5, 2.0))
        await self.close()


def _text_msg(text: str) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.client_content.turns.add(role="user").parts.add(text=text)
    m.client_content.turn_complete = True
    return m


def _audio_msg(pcm: bytes) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.realtime_input.audio.mime_type = "audio/pcm;rate=16000"
    m.realtime_input.audio.data = pcm
    return m


def _reason(err: BaseException) -> str:
    if isinstance(err, grpc.aio.AioRpcError):
        m = re.match(r"([A-Z_]+):", err.details() or "")
        return f"{err.code().name} {m.group(1) if m else ''}".strip()
    return type(err).__name__


# -- the run ------------------------------------------------------------------------------------------
