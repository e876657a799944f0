"""The chaos soak: many live sessions on a real multi-process stack while processes, connections, the
upstream and the callers themselves fail at random; then the counts that must all be zero.

    python -m bench.soak --sessions 100 --duration-s 300 --faults-each 10 --out docs/benchmarks/soak.json

The stack: one Redis, the emulator (its own process: short connection lifetime, so go_aways happen all
the time), 3 fronts and 3 workers as ``livegate`` processes with a short heartbeat TTL, and an admission
config, so every session holds a real lease. Each session is a caller (:class:`Caller`) on the raw gRPC
API: text callers send numbered turns and check each answer names its own turn; audio callers stream a
spoken question in real time and check the answer. Every caller keeps a resumption handle.

Faults, spread at random over the run (``--faults-each`` of each kind):
worker and front SIGKILL, SIGSTOP past the heartbeat TTL (then SIGCONT), SIGTERM (each killed or stopped
process is replaced, so the fleet keeps its size); Redis connections killed (``CLIENT KILL``); upstream
go_away (natural, from the connection lifetime, counted), 1011 closes and drops injected through the
emulator's admin API; callers that cancel their stream and reattach, and callers that drop their stream and
resume the conversation with their handle.

What it counts, each required to be 0 (``report["zero"]``):
- ``turns_lost``: a turn the caller sent (and the gateway accepted) that the model never saw;
- ``turns_duplicated``: a turn the model saw twice;
- ``messages_missing_after_reattach``: a gap in ``seq`` on a reattached stream;
- ``silent``: a turn with neither an answer nor a status within ``--silent-s``;
- ``wrong_answers``: an answer to another turn (order);
- ``leftover_sessions``, ``leftover_keys``, ``leftover_leases``, ``leftover_upstreams``: what is still there
  after every caller closed and the last grace ran out.
A caller's session that ends with a status (not silently) is not an error by itself: the caller starts a
new session (counted in ``ended_with_status``, by reason).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import signal
import ssl
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2

from bench import common
from bench.common import Proc, Stack, write_json
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc

MODEL = "gemini-live-2.5-flash"
ADMIN_TOKEN = "soak-admin-token"
# a caller's stream breaks when the front stops answering pings (a paused front): it then reattaches elsewhere
CHANNEL_OPTIONS = [("grpc.keepalive_time_ms", 5000), ("grpc.keepalive_timeout_ms", 3000),
                   ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED,
             grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
PROCESS_FAULTS = ("worker_kill", "worker_stop", "worker_term", "front_kill", "front_stop", "front_term")
OTHER_FAULTS = ("redis_kill", "upstream_1011", "upstream_drop", "caller_reattach", "caller_resume")
FAULTS = PROCESS_FAULTS + OTHER_FAULTS


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


class Fleet:
    """The soak's processes: the emulator, fronts and workers that faults kill and replace."""

    def __init__(self, stack: Stack, env: dict[str, Any], fronts: int, workers: int) -> None:
        self.stack = stack
        self.env = env
        self.n_fronts, self.n_workers = fronts, workers
        self.fronts: list[Proc] = []
        self.workers: list[Proc] = []
        self.stopped: set[int] = set()  # pids SIGSTOPped right now (not targets of another fault)

    async def start(self) -> None:
        self.workers = list(await asyncio.gather(*(self.stack.worker(capacity=400, **self.env)
                                                   for _ in range(self.n_workers))))
        self.fronts = list(await asyncio.gather(*(self.stack.front(**self.env) for _ in range(self.n_fronts))))

    def live_fronts(self) -> list[str]:
        return [p.address for p in self.fronts if p.popen.poll() is None and p.pid not in self.stopped] or \
            [p.address for p in self.fronts if p.popen.poll() is None]

    async def replace(self, role: str, victim: Proc) -> None:
        pool = self.fronts if role == "front" else self.workers
        with contextlib.suppress(ValueError):
            pool.remove(victim)
        fresh = await (self.stack.front(**self.env) if role == "front" else self.stack.worker(capacity=400, **self.env))
        pool.append(fresh)

    async def process_fault(self, kind: str, ttl_s: float) -> None:
        role, action = kind.split("_")
        pool = [p for p in (self.fronts if role == "front" else self.workers)
                if p.popen.poll() is None and p.pid not in self.stopped]
        if len(pool) < 2:  # keep one of each role serving
            return
        victim = random.choice(pool)
        if action == "stop":
            self.stopped.add(victim.pid)
            victim.kill(signal.SIGSTOP)
            await asyncio.sleep(ttl_s + 2.0)  # past the heartbeat TTL: the fleet declares it dead
            victim.kill(signal.SIGCONT)
            self.stopped.discard(victim.pid)
            return
        victim.kill(signal.SIGKILL if action == "kill" else signal.SIGTERM)
        deadline = time.monotonic() + 30
        while victim.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await self.replace(role, victim)


