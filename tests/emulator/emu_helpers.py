"""Helpers for the emulator tests: SDK clients trusting the emulator certificate, raw WebSocket sessions,
frame readers and the admin endpoint."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from emulator.server import EmulatorServer


def ssl_ctx(server: EmulatorServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.cert_path)


def gemini_client(server: EmulatorServer, api_key: str = "test-key", version: str | None = None) -> Any:
    from google import genai

    opts: dict[str, Any] = {"base_url": server.url, "async_client_args": {"ssl": ssl_ctx(server)}}
    if version:
        opts["api_version"] = version
    return genai.Client(api_key=api_key, http_options=opts)


def vertex_client(server: EmulatorServer, token: str = "test-token") -> Any:
    import google.oauth2.credentials
    from google import genai

    return genai.Client(
        vertexai=True,
        project="p",
        location="us-central1",
        credentials=google.oauth2.credentials.Credentials(token=token),
        http_options={"base_url": server.url, "async_client_args": {"ssl": ssl_ctx(server)}},
    )


async def raw_connect(
    server: EmulatorServer, flavour: str = "gemini", *, headers: dict[str, str] | None = None, query: str = ""
) -> ClientConnection:
    url = server.gemini_url() if flavour == "gemini" else server.vertex_url()
    hdrs = {"x-goog-api-key": "test-key"} if headers is None else headers
    return await connect(url + query, ssl=ssl_ctx(server), additional_headers=hdrs, open_timeout=5)


GEMINI_MODEL = "models/gemini-live-2.5-flash-preview"
VERTEX_MODEL = "projects/p/locations/us-central1/publishers/google/models/gemini-live-2.5-flash"


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(raw)


async def recv_until(ws: ClientConnection, key: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Frames up to and including the first whose serverContent (or top level) has `key`."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            out.append(frame)
            if key in frame or key in frame.get("serverContent", {}):
                return out


async def open_session(server: EmulatorServer, setup: dict[str, Any] | None = None, flavour: str = "gemini",
                       **kw: Any) -> ClientConnection:
    ws = await raw_connect(server, flavour, **kw)
    body = {"model": GEMINI_MODEL if flavour == "gemini" else VERTEX_MODEL,
            "generationConfig": {"responseModalities": ["TEXT"]}}
    body.update(setup or {})
    await ws.send(json.dumps({"setup": body}))
    first = await recv_json(ws)
    assert "setupComplete" in first, first
    return ws


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(
        p.get("text", "")
        for f in frames
        for p in f.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    )


def admin(server: EmulatorServer, method: str, path: str) -> tuple[int, Any]:
    """Blocking admin call (run it with asyncio.to_thread)."""
    req = urllib.request.Request(server.url + path, method=method)
    try:
        with urllib.request.urlopen(req, context=ssl_ctx(server), timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")
