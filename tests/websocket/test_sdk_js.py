"""The official JavaScript SDK, @google/genai (pinned in package.json, installed by scripts/bootstrap.sh with
``npm ci``), through the gateway's Live API WebSocket endpoint over plain ``ws://`` (the SDK maps an ``http:``
base URL to ``ws:``): a text turn, an audio turn (manual activity, audio in and out), a function call, a resume
with the gateway handle, and an unknown model refused with 1008. Skipped only when node is not installed or
the npm packages are not (run scripts/bootstrap.sh)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "js" / "live.mjs"

EXPECTED = [
    '[text] You said: "Hello"',
    "[audio] audio/pcm;rate=24000 more than 0.1 s",
    "[tools] call turn_on_the_lights",
    '[tools] turn_on_the_lights returned {"result":"ok"}.',
    "[resume] handle lgh_...",
    '[resume] You asked: "Is the sky blue?"',
]


@pytest.fixture
def ws_tls() -> bool:
    return False


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed")
    if not (ROOT / "node_modules" / "@google" / "genai" / "package.json").exists():
        pytest.skip("@google/genai is not installed: run scripts/bootstrap.sh (npm ci)")
    return found


async def test_google_genai_js_through_the_gateway(node: str, base_url: str, stack: dict[str, Any]) -> None:
    assert base_url.startswith("http://")
    proc = await asyncio.create_subprocess_exec(node, str(SCRIPT), cwd=ROOT,
                                                env={**os.environ, "LIVEGATE_BASE_URL": base_url},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"node did not finish in 60 s\nstdout:\n{out.decode()}\nstderr:\n{err.decode()}")
    lines = out.decode().splitlines()
    assert proc.returncode == 0, f"stdout:\n{out.decode()}\nstderr:\n{err.decode()}"
    assert lines[:len(EXPECTED)] == EXPECTED, out.decode()
    assert lines[len(EXPECTED)].startswith("[error] Live connection closed before setup completed (code 1008): "
                                           "MODEL_NOT_FOUND: "), lines[len(EXPECTED)]
    assert lines[-1] == "all done"
