"""``livegate dev --ws-listen HOST:PORT`` serves the Live API WebSocket protocol and prints its URL and how an SDK
points at it; a raw Live API client then holds a conversation through it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys

from websockets.asyncio.client import connect

from livegate.cli.devstack import free_port

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


async def test_dev_ws_listen_prints_the_url_and_serves(redis_url: str) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livegate.cli", "dev", "--pacing", "0", "--listen", "127.0.0.1:0",
        "--ws-listen", f"127.0.0.1:{port}", "--redis-url", redis_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, "NO_PROXY": "*"})
    assert proc.stdout is not None
    seen = []
    try:
        async with asyncio.timeout(30):
            while not any("@google/genai" in line for line in seen):
                seen.append((await proc.stdout.readline()).decode())
                assert seen[-1], "".join(seen)
        text = "".join(seen)
        assert f"Live API WebSocket on ws://127.0.0.1:{port}: point an SDK's base URL at http://127.0.0.1:{port}" in text
        assert re.search(r'genai\.Client\(api_key=\.\.\., http_options=\{"base_url": "http://127\.0\.0\.1:\d+"\}\)', text)
        async with connect(f"ws://127.0.0.1:{port}{PATH}?key=any") as ws:
            await ws.send(json.dumps({"setup": {"model": "models/gemini-live-2.5-flash",
                                                "generation_config": {"response_modalities": ["TEXT"]}}}))
            assert json.loads(await ws.recv()) == {"setupComplete": {}}
            await ws.send(json.dumps({"realtime_input": {"text": "Hello"}}))
            reply = []
            while not reply or "turnComplete" not in reply[-1]:
                reply.append((await ws.recv()).decode())
            assert 'You said: \\"Hello\\"' in "".join(reply)
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await proc.communicate()
    assert proc.returncode == 0
