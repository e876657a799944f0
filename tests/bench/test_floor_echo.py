"""The floor chain's echo (bench/floor.py): at ``/`` one reply per frame, carrying that frame's stamps; at
``/paced`` audio on its own clock from the first frame on, each chunk carrying the stamps of the frames that
arrived since the one before (none when nothing arrived: the audio goes on)."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any

import orjson
import pytest
import websockets

from bench.common import Stack


def frame(n: int) -> bytes:
    return orjson.dumps({"realtimeInput": {"audio": {"data": base64.b64encode(b"\0\1" * 320).decode(),
                                                     "mimeType": "audio/pcm;rate=16000"}}, "n": n, "ts": time.time()})


@pytest.fixture
async def echo() -> Any:
    st = Stack()
    try:
        emu = await st.start_emulator()  # for its TLS certificate and key
        key = os.path.join(os.path.dirname(emu.cert), "emulator-key.pem")
        proc = await st.floor_proc("echo", "--cert", emu.cert, "--key", key)
        yield proc.ident, emu.ssl_context()
    finally:
        await st.aclose()


async def test_the_plain_echo_answers_each_frame_once_with_its_stamps(echo: Any) -> None:
    url, ctx = echo
    async with websockets.connect(url, ssl=ctx) as ws:
        for n in (1, 2, 3):
            await ws.send(frame(n))
            reply = orjson.loads(await ws.recv())
            [(got, _ts, _tr)] = reply["in"]
            assert got == n and "inlineData" in reply["serverContent"]["modelTurn"]["parts"][0]
        with pytest.raises(asyncio.TimeoutError):  # nothing unless a frame comes in
            await asyncio.wait_for(ws.recv(), 0.2)


async def test_the_paced_echo_speaks_on_its_own_clock_and_reports_each_frame_once(echo: Any) -> None:
    url, ctx = echo
    async with websockets.connect(url + "/paced", ssl=ctx) as ws:
        await ws.send(frame(1))
        await ws.send(frame(2))
        replies = [orjson.loads(await ws.recv()) for _ in range(6)]  # audio goes on with no more input
        stamps = [st[0] for r in replies for st in r["in"]]
        assert stamps == [1, 2]  # every frame reported exactly once, in order
        assert all(r["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"] for r in replies)
        assert not replies[-1]["in"]
        await ws.send(frame(3))
        later = [orjson.loads(await ws.recv()) for _ in range(3)]
        assert [st[0] for r in later for st in r["in"]] == [3]
