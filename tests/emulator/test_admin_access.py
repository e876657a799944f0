"""The admin API (/emulator/v1/*: every caller's text, fault injection) is off unless configured, and then
answers only to its own token; `admin=True` without a token is refused off loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from emu_helpers import ADMIN_TOKEN, admin, cli_emulator, open_session, ssl_ctx
from emulator.config import EmulatorConfig, EmulatorConfigError
from emulator.server import EmulatorServer


async def call(server: Any, method: str, path: str, token: str | None = ADMIN_TOKEN, **params: Any) -> tuple[int, Any]:
    if params:
        path += "?" + urllib.parse.urlencode(params)
    return await asyncio.to_thread(admin, server, method, path, token)


async def a_conversation(server: EmulatorServer) -> None:
    ws = await open_session(server)
    await ws.send(json.dumps({"clientContent": {"turns": [{"parts": [{"text": "my secret plan"}]}]}}))
    await ws.close()


async def test_admin_is_disabled_by_default(server: EmulatorServer) -> None:
    await a_conversation(server)
    for method, path in (("GET", "/emulator/v1/health"), ("GET", "/emulator/v1/conversations"),
                         ("GET", "/emulator/v1/sessions"), ("DELETE", "/emulator/v1/conversations"),
                         ("POST", "/emulator/v1/faults?target=all&action=drop")):
        for token in (None, ADMIN_TOKEN):
            status, body = await call(server, method, path, token)
            assert status == 404, (method, path, body)
            assert "admin API is disabled" in body["error"] and "--admin-token" in body["error"]
    assert server.faults.rules() == []
    assert len(server.conversations) == 1  # nothing was forgotten either


async def test_admin_needs_its_token(start_server: Any) -> None:
    server = await start_server(admin_token=ADMIN_TOKEN, api_keys=frozenset({"api-key"}))
    ws = await open_session(server, headers={"x-goog-api-key": "api-key"})
    await ws.send(json.dumps({"clientContent": {"turns": [{"parts": [{"text": "my secret plan"}]}]}}))
    await ws.close()
    for token in (None, "", "api-key", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1]):  # an API key is not an admin token
        status, body = await call(server, "GET", "/emulator/v1/conversations", token)
        assert status in (401, 403), (token, status)
        assert "my secret plan" not in json.dumps(body)
        assert "admin token" in body["error"]
        status, _ = await call(server, "POST", "/emulator/v1/faults", token, target="all", action="drop")
        assert status in (401, 403)
    assert (await call(server, "GET", "/emulator/v1/health", None))[0] == 401
    assert (await call(server, "GET", "/emulator/v1/health", "wrong"))[0] == 403
    assert server.faults.rules() == []
    status, body = await call(server, "GET", "/emulator/v1/conversations")
    assert status == 200 and "my secret plan" in json.dumps(body)
    assert (await call(server, "POST", "/emulator/v1/faults", target="all", action="drop"))[0] == 201


async def test_unauthorised_admin_answer_names_the_scheme(start_server: Any) -> None:
    server = await start_server(admin_token=ADMIN_TOKEN)

    def raw_get() -> tuple[int, str]:
        try:
            urllib.request.urlopen(server.url + "/emulator/v1/health", context=ssl_ctx(server), timeout=5)
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("WWW-Authenticate", "")
        return 200, ""

    assert await asyncio.to_thread(raw_get) == (401, 'Bearer realm="emulator-admin"')


async def test_tokenless_admin_only_on_loopback(start_server: Any, make_config: Any) -> None:
    for host in ("0.0.0.0", "::", "", "10.1.2.3", "emulator.example"):
        with pytest.raises(EmulatorConfigError, match="loopback"):
            make_config(admin=True, host=host)
    EmulatorConfig(admin=True, host="0.0.0.0", admin_token="t")  # a token makes any host fine
    server = await start_server(admin=True, host="127.0.0.1")
    assert (await call(server, "GET", "/emulator/v1/health", None))[0] == 200


def test_cli_admin_token_from_the_environment(tmp_path: Path) -> None:
    env = {"LIVEGATE_EMULATOR_ADMIN_TOKEN": ADMIN_TOKEN}
    with cli_emulator(tmp_path, env=env) as emu:
        assert any("admin:" in line and "Bearer <admin token>" in line for line in emu.banner)
        assert not any(ADMIN_TOKEN in line for line in emu.banner)
        assert admin(emu, "GET", "/emulator/v1/health", None)[0] == 401
        assert admin(emu, "GET", "/emulator/v1/health")[0] == 200


def test_cli_refuses_tokenless_admin_off_loopback() -> None:
    done = subprocess.run([sys.executable, "-m", "emulator", "--admin", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=30, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2
    assert "loopback" in done.stderr and "token" in done.stderr
