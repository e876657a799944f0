"""A Live API WebSocket session's lifecycle is the gRPC one, through the same front machinery: a client's close
frame ends the session; a connection lost without one detaches it for its grace, and a resume with its
gateway handle (``setup.sessionResumption.handle``) takes the conversation over at once; a draining front sends
``goAway``; the session metrics carry ``protocol="websocket"``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection, connect

from livegate.redis import keys, records

MODEL = "gemini-live-2.5-flash"
GEMINI_PATH = "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent"


async def poll(check: Any, timeout_s: float = 5.0) -> None:
    """Wait until ``await check()`` is true (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"{check.__doc__ or check} not true in {timeout_s}s"
        await asyncio.sleep(0.02)


async def open_ws(ws_url: str, ssl_ctx: Any, setup: dict[str, Any]) -> ClientConnection:
    ws = await connect(ws_url + GEMINI_PATH, ssl=ssl_ctx, additional_headers={"x-goog-api-key": "k"})
    await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}", "generationConfig": {"responseModalities": ["TEXT"]},
                                        **setup}}))
    assert json.loads(await ws.recv()) == {"setupComplete": {}}
    return ws


async def turn(ws: ClientConnection, text: str) -> tuple[str, str]:
    """Send a text turn; return the reply and the last resumption handle seen (sent after the turn)."""
    await ws.send(json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}],
                                                "turnComplete": True}}))
    reply, handle, done = [], "", False
    while not (done and handle):
        msg = json.loads(await ws.recv())
        sc = msg.get("serverContent", {})
        reply += [p["text"] for p in sc.get("modelTurn", {}).get("parts", []) if "text" in p]
        done = done or bool(sc.get("turnComplete"))
        handle = msg.get("sessionResumptionUpdate", {}).get("newHandle", handle)
    return "".join(reply), handle


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_close_frame_ends_the_session(ws_url: str, ssl_ctx: Any, stack: dict[str, Any]) -> None:
    labels = {"model": MODEL, "tenant": "default", "protocol": "websocket"}
    started = sample("livegate_sessions_started_total", **labels)
    ended_ok = sample("livegate_sessions_ended_total", outcome="ok", **labels)
    ws = await open_ws(ws_url, ssl_ctx, {"sessionResumption": {}})
    (sid,) = stack["front"].sessions
    assert sample("livegate_sessions_active", role="front", state="attached", **labels) >= 1
    assert (await turn(ws, "Hello"))[0] == 'You said: "Hello"'
    await ws.close()  # the client's close frame: its half-close

    async def ended() -> bool:
        """the session is gone from Redis"""
        return not await stack["redis"].exists(*keys.session_keys(sid))

    await poll(ended)
    assert sample("livegate_sessions_started_total", **labels) == started + 1
    assert sample("livegate_sessions_ended_total", outcome="ok", **labels) == ended_ok + 1


async def test_lost_connection_detaches_and_a_resume_takes_over(ws_url: str, ssl_ctx: Any,
                                                                 stack: dict[str, Any]) -> None:
    ws = await open_ws(ws_url, ssl_ctx, {"sessionResumption": {}})
    (sid,) = stack["front"].sessions
    reply, handle = await turn(ws, "Is the sky blue?")
    assert handle.startswith("lgh_")
    assert ws.transport is not None
    ws.transport.abort()  # gone without a close frame (a network break)
    meta = keys.session_meta(sid)

    async def detached() -> bool:
        """the session is detached (kept for its grace), not ended"""
        return await stack["redis"].hget(meta, "state") == records.DETACHED.encode()

    await poll(detached)
    resumed = await open_ws(ws_url, ssl_ctx, {"sessionResumption": {"handle": handle}})
    assert (await turn(resumed, "What was the last question I asked?"))[0] == 'You asked: "Is the sky blue?"'

    async def earlier_gone() -> bool:
        """the detached session ended when the resume took the conversation over (not at its grace's end)"""
        return not await stack["redis"].exists(meta)

    await poll(earlier_gone, timeout_s=5.0)  # the grace is 30 s
    await resumed.close()


async def test_draining_front_sends_go_away(ws_url: str, ssl_ctx: Any, stack: dict[str, Any]) -> None:
    ws = await open_ws(ws_url, ssl_ctx, {})
    await stack["front"].drain()
    assert json.loads(await ws.recv()) == {"goAway": {"timeLeft": f"{stack['settings'].front_grace_s:.0f}s"}}
    await ws.close()


async def test_front_shutdown_closes_1001_and_keeps_the_session(ws_url: str, ssl_ctx: Any,
                                                                stack: dict[str, Any]) -> None:
    ws = await open_ws(ws_url, ssl_ctx, {"sessionResumption": {}})
    (sid,) = stack["front"].sessions
    await turn(ws, "Hello")
    await stack["front"].aclose(0.2)  # the caller does not leave within the grace
    await ws.wait_closed()
    assert ws.close_code == 1001 and (ws.close_reason or "").startswith("GOING_AWAY: ")
    # detached, for a resume through another front
    assert await stack["redis"].hget(keys.session_meta(sid), "state") == records.DETACHED.encode()