class Emulator:
    """The emulator's admin API (fault injection, conversations, live sessions)."""

    def __init__(self, url: str, cert: str) -> None:
        self.url = url
        self.ctx = ssl.create_default_context(cafile=cert)

    def _call(self, method: str, path: str, query: dict[str, Any] | None = None) -> Any:
        q = f"?{urllib.parse.urlencode(query)}" if query else ""
        req = urllib.request.Request(f"{self.url}/emulator/v1/{path}{q}", method=method,
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    async def call(self, method: str, path: str, query: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self._call, method, path, query)

    async def inject(self, **rule: Any) -> bool:
        sessions = (await self.call("GET", "sessions"))["sessions"]
        if not sessions:
            return False
        target = random.choice(sessions)
        await self.call("POST", "faults", {"target": target["session_id"], "when": "immediately", **rule})
        return True


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

async def fault_loop(kinds: list[str], duration_s: float, fleet: Fleet, emu: Emulator, callers: list[Caller],
                     counts: Counts, redis_url: str, ttl_s: float) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(redis_url)
    start = time.monotonic()
    random.shuffle(kinds)
    gap = duration_s / (len(kinds) + 1)
    running: set[asyncio.Task[Any]] = set()
    try:
        for i, kind in enumerate(kinds):
            await asyncio.sleep(max(0.0, start + gap * (i + 1) - time.monotonic()))
            if kind in PROCESS_FAULTS:
                task = asyncio.create_task(fleet.process_fault(kind, ttl_s))
                running.add(task)
                task.add_done_callback(running.discard)
            elif kind == "redis_kill":
                await r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            elif kind == "upstream_1011":
                if not await emu.inject(action="close", close="internal"):
                    continue
            elif kind == "upstream_drop":
                if not await emu.inject(action="drop"):
                    continue
            else:  # a caller's own fault, at its next chance
                random.choice([c for c in callers if c.pending_fault is None] or callers).pending_fault = kind
            counts.faults[kind] += 1
            counts.event("fault", kind)
        await asyncio.gather(*running)
    finally:
        await r.aclose()


async def leftovers(redis_url: str, emu: Emulator, timeout_s: float) -> dict[str, int]:
    """What is still there once every session should be gone (polled up to ``timeout_s``)."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(redis_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            keys = [k.decode() async for k in r.scan_iter("lg:{s-*", count=1000)]
            sessions = {k.split("}")[0] for k in keys}
            leases = 0
            async for k in r.scan_iter("lg:{adm:*}:leases", count=1000):
                leases += int(await r.zcard(k))
            upstreams = len((await emu.call("GET", "sessions"))["sessions"])
            out = {"leftover_sessions": len(sessions), "leftover_keys": len(keys), "leftover_leases": leases,
                   "leftover_upstreams": upstreams}
            if not any(out.values()) or time.monotonic() > deadline:
                return out
            await asyncio.sleep(1.0)
    finally:
        await r.aclose()


async def check_conversations(emu: Emulator, callers: list[Caller], counts: Counts, dump_to: str = "") -> None:
    """Turns lost and duplicated, from what the model remembers (a conversation's history, which a resume
    restores from its handle): each text caller's turns, in order, each once."""
    convs = (await emu.call("GET", "conversations", {"include": "messages"}))["conversations"]
    if dump_to:  # for the diagnosis of a failed run: what the model saw, connection by connection
        with open(os.path.join(dump_to, "conversations.json"), "w") as f:
            json.dump(convs, f)
    seen: dict[str, list[str]] = collections.defaultdict(list)
    for conv in convs:
        for entry in conv.get("history", ()):
            if entry["role"] == "user" and entry["text"].startswith("soak c"):
                seen[entry["text"].split(" turn ")[0].split()[1]].append(entry["text"])
    for c in callers:
        if c.audio:
            continue
        got = collections.Counter(seen.get(c.tag, ()))
        for text in c.sent:
            if got[text] == 0 and text in c.refused:
                counts.turns_refused += 1  # its session ended with a typed status: the caller was told
            elif got[text] == 0:
                counts.turns_lost += 1
            elif got[text] > 1:
                counts.turns_duplicated += got[text] - 1


async def soak(sessions: int, duration_s: float, faults_each: int, *, audio_share: float = 0.2,
               silent_s: float = 40.0, grace_s: float = 8.0, ttl_s: float = 4.0, log_level: str = "WARNING",
               log: Any = print) -> dict[str, Any]:
    from emulator.transcribe import encode_text_tones

    stack = Stack()
    counts = Counts()
    t0 = time.monotonic()
    try:
        redis_url = stack.start_redis()
        emu_proc = await stack._spawn("emulator", [
            sys.executable, "-m", "emulator", "--port", "0", "--admin-token", ADMIN_TOKEN, "--pacing", "0",
            "--transcribe-engine", "convention", "--connection-lifetime-s", "20", "--go-away-lead-s", "5",
            "--max-closed-conversations", "100000", "--log-level", "WARNING",
            "--cert-dir", os.path.join(stack.tmp, "cert")], r"listening on ((?P<addr>\S+))")
        cert = os.path.join(stack.tmp, "cert", "emulator-cert.pem")
        stack.emulator = common.Emulator(emu_proc, emu_proc.address, cert, "")
        emu = Emulator(emu_proc.address, cert)
        admission = os.path.join(stack.tmp, "admission.json")
        with open(admission, "w") as f:
            json.dump({"scopes": {f"default/{MODEL}": {"cap": sessions * 3}}}, f)
        env = {"heartbeat_interval_s": ttl_s / 4,
               "heartbeat_ttl_s": ttl_s, "admission_file": admission, "setup_timeout_s": 20,
               "log_level": log_level}
        fleet = Fleet(stack, env, fronts=3, workers=3)
        await fleet.start()
        pcm = b"\x00\x00" * 3200 + encode_text_tones("what is two plus two")
        callers = [Caller(i, fleet, counts, audio=i < sessions * audio_share, silent_s=silent_s, grace_s=grace_s,
                          question_pcm=pcm) for i in range(sessions)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(c.run(stop), name=c.tag) for c in callers]
        log(f"soak: {sessions} sessions on 3 fronts and 3 workers for {duration_s:.0f}s, "
            f"{faults_each} of each of {len(FAULTS)} faults")
        kinds = [k for k in FAULTS for _ in range(faults_each)]
        await fault_loop(kinds, duration_s, fleet, emu, callers, counts, redis_url, ttl_s)
        await asyncio.sleep(max(0.0, t0 + duration_s - time.monotonic()))
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        crashed = [f"{c.tag}: {r!r}" for c, r in zip(callers, results) if isinstance(r, BaseException)]
        log("soak: callers closed; waiting for the last grace")
        await asyncio.sleep(grace_s)
        left = await leftovers(redis_url, emu, timeout_s=grace_s + 30)
        await check_conversations(emu, callers, counts, dump_to=stack.tmp)
        convs = (await emu.call("GET", "conversations"))["conversations"]
        go_aways = sum(c["go_aways"] for c in convs)
    finally:
        await stack.aclose()
    zero = {"turns_lost": counts.turns_lost, "turns_duplicated": counts.turns_duplicated,
            "messages_missing_after_reattach": counts.messages_missing_after_reattach, "silent": counts.silent,
            "wrong_answers": counts.wrong_answers, "callers_crashed": len(crashed), **left}
    return {
        "sessions": sessions, "duration_s": round(time.monotonic() - t0, 1), "zero": zero, "logs": stack.tmp,
        "ok": not any(zero.values()),
        "faults": dict(counts.faults, upstream_go_away=go_aways),
        "turns_sent": counts.turns_sent, "turns_answered": counts.turns_answered,
        "turns_refused_with_status": counts.turns_refused, "answers_repeated": counts.answers_repeated,
        "reattaches": counts.reattaches, "resumes": counts.resumes,
        "resent_after_reattach": counts.resent_after_reattach,
        "ended_with_status": dict(counts.ended_with_status), "crashed": crashed[:20],
        "events": [e for e in counts.events if " sent on " not in e[2]][-3000:],  # all but one line per turn
    }


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--duration-s", type=float, default=300.0)
    p.add_argument("--faults-each", type=int, default=10)
    p.add_argument("--silent-s", type=float, default=40.0)
    p.add_argument("--log-level", default="WARNING", help="of the fronts and workers (their logs stay in the "
                   "directory the report names)")
    p.add_argument("--out", default="")
    args = p.parse_args()
    report = asyncio.run(soak(args.sessions, args.duration_s, args.faults_each, silent_s=args.silent_s,
                                log_level=args.log_level))
    events = report.pop("events")
    print(json.dumps(report, indent=2))
    for at, who, what in events:
        print(f"{at:8.2f}s {who:6} {what}")
    report["events"] = events
    if args.out:
        write_json(Path(args.out), report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
