"""Helpers for the emulator tests: SDK clients trusting the emulator certificate, raw WebSocket sessions,
frame readers, the admin endpoint and the CLI in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from emulator import routes
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


ADMIN_TOKEN = "emulator-admin-test-token"  # the admin API needs a token (EmulatorConfig.admin_token)


def admin(server: EmulatorServer, method: str, path: str, token: str | None = ADMIN_TOKEN) -> tuple[int, Any]:
    """Blocking admin call (run it with asyncio.to_thread)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    req = urllib.request.Request(server.url + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ssl_ctx(server), timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@dataclass
class CliEmulator:
    """`python -m emulator` in a subprocess: its base URL, certificate, and where its log (stderr) goes."""

    proc: subprocess.Popen[str]
    url: str
    cert_path: str
    log_path: Path
    banner: list[str]

    def gemini_url(self) -> str:
        return self.url.replace("https://", "wss://") + routes.gemini_path()

    def vertex_url(self) -> str:
        return self.url.replace("https://", "wss://") + routes.vertex_path()


@contextlib.contextmanager
def cli_emulator(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[CliEmulator]:
    """Starts the CLI on a free port (its log to a file, so a DEBUG run never fills a pipe); SIGTERM at the end."""
    log_path = tmp_path / "emulator.log"
    full_env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), **(env or {}))
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", "0", "--cert-dir", str(tmp_path / "cert"), "--loop", "asyncio",
             *args], stdout=subprocess.PIPE, stderr=log, text=True, env=full_env,
        )
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline()]
        while banner[-1] and "trust it with" not in banner[-1]:
            banner.append(proc.stdout.readline())
        assert banner[0].startswith("Live API emulator listening on "), (banner, log_path.read_text())
        cert = banner[-1].strip().split("SSL_CERT_FILE=", 1)[1]
        yield CliEmulator(proc, banner[0].split()[-1], cert, log_path, banner)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
