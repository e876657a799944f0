"""The floor chain: the minimal relay gRPC -> front -> Redis Streams -> worker -> WebSocket echo and back,
written as plainly as possible (the simplest correct relay of the chain), so every benchmark run reports livegate as a
ratio to it on the same machine at the same moment.

* ``python -m bench.floor echo --cert C --key K``: a TLS WebSocket echo; per frame it decodes the base64
  audio and stamps its arrival. At ``/`` it answers each frame at once with 960 B of pre-encoded audio
  (24 kHz, 20 ms) in Live JSON (the floor: the cheapest answer an upstream can give). At ``/paced`` it sends that audio on
  its own 20 ms clock from the first frame on, as the Live API and the emulator do, each chunk carrying the
  stamps of the frames that arrived since the previous one ("floor, paced echo": the traffic shape livegate
  relays in the capacity scenario, where audio out does not follow each frame in).
* ``python -m bench.floor worker --redis URL --upstream wss://.. --ca C [--streams P]``: XREAD on one shared
  stream ``P:c2s``; one WebSocket per session (opened on its first frame); replies XADDed to ``P:s2c``.
* ``python -m bench.floor front --redis URL [--streams P]``: a gRPC server with one generic bidi method
  ``/floor.Floor/Relay`` (raw bytes, no protobuf); client frames XADDed to ``P:c2s``, one XREAD on
  ``P:s2c`` dispatches replies to the streams by session id. ``P`` (default ``floor``) lets two floor
  chains share one Redis.

XADDs are auto-batched (everything queued in one loop iteration goes in one pipeline). Everything runs on
uvloop. Wire format: gRPC message = ``<Qd`` (n, client send time) + 640 B audio; reply = ``<Hd`` (k, echo
departure) + k x ``<Qdd`` (n, client send time, echo arrival) + 960 B audio.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import signal
import ssl
import struct
import sys
import time
import uuid
from typing import Any

import orjson

HDR_IN = struct.Struct("<Qd")
HDR_OUT = struct.Struct("<Hd")  # k, echo departure
STAMP = struct.Struct("<Qdd")  # n, client send time, echo arrival
OUT_B64 = base64.b64encode(b"\x00\x02" * 480).decode()  # 960 B
# A Live API upstream for livegate (a session that opens with ``setup``): the stamps ride inside the audio
# bytes, which livegate relays verbatim. Reply audio = 36 B (k = 1, departure, one stamp, zero padding) + 924 B;
# 36 is a multiple of 3, so its base64 joins the padding's precomputed base64.
LIVE_HEAD = 36
LIVE_TAIL_B64 = base64.b64encode(b"\x00\x02" * ((960 - LIVE_HEAD) // 2)).decode()


def live_reply(n: int, ts: float, tr: float) -> bytes:
    head = (HDR_OUT.pack(1, time.time()) + STAMP.pack(n, ts, tr)).ljust(LIVE_HEAD, b"\0")
    return orjson.dumps({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(head).decode() + LIVE_TAIL_B64}}]}}})
MAXLEN = 10000


class Batcher:
    """XADD with auto-batching: a pipeline per loop iteration's worth of entries."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.queue: list[tuple[str, dict[str, Any]]] = []
        self.wake = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    def add(self, stream: str, fields: dict[str, Any]) -> None:
        self.queue.append((stream, fields))
        self.wake.set()

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.queue = self.queue, []
            if not batch:
                continue
            pipe = self.redis.pipeline(transaction=False)
            for stream, fields in batch:
                pipe.xadd(stream, fields, maxlen=MAXLEN, approximate=True)
            try:
                await pipe.execute()
            except Exception as exc:  # noqa: BLE001 - an overloaded step (a write timeout) loses this batch,
                print(f"floor batcher: {len(batch)} entries lost: {exc!r}", file=sys.stderr, flush=True)  # not the chain


async def _wait_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# -- echo ------------------------------------------------------------------------------------------------------

async def echo_main(args: argparse.Namespace) -> None:
    import websockets

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)

    def reply(stamps: list[list[float]]) -> bytes:
        return orjson.dumps({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
            "mimeType": "audio/pcm;rate=24000", "data": OUT_B64}}]}}, "in": stamps, "te": time.time()})

    async def paced(ws: Any) -> None:
        loop = asyncio.get_running_loop()
        arrived: list[list[float]] = []

        async def speak() -> None:
            nxt = loop.time()
            while True:
                nxt += 0.02
                delay = nxt - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                stamps = arrived[:]
                arrived.clear()
                await ws.send(reply(stamps))

        speaker: asyncio.Task[None] | None = None
        try:
            async for raw in ws:
                tr = time.time()
                msg = orjson.loads(raw)
                base64.b64decode(msg["realtimeInput"]["audio"]["data"])
                arrived.append([msg["n"], msg["ts"], tr])
                if speaker is None:
                    speaker = asyncio.create_task(speak())
        finally:
            if speaker is not None:  # owned: stopped and awaited (a send that failed on a closed socket too)
                speaker.cancel()
                with contextlib.suppress(BaseException):
                    await speaker

    async def live(ws: Any) -> None:
        await ws.send(b'{"setupComplete":{}}')
        async for raw in ws:
            tr = time.time()
            audio = orjson.loads(raw).get("realtimeInput", {}).get("audio")
            if audio is None:
                continue
            n, ts = HDR_IN.unpack_from(base64.b64decode(audio["data"]))
            await ws.send(live_reply(n, ts, tr))

    async def handler(ws: Any) -> None:
        if ws.request.path.rstrip("/").endswith("/paced"):
            return await paced(ws)
        async for raw in ws:
            tr = time.time()
            msg = orjson.loads(raw)
            if "setup" in msg:
                return await live(ws)
            base64.b64decode(msg["realtimeInput"]["audio"]["data"])
            await ws.send(reply([[msg["n"], msg["ts"], tr]]))

    async with websockets.serve(handler, "127.0.0.1", 0, ssl=ctx, compression=None, max_size=2**24) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"floor echo wss://127.0.0.1:{port} 127.0.0.1:{port}", flush=True)
        await _wait_signal()


