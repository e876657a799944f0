"""One load-generator session against the floor's echo (bench/floor.py): through the floor chain (raw bytes
over gRPC), straight to the echo (WebSocket), or through livegate with the echo as its upstream route.
Every path carries the same stamps: ``HDR_IN`` (n, client send time) at the head of each 640 B frame in,
``HDR_OUT`` + ``STAMP``s at the head of each reply, so each chain is measured the same way."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from typing import Any

import orjson

from bench.floor import HDR_IN, HDR_OUT, STAMP


def gateway_frame_parts() -> tuple[bytes, bytes]:
    """A serialized livegate ``ClientMessage`` with 640 B of realtime audio, split where its first 16 audio
    bytes go: ``head + HDR_IN.pack(n, ts) + tail`` is frame n, built without protobuf on the send path (as
    the floor's client sends raw bytes)."""
    from livegate.v1 import gateway_pb2 as gw

    marker = b"\xa5" * HDR_IN.size
    m = gw.ClientMessage()
    m.realtime_input.audio.mime_type = "audio/pcm;rate=16000"
    m.realtime_input.audio.data = marker + b"\x00\x01" * ((640 - HDR_IN.size) // 2)
    raw = m.SerializeToString()
    i = raw.index(marker)
    return raw[:i], raw[i + HDR_IN.size:]


async def gateway_open(call: Any, route: str = "echo", timeout_s: float = 40.0) -> float:
    """Open a livegate session on upstream ``route`` over a raw-bytes ``Connect`` call; returns the seconds to
    ``setup_complete``."""
    import grpc

    from livegate.client import build_setup
    from livegate.v1 import gateway_pb2 as gw

    t0 = time.time()
    first = gw.ClientMessage(setup=build_setup("gemini-live-2.5-flash", {"response_modalities": ["AUDIO"]}))
    first.options.upstream = route
    await call.write(first.SerializeToString())
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await call.read()
            if raw is grpc.aio.EOF:
                raise RuntimeError(f"stream ended before setup_complete: {await call.code()} {await call.details()}")
            if gw.ServerMessage.FromString(raw).HasField("setup_complete"):
                return time.time() - t0


async def floor_session(call_or_ws: Any, kind: str, duration_s: float) -> dict[str, Any]:
    """One session: 640 B frames at 50/s for ``duration_s``; returns c2s one-way latencies (with their send
    times), s2c ones (with the echo's send times), and what was sent. ``kind``: "floor" (the floor front),
    "ws" (the echo directly) or "gateway" (livegate's ``Connect``, opened with ``gateway_open``, the echo as
    its upstream: the stamps travel inside the audio bytes)."""
    loop = asyncio.get_running_loop()
    sent: dict[int, float] = {}
    c2s: list[tuple[float, float]] = []
    s2c: list[tuple[float, float]] = []
    audio = b"\x00\x01" * 320
    audio_b64 = base64.b64encode(audio).decode()
    end = loop.time() + duration_s
    t_end = time.time() + duration_s
    if kind == "gateway":
        from livegate.v1.gateway_pb2 import ServerMessage

        gw_head, gw_tail = gateway_frame_parts()

    async def writer() -> None:
        n = 0
        nxt = loop.time()
        while loop.time() < end:
            n += 1
            ts = time.time()
            sent[n] = ts
            if kind == "floor":
                await call_or_ws.write(HDR_IN.pack(n, ts) + audio)
            elif kind == "gateway":
                await call_or_ws.write(gw_head + HDR_IN.pack(n, ts) + gw_tail)
            else:
                await call_or_ws.send(orjson.dumps({"realtimeInput": {"audio": {
                    "data": audio_b64, "mimeType": "audio/pcm;rate=16000"}}, "n": n, "ts": ts}))
            nxt += 0.02
            delay = nxt - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.2:
                nxt = loop.time()

    async def reader() -> None:
        import grpc

        while True:
            if kind == "floor":
                m = await call_or_ws.read()
                t = time.time()
                if m is grpc.aio.EOF:
                    return
                k, te = HDR_OUT.unpack_from(m)
                stamps = [STAMP.unpack_from(m, HDR_OUT.size + i * STAMP.size) for i in range(k)]
            elif kind == "gateway":
                m = await call_or_ws.read()
                t = time.time()
                if m is grpc.aio.EOF:
                    return
                parts = ServerMessage.FromString(m).server_content.model_turn.parts
                if not parts:
                    continue  # not audio (a gateway notice)
                data = parts[0].inline_data.data
                k, te = HDR_OUT.unpack_from(data)
                stamps = [STAMP.unpack_from(data, HDR_OUT.size + i * STAMP.size) for i in range(k)]
            else:
                raw = await call_or_ws.recv()
                t = time.time()
                msg = orjson.loads(raw)
                base64.b64decode(msg["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"])
                stamps, te = msg["in"], msg["te"]
            for _n, ts, tr in stamps:
                c2s.append((ts, tr - ts))
            s2c.append((te, t - te))

    rd = asyncio.create_task(reader())
    try:
        await writer()
        await asyncio.sleep(0.3)
    finally:
        rd.cancel()
        with contextlib.suppress(BaseException):
            await rd
    return {"sent": sent, "c2s": c2s, "s2c": s2c, "end": t_end}
