"""The scripted conversation, spoken either directly to the emulator (WebSocket, Live JSON) or through
livegate (gRPC, protos), with the same pacing and the same bookkeeping:

1. setup (AUDIO out, automatic VAD off so input audio is relayed but costs the emulator no VAD, one
   function ``get_weather``) -> time to ``setup_complete``;
2. realtime audio in: 640 B frames (20 ms of 16 kHz s16) at 50/s for the whole session;
3. turn 1: "What is the weather in bsN?" -> ``toolCall`` -> ``toolResponse`` -> spoken reply;
   turns 2..: "say: bsN turn K ..." -> ~3 s of 24 kHz audio in 20 ms chunks (960 B, 50/s), back to back.

Every client message's send time is kept by index (the emulator logs its arrival by the same index), and
every server frame's arrival by (tag = text of the turn, kind, n-th of that kind in the turn), the key the
emulator stamps its sends with (bench/emu.py). Latencies are wall-clock differences on one host clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import duration_pb2

# imported here, not at the first session: google-genai's import (~0.4 s) would count as the first setup time
from livegate.client import build_setup

MODEL = "gemini-live-2.5-flash"
OPEN_TIMEOUT_S = 40.0  # connect + setup_complete, bounded even when the gateway is overloaded
FRAME_IN = b"\x00\x01" * 320  # 640 B: 20 ms of 16 kHz s16le (near-silence, VAD is off anyway)
FRAME_IN_B64 = base64.b64encode(FRAME_IN).decode()
FILLER = "the quick brown fox jumps over the lazy dog"
TOOL = {"function_declarations": [{"name": "get_weather", "description": "Weather in a city",
                                   "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}


def turn_text(key: str, k: int) -> str:
    return f"What is the weather in {key}?" if k == 1 else f"say: {key} turn {k} {FILLER}"


@dataclass
class SessionResult:
    key: str
    setup_s: float | None = None
    sent: dict[int, float] = field(default_factory=dict)  # client message index -> send time
    recv: dict[tuple[str, str, int], float] = field(default_factory=dict)  # (tag, kind, n) -> arrival
    turns: list[dict[str, Any]] = field(default_factory=list)  # per turn: sent, first audio, renewed
    renewals: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    end: float = 0.0


# -- transports ---------------------------------------------------------------------------------------------

class Direct:
    """Raw Live API over the emulator's WebSocket (what a service would do without livegate)."""

    def __init__(self, ws_url: str, ssl_ctx: Any) -> None:
        self.url = ws_url + "?key=bench-key"
        self.ssl = ssl_ctx
        self.ws: Any = None

    async def open(self) -> None:
        import websockets

        self.ws = await websockets.connect(self.url, ssl=self.ssl, compression=None, max_size=16 * 2**20,
                                           ping_interval=None)
        setup = {"model": f"models/{MODEL}", "generationConfig": {"responseModalities": ["AUDIO"]},
                 "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
                 "tools": [{"functionDeclarations": TOOL["function_declarations"]}]}
        await self.ws.send(orjson.dumps({"setup": setup}))
        while True:
            msg = orjson.loads(await self.ws.recv())
            if "setupComplete" in msg:
                return

    async def send_audio(self) -> None:
        await self.ws.send(orjson.dumps({"realtimeInput": {"audio": {"data": FRAME_IN_B64,
                                                                     "mimeType": "audio/pcm;rate=16000"}}}))

    async def send_turn(self, text: str) -> None:
        await self.ws.send(orjson.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}],
                                                           "turnComplete": True}}))

    async def send_tool_response(self, calls: list[tuple[str, str]]) -> None:
        await self.ws.send(orjson.dumps({"toolResponse": {"functionResponses": [
            {"id": i, "name": n, "response": {"temperature_c": 21}} for i, n in calls]}}))

    async def events(self) -> Any:
        """Yields (kind, arrival time, extra)."""
        async for raw in self.ws:
            t = time.time()
            msg = orjson.loads(raw)
            sc = msg.get("serverContent")
            if sc is not None:
                turn = sc.get("modelTurn")
                if turn is not None:
                    parts = turn.get("parts") or ()
                    if parts and "inlineData" in parts[0]:
                        base64.b64decode(parts[0]["inlineData"]["data"])  # a real caller decodes the audio
                        yield "audio", t, None
                    elif parts and "text" in parts[0]:
                        yield "text", t, None
                elif sc.get("turnComplete"):
                    yield "turn_complete", t, None
            elif "toolCall" in msg:
                yield "tool_call", t, [(c.get("id", ""), c["name"]) for c in msg["toolCall"]["functionCalls"]]

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)