# -- worker ----------------------------------------------------------------------------------------------------

async def worker_main(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis
    import websockets

    c2s, s2c = f"{args.streams}:c2s", f"{args.streams}:s2c"
    r = aioredis.from_url(args.redis)
    out = Batcher(r)
    ctx = ssl.create_default_context(cafile=args.ca)
    sockets: dict[bytes, Any] = {}
    pending: dict[bytes, list[bytes]] = {}

    async def pump(sid: bytes, ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                msg = orjson.loads(raw)
                audio = base64.b64decode(msg["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"])
                stamps = msg["in"]
                out.add(s2c, {"s": sid, "p": b"".join((HDR_OUT.pack(len(stamps), msg["te"]),
                                                       *(STAMP.pack(*st) for st in stamps), audio))})

    def frame(payload: bytes) -> bytes:
        n, ts = HDR_IN.unpack_from(payload)
        return orjson.dumps({"realtimeInput": {"audio": {"data": base64.b64encode(payload[HDR_IN.size:]).decode(),
                                                         "mimeType": "audio/pcm;rate=16000"}}, "n": n, "ts": ts})

    async def open_ws(sid: bytes) -> None:
        ws = await websockets.connect(args.upstream, ssl=ctx, compression=None, max_size=2**24, ping_interval=None)
        sockets[sid] = ws
        for p in pending.pop(sid, []):
            await ws.send(frame(p))
        asyncio.create_task(pump(sid, ws))

    async def reader() -> None:
        last = "$"
        while True:
            resp = await r.xread({c2s: last}, block=1000, count=1000)
            for _stream, entries in resp or ():
                for eid, fields in entries:
                    last = eid
                    sid, p = fields[b"s"], fields.get(b"p")
                    if p is None:  # end of session
                        ws = sockets.pop(sid, None)
                        if ws is not None:
                            asyncio.create_task(ws.close())
                        continue
                    ws = sockets.get(sid)
                    if ws is None:
                        if sid not in pending:
                            pending[sid] = []
                            asyncio.create_task(open_ws(sid))
                        pending[sid].append(p)
                    else:
                        try:
                            await ws.send(frame(p))
                        except websockets.ConnectionClosed:  # that session's echo is gone (an overloaded step):
                            sockets.pop(sid, None)  # the other sessions, and the next steps, go on

    task = asyncio.create_task(reader())
    print("floor worker ready -", flush=True)
    await _wait_signal()
    task.cancel()


# -- front -----------------------------------------------------------------------------------------------------

async def front_main(args: argparse.Namespace) -> None:
    import grpc
    import redis.asyncio as aioredis

    c2s, s2c = f"{args.streams}:c2s", f"{args.streams}:s2c"
    r = aioredis.from_url(args.redis)
    out = Batcher(r)
    queues: dict[bytes, asyncio.Queue[bytes]] = {}

    async def relay(request_iterator: Any, context: Any) -> Any:
        sid = uuid.uuid4().hex.encode()
        q: asyncio.Queue[bytes] = asyncio.Queue()
        queues[sid] = q

        async def inbound() -> None:
            async for payload in request_iterator:
                out.add(c2s, {"s": sid, "p": payload})
            out.add(c2s, {"s": sid})
            q.put_nowait(b"")

        task = asyncio.create_task(inbound())
        try:
            while True:
                item = await q.get()
                if not item:
                    return
                yield item
        finally:
            task.cancel()
            queues.pop(sid, None)

    async def reader() -> None:
        last = "$"
        while True:
            resp = await r.xread({s2c: last}, block=1000, count=1000)
            for _stream, entries in resp or ():
                for eid, fields in entries:
                    last = eid
                    q = queues.get(fields[b"s"])
                    if q is not None:
                        q.put_nowait(fields[b"p"])

    handler = grpc.method_handlers_generic_handler(
        "floor.Floor", {"Relay": grpc.stream_stream_rpc_method_handler(relay)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    task = asyncio.create_task(reader())
    print(f"floor front 127.0.0.1:{port} 127.0.0.1:{port}", flush=True)
    await _wait_signal()
    task.cancel()
    await server.stop(1)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["echo", "worker", "front"])
    p.add_argument("--redis", default="")
    p.add_argument("--upstream", default="")
    p.add_argument("--ca", default="")
    p.add_argument("--cert", default="")
    p.add_argument("--key", default="")
    p.add_argument("--streams", default="floor", help="stream name prefix (two floor chains on one Redis)")
    a = p.parse_args()
    import uvloop

    uvloop.run({"echo": echo_main, "worker": worker_main, "front": front_main}[a.role](a))
