"""Fault injection through the admin endpoint and scenario files; the conversations endpoint; the CLI."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from emu_helpers import ADMIN_TOKEN, GEMINI_MODEL, admin, open_session, raw_connect, recv_json, recv_until, text_of
from emulator.server import EmulatorServer


@pytest.fixture
def make_config(make_config: Any) -> Any:  # every emulator here serves the admin API, to its token
    return functools.partial(make_config, admin_token=ADMIN_TOKEN)


async def call(server: EmulatorServer, method: str, path: str, **params: Any) -> tuple[int, Any]:
    if params:
        path += "?" + urllib.parse.urlencode(params)
    return await asyncio.to_thread(admin, server, method, path)


async def closed(ws: Any) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed):
        while True:
            await recv_json(ws)
    return ws.close_code, ws.close_reason


async def test_health_and_unknown_endpoint(server: EmulatorServer) -> None:
    assert await call(server, "GET", "/emulator/v1/health") == (200, {"status": "ok", "sessions": 0, "conversations": 0})
    status, body = await call(server, "GET", "/emulator/v1/nothing")
    assert status == 404 and "error" in body
    status, body = await call(server, "POST", "/emulator/v1/faults", action="explode")
    assert status == 400


async def test_close_before_setup_complete_for_next_session(server: EmulatorServer) -> None:
    status, rule = await call(server, "POST", "/emulator/v1/faults", when="before_setup_complete", close="quota")
    assert status == 201 and rule["target"] == "next"
    ws = await raw_connect(server)
    await ws.send(json.dumps({"setup": {"model": GEMINI_MODEL}}))
    assert await closed(ws) == (1011, "You exceeded your current quota, please check your plan and billing details.")
    assert (await call(server, "GET", "/emulator/v1/faults"))[1] == {"faults": []}  # consumed
    ws = await open_session(server)  # the one after is fine
    await ws.close()


async def test_close_mid_turn_with_custom_code(start_server: Any) -> None:
    server = await start_server(pacing=1.0, audio_chunk_ms=100)
    spec = {"when": "mid_turn", "code": 1011, "reason": "Internal error encountered."}
    await call(server, "POST", "/emulator/v1/faults", json=json.dumps(spec))
    ws = await open_session(server, {"generationConfig": {"responseModalities": ["AUDIO"]}})
    await ws.send(json.dumps({"realtimeInput": {"text": "Say: a sentence long enough to be cut in the middle"}}))
    first = await recv_json(ws)
    assert "modelTurn" in first["serverContent"]
    assert await closed(ws) == (1011, "Internal error encountered.")
    [conv] = server.conversations
    assert conv["closes"] == [{"code": 1011, "reason": "Internal error encountered.", "by": "server"}]


async def test_close_after_n_messages(server: EmulatorServer) -> None:
    await call(server, "POST", "/emulator/v1/faults", when="after_messages", after_messages=2, close="unavailable")
    ws = await open_session(server)
    await ws.send(json.dumps({"realtimeInput": {"text": "one"}}))
    await recv_until(ws, "turnComplete")
    await ws.send(json.dumps({"contextUpdate": {}}))
    assert await closed(ws) == (1011, "The service is currently unavailable.")
    [conv] = server.conversations
    assert [m["index"] for m in conv["messages"]] == [0, 1, 2]


async def test_drop_is_1006_for_a_targeted_live_session(server: EmulatorServer) -> None:
    ws = await open_session(server)
    other = await open_session(server)
    _, body = await call(server, "GET", "/emulator/v1/sessions")
    target = body["sessions"][0]["session_id"]
    victim, survivor = (ws, other) if server.conversations[0]["session_ids"] == [target] else (other, ws)
    await call(server, "POST", "/emulator/v1/faults", target=target, action="drop")
    with pytest.raises(ConnectionClosedError) as info:
        await recv_json(victim)
    assert info.value.rcvd is None  # no close frame: the client sees 1006
    assert victim.close_code == 1006
    await survivor.send(json.dumps({"realtimeInput": {"text": "ok"}}))
    assert text_of(await recv_until(survivor, "turnComplete")) == 'You said: "ok"'
    await survivor.close()


async def test_stall_keeps_socket_open_then_resumes(server: EmulatorServer) -> None:
    ws = await open_session(server)
    conv_id = server.conversations[0]["id"]
    await call(server, "POST", "/emulator/v1/faults", target=conv_id, action="stall", duration_s=0.5)
    started = time.monotonic()
    await ws.send(json.dumps({"realtimeInput": {"text": "anyone?"}}))
    frames = await recv_until(ws, "turnComplete")
    assert time.monotonic() - started >= 0.45  # nothing was sent while stalled
    assert text_of(frames) == 'You said: "anyone?"'
    pong = await ws.ping()
    await asyncio.wait_for(pong, 2)  # the socket itself stayed healthy
    await ws.close()


async def test_delay_pong(server: EmulatorServer) -> None:
    ws = await open_session(server)
    await call(server, "POST", "/emulator/v1/faults", target="all", action="delay_pong", duration_s=0.4, count=1)
    started = time.monotonic()
    latency = await asyncio.wait_for(await ws.ping(), 5)
    assert time.monotonic() - started >= 0.35 and latency >= 0.35
    await ws.close()


async def test_conversations_endpoint_lists_every_message(server: EmulatorServer) -> None:
    ws = await open_session(server, {"sessionResumption": {}})
    await ws.send(json.dumps({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "AAAAAA=="}}}))
    await ws.send(json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hello"}]}],
                                                "turnComplete": True}}))
    await recv_until(ws, "sessionResumptionUpdate")
    await ws.close()
    status, body = await call(server, "GET", "/emulator/v1/conversations")
    assert status == 200
    [conv] = body["conversations"]
    assert conv == server.conversations[0]
    assert conv["flavour"] == "gemini" and conv["model"] == "gemini-live-2.5-flash-preview"
    assert conv["connections"] == 1 and conv["go_aways"] == 0
    assert [(m["index"], m["kind"]) for m in conv["messages"]] == [
        (0, "setup"), (1, "realtimeInput.audio"), (2, "clientContent")]
    assert conv["messages"][1]["audio_bytes"] == 4
    assert conv["messages"][2]["text"] == "hello"
    _, light = await call(server, "GET", "/emulator/v1/conversations", messages=0)
    assert "messages" not in light["conversations"][0] and light["conversations"][0]["message_count"] == 3
    status, one = await call(server, "GET", f"/emulator/v1/conversations/{conv['id']}")
    assert status == 200 and one["id"] == conv["id"]
    async with asyncio.timeout(5):  # the close is processed asynchronously; poll the real state
        while server.conversations[0]["open"]:
            await asyncio.sleep(0.01)
    assert (await call(server, "DELETE", "/emulator/v1/conversations"))[1] == {"dropped": 1}
    assert server.conversations == []


async def test_scenario_file(start_server: Any, tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"faults": [{"target": "all", "when": "immediately", "close": "internal", "count": 2}]}))
    server = await start_server(faults_file=str(path))
    for _ in range(2):
        ws = await raw_connect(server)
        assert await closed(ws) == (1011, "Internal error encountered.")
    ws = await open_session(server)
    await ws.close()


def test_cli_runs_until_sigterm(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--cert-dir", str(tmp_path), "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        assert lines[0].startswith("Live API emulator listening on https://127.0.0.1:")
        assert any(line.strip() == f"trust it with: export SSL_CERT_FILE={tmp_path}/emulator-cert.pem" for line in lines)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # drains and closes the pipes


async def test_rule_for_all_counts_each_session_once(server: EmulatorServer) -> None:
    server.faults.add({"target": "all", "when": "before_setup_complete", "close": "unavailable", "count": 2})
    for _ in range(2):
        ws = await raw_connect(server)
        await ws.send(json.dumps({"setup": {"model": GEMINI_MODEL}}))
        assert await closed(ws) == (1011, "The service is currently unavailable.")
    assert server.faults.rules() == []
    ws = await open_session(server)
    await ws.close()
