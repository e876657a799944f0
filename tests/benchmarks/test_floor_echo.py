"""The floor chain's echo (bench/floor.py): at ``/`` one reply per frame, carrying that frame's stamps; at
``/paced`` audio on its own clock from the first frame on, each chunk carrying the stamps of the frames that
arrived since the one before (none when nothing arrived: the audio goes on); a session that opens with a Live
``setup`` is livegate's upstream route "echo"."""

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


async def test_a_live_session_gets_setup_complete_then_one_reply_per_audio_frame_with_the_stamps_inside(echo: Any) -> None:
    """livegate's upstream route "echo" (bench/echo_session.py): after ``setup`` each realtimeInput audio frame
    is answered at once with 960 B of 24 kHz audio whose head carries the stamps, as livegate relays audio
    bytes verbatim; anything else is ignored."""
    from bench.floor import HDR_IN, HDR_OUT, STAMP

    url, ctx = echo
    async with websockets.connect(url + "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
                                  ssl=ctx) as ws:
        await ws.send(orjson.dumps({"setup": {"model": "models/gemini-live-2.5-flash"}}))
        assert orjson.loads(await ws.recv()) == {"setupComplete": {}}
        await ws.send(orjson.dumps({"clientContent": {"turnComplete": True}}))  # not audio: no answer
        for n in (7, 8):
            ts = time.time()
            audio = HDR_IN.pack(n, ts) + b"\0\1" * ((640 - HDR_IN.size) // 2)
            await ws.send(orjson.dumps({"realtimeInput": {"audio": {"data": base64.b64encode(audio).decode(),
                                                                      "mimeType": "audio/pcm;rate=16000"}}}))
            reply = orjson.loads(await ws.recv())
            [part] = reply["serverContent"]["modelTurn"]["parts"]
            assert part["inlineData"]["mimeType"] == "audio/pcm;rate=24000"
            data = base64.b64decode(part["inlineData"]["data"])
            k, te = HDR_OUT.unpack_from(data)
            got, sent, arrived = STAMP.unpack_from(data, HDR_OUT.size)
            assert len(data) == 960 and k == 1 and got == n and sent == ts and sent <= arrived <= te
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.2)