class Gateway:
    """The same conversation through livegate's gRPC API (raw protos: no google-genai conversion)."""

    def __init__(self, stub: Any, *, upstream_events: bool = False, grace_s: float = 0.0,
                 modality: str = "AUDIO") -> None:
        self.stub = stub
        self.modality = modality
        self.grace_s = grace_s
        self.call: Any = None
        self.upstream_events = upstream_events
        self.session_id = ""
        self.token = ""
        self.last_seq = 0
        from livegate.v1 import gateway_pb2 as gw

        self.gw = gw
        audio = gw.ClientMessage()
        audio.realtime_input.audio.data = FRAME_IN
        audio.realtime_input.audio.mime_type = "audio/pcm;rate=16000"
        self._audio = audio

    def setup_message(self) -> Any:
        gw = self.gw
        first = gw.ClientMessage(setup=build_setup(MODEL, {
            "response_modalities": [self.modality],
            "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
            "tools": [TOOL]}))
        first.options.upstream_events = self.upstream_events
        first.options.reattach_grace.CopyFrom(duration_pb2.Duration(seconds=int(self.grace_s),
                                                                      nanos=int(self.grace_s % 1 * 1e9)))
        return first

    async def open(self) -> None:
        import grpc

        self.call = self.stub.Connect()
        await self.call.write(self.setup_message())
        while True:
            m = await self.call.read()
            if m is grpc.aio.EOF:
                raise RuntimeError("stream ended before setup_complete")
            if m.seq:
                self.last_seq = m.seq
            which = m.WhichOneof("message")
            if which == "session":
                self.session_id, self.token = m.session.session_id, m.session.reattach_token
            elif which == "setup_complete":
                return

    async def send_audio(self) -> None:
        await self.call.write(self._audio)

    async def send_turn(self, text: str) -> None:
        m = self.gw.ClientMessage()
        m.client_content.turns.add(role="user").parts.add(text=text)
        m.client_content.turn_complete = True
        await self.call.write(m)

    async def send_tool_response(self, calls: list[tuple[str, str]]) -> None:
        m = self.gw.ClientMessage()
        for i, n in calls:
            f = m.tool_response.function_responses.add(id=i, name=n)
            f.response.update({"temperature_c": 21})
        await self.call.write(m)

    async def events(self) -> Any:
        import grpc

        while True:
            m = await self.call.read()
            t = time.time()
            if m is grpc.aio.EOF:
                return
            if m.seq:
                self.last_seq = m.seq
            which = m.WhichOneof("message")
            if which == "server_content":
                sc = m.server_content
                if sc.HasField("model_turn"):
                    parts = sc.model_turn.parts
                    if parts and parts[0].HasField("inline_data"):
                        yield "audio", t, None
                    elif parts and parts[0].text:
                        yield "text", t, None
                elif sc.turn_complete:
                    yield "turn_complete", t, None
            elif which == "tool_call":
                yield "tool_call", t, [(c.id, c.name) for c in m.tool_call.function_calls]
            elif which == "upstream_renewed":
                yield "renewed", t, {"reason": m.upstream_renewed.reason,
                                     "gap_s": m.upstream_renewed.gap.ToNanoseconds() / 1e9}

    async def close(self) -> None:
        if self.call is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call.done_writing(), 1)
        self.call.cancel()


# -- the driver -------------------------------------------------------------------------------------------------

