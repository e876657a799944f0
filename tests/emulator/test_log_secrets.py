"""No secret reaches a log line at any level: API keys (header or ?key=), bearer and ephemeral tokens (header
or ?access_token=), the admin token — accepted or refused."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from emu_helpers import ADMIN_TOKEN, GEMINI_MODEL, VERTEX_MODEL, admin, cli_emulator, open_session, raw_connect
from emulator.auth import Credential
from emulator.redact import redact

API_KEY = "AIzaSy-test-api-key-0123456789"
WRONG_KEY = "AIzaSy-wrong-key-9876543210"
BEARER = "ya29.test-bearer-token-abcdef"
EPHEMERAL = "auth_tokens/test-ephemeral-0123"
SECRETS = (API_KEY, WRONG_KEY, BEARER, EPHEMERAL, ADMIN_TOKEN)


async def use_every_credential(server: Any) -> None:
    """Accepted and refused credentials in every place the Live API takes them, plus admin calls."""
    for kw in ({"headers": {"x-goog-api-key": API_KEY}}, {"headers": {}, "query": f"?key={API_KEY}&alt=x"},
               {"headers": {"Authorization": f"Token {EPHEMERAL}"}}, {"headers": {}, "query": f"?access_token={EPHEMERAL}"}):
        ws = await open_session(server, **kw)
        await ws.send(json.dumps({"realtimeInput": {"text": "hello"}}))
        await ws.close()
    ws = await open_session(server, flavour="vertex", headers={"Authorization": f"Bearer {BEARER}"})
    await ws.close()
    for flavour, kw in (("gemini", {"headers": {"x-goog-api-key": WRONG_KEY}}), ("gemini", {"headers": {}, "query": f"?key={WRONG_KEY}"}),
                        ("vertex", {"headers": {"Authorization": f"Bearer {WRONG_KEY}"}})):
        ws = await raw_connect(server, flavour, **kw)
        await ws.send(json.dumps({"setup": {"model": GEMINI_MODEL if flavour == "gemini" else VERTEX_MODEL}}))
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
    assert (await asyncio.to_thread(admin, server, "GET", "/emulator/v1/conversations"))[0] == 200
    assert (await asyncio.to_thread(admin, server, "GET", "/emulator/v1/health", WRONG_KEY))[0] == 403


def server_side(records: list[logging.LogRecord]) -> str:
    """Every line the emulator's process logged (the test's own websockets client logs its requests too)."""
    lines = []
    for r in records:
        if r.name.startswith("websockets.client"):
            continue
        lines.append(r.getMessage())
        if r.exc_info:
            lines.append(logging.Formatter().formatException(r.exc_info))
    return "\n".join(lines)


async def test_debug_logs_carry_no_secret(start_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(api_keys=frozenset({API_KEY}), bearer_tokens=frozenset({BEARER}),
                                ephemeral_tokens=frozenset({EPHEMERAL}), admin_token=ADMIN_TOKEN)
    await use_every_credential(server)
    text = server_side(caplog.records)
    assert [s for s in SECRETS if s in text] == []
    assert "< GET /ws/" in text and "x-goog-api-key: <redacted>" in text  # the DEBUG lines are there, redacted
    assert [s for s in SECRETS if s in json.dumps(server.conversations)] == []
    assert [s for s in SECRETS if s in repr(server.config)] == []


def test_cli_at_debug_logs_no_secret(tmp_path: Path) -> None:
    args = ("--api-key", API_KEY, "--bearer-token", BEARER, "--ephemeral-token", EPHEMERAL, "--log-level", "DEBUG")
    with cli_emulator(tmp_path, *args, env={"LIVEGATE_EMULATOR_ADMIN_TOKEN": ADMIN_TOKEN}) as emu:
        asyncio.run(use_every_credential(emu))  # the CLI emulator stands in for a server
    log = emu.log_path.read_text()
    assert [s for s in SECRETS if s in log] == []
    assert "< GET /ws/" in log  # DEBUG was on
    assert [s for s in SECRETS if s in "".join(emu.banner)] == []


def test_credential_repr_and_redact() -> None:
    assert API_KEY not in repr(Credential("api_key", API_KEY)) and "sha256:" in repr(Credential("api_key", API_KEY))
    line = f"< GET /ws/x?alt=sse&key={API_KEY}&access_token={EPHEMERAL} HTTP/1.1 Authorization: Bearer {BEARER}"
    assert [s for s in SECRETS if s in redact(line)] == []
    assert redact("< GET /ws/x?alt=sse HTTP/1.1") == "< GET /ws/x?alt=sse HTTP/1.1"