async def converse(transport: Any, key: str, *, duration_s: float, audio_in: bool = True,
                   turns: bool = True, hold: asyncio.Event | None = None, turn_pause_s: float = 0.0
                   ) -> SessionResult:
    """Run the script for ``duration_s`` after setup (or, with ``hold``, until it is set)."""
    res = SessionResult(key)
    loop = asyncio.get_running_loop()
    lock = asyncio.Lock()
    index = 0
    t0 = time.time()
    try:
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            await transport.open()
    except Exception as exc:  # noqa: BLE001 - reported, not raised: one failed session is a data point
        res.error = f"open: {type(exc).__name__}: {exc}"
        await transport.close()
        return res
    res.setup_s = time.time() - t0
    end = loop.time() + duration_s
    res.end = time.time() + duration_s
    state: dict[str, Any] = {"tag": "", "n": {}, "k": 0, "turn": None}

    async def send(coro_fn: Any, *args: Any) -> None:
        nonlocal index
        async with lock:
            index += 1
            res.sent[index] = time.time()
            await coro_fn(*args)

    async def next_turn() -> None:
        state["k"] += 1
        text = turn_text(key, state["k"])
        state["tag"], state["n"] = text, {}
        state["turn"] = {"k": state["k"], "sent": time.time(), "first_audio": None, "renewed": False}
        res.turns.append(state["turn"])
        await send(transport.send_turn, text)

    async def writer() -> None:
        nxt = loop.time()
        while loop.time() < end:
            await send(transport.send_audio)
            nxt += 0.02
            delay = nxt - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.2:  # fell far behind (overload): do not burst to catch up
                nxt = loop.time()

    async def reader() -> None:
        async for kind, t, extra in transport.events():
            if kind == "renewed":
                res.renewals.append({**extra, "at": t})
                if state["turn"] is not None and state["turn"]["first_audio"] is None:
                    state["turn"]["renewed"] = True  # the renewal held up this turn's answer
                continue
            n = state["n"].get(kind, 0) + 1
            state["n"][kind] = n
            res.recv[(state["tag"], kind, n)] = t
            if kind in ("audio", "text") and state["turn"] is not None and state["turn"]["first_audio"] is None:
                state["turn"]["first_audio"] = t
            if kind == "tool_call":
                await send(transport.send_tool_response, extra)
            elif kind == "turn_complete" and turns and loop.time() < end - 0.5 - turn_pause_s:
                if turn_pause_s:
                    pending.append(asyncio.create_task(later_turn()))
                else:
                    await next_turn()

    pending: list[asyncio.Task[None]] = []

    async def later_turn() -> None:
        await asyncio.sleep(turn_pause_s)
        await next_turn()

    tasks = []
    try:
        rd = asyncio.create_task(reader())
        tasks.append(rd)
        if audio_in:
            tasks.append(asyncio.create_task(writer()))
        if turns:
            await next_turn()
        if hold is not None:
            await hold.wait()
        else:
            await asyncio.sleep(max(0.0, end - loop.time()))
        await asyncio.sleep(0.3)  # the last frames in flight
    except Exception as exc:  # noqa: BLE001
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        for t in tasks + pending:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
            if t.done() and not t.cancelled() and t.exception() is not None and res.error is None:
                res.error = f"{type(t.exception()).__name__}: {t.exception()}"
        await transport.close()
    return res


# -- matching -------------------------------------------------------------------------------------------------

def match(results: list[SessionResult], stamps: dict[str, Any], *, settle_s: float = 1.0,
          since: float = 0.0, until: float = float("inf")) -> dict[str, Any]:
    """Join client times with the emulator's: c2s = emulator arrival - client send, s2c = client arrival -
    emulator send; latencies of messages sent in [since, until). Delivery counts only messages sent more
    than ``settle_s`` before the session's end."""
    by_key = {}
    for conv in stamps["convs"]:
        if conv["key"]:
            by_key.setdefault(conv["key"], []).append(conv)
    c2s: list[float] = []
    s2c: list[float] = []
    sent_c = got_c = sent_s = got_s = 0
    renewed_convs = 0
    for r in results:
        convs = by_key.get(r.key, [])
        arrivals: dict[int, float] = {}
        for conv in convs:
            if conv["connections"] > 1:
                renewed_convs += 1
            for connection, index, kind, at in conv["c2s"]:
                if connection == 1 and index > 0:
                    arrivals[index] = at
            for tag, kind, n, ts in conv["s2c"]:
                if kind == "setup_complete":
                    continue
                ta = r.recv.get((tag, kind, n))
                if ts < r.end - settle_s:
                    sent_s += 1
                    got_s += ta is not None
                if ta is not None and since <= ts < until:
                    s2c.append(ta - ts)
        for index, ts in r.sent.items():
            ta = arrivals.get(index)
            if ts < r.end - settle_s:
                sent_c += 1
                got_c += ta is not None
            if ta is not None and since <= ts < until:
                c2s.append(ta - ts)
    return {"c2s": c2s, "s2c": s2c, "delivered_c2s": got_c / sent_c if sent_c else None,
            "delivered_s2c": got_s / sent_s if sent_s else None, "frames_c2s": sent_c, "frames_s2c": sent_s,
            "renewed_convs": renewed_convs}
