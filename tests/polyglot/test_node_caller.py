"""The Node.js caller (examples/node/caller.js) against a real in-process stack: a text turn, GetSession while
the session is live, a function-call round trip, and a gRPC error reported with its ErrorInfo.

The caller loads proto/ at run time with @grpc/proto-loader, so this also checks that the public API works for
a caller that never saw the Python stubs. Its npm packages (examples/node/package-lock.json) are installed with
`npm ci` only when examples/node/node_modules is missing or older than the lock file. Skipped only when
node/npm are not installed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "examples" / "node"
CALLER = NODE_DIR / "caller.js"
# npm writes this hidden lock file last, so its presence means a complete install.
INSTALLED = NODE_DIR / "node_modules" / ".package-lock.json"


@pytest.fixture(scope="module")
def node_caller() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: the Node.js caller (examples/node) cannot run")
    lock = NODE_DIR / "package-lock.json"
    if not INSTALLED.exists() or INSTALLED.stat().st_mtime < lock.stat().st_mtime:
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"npm ci failed in {NODE_DIR}:\n{result.stdout}\n{result.stderr}"
    return CALLER


async def run_caller(caller: Path, target: str, **env: str) -> tuple[int, str, str]:
    """Runs the caller without blocking the event loop the in-process stack runs on."""
    child_env = {**os.environ, "LIVEGATE_TARGET": target, "LIVEGATE_DEADLINE_S": "20",
                 # grpc-js reads the lower-case proxy variables only; never send loopback traffic to a proxy.
                 "no_grpc_proxy": "127.0.0.1,localhost", **env}
    proc = await asyncio.create_subprocess_exec("node", str(caller), cwd=NODE_DIR, env=child_env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"node caller did not finish in 60 s\nstdout:\n{out.decode()}\nstderr:\n{err.decode()}")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# The caller's whole output; {sid} are gateway session ids, {call} a function-call id.
EXPECTED = [
    r"connecting to {target}",
    r"\[text\]  session (?P<text_sid>s-\S+) \(seq 0\)",
    r"\[text\]  setup_complete \(seq 1\)",
    r"\[text\]  > Hello",
    r'\[text\]  < You said: "Hello"',
    r"\[text\]  turn_complete \(seq \d+\)",
    r"\[get\]   session (?P=text_sid): state=ACTIVE model=gemini-live-2.5-flash flavour={flavour} "
    r"client_messages=\d+ server_messages=\d+",
    r"\[text\]  stream ended: OK",
    r"\[tools\] session (?P<tools_sid>s-\S+) \(seq 0\)",
    r"\[tools\] setup_complete \(seq 1\)",
    r"\[tools\] > Turn on the lights please",
    r"\[tools\] < tool_call turn_on_the_lights\(\{\}\) id=(?P<call>\S+)",
    r'\[tools\] > tool_response turn_on_the_lights \{"result":"ok"\}',
    r'\[tools\] < turn_on_the_lights returned \{"result":"ok"\}\.',
    r"\[tools\] turn_complete \(seq \d+\)",
    r"\[tools\] stream ended: OK",
    r"all done",
]


async def assert_sessions_cleaned_up(redis: Any, timeout_s: float = 10.0) -> None:
    """Every session key is gone: the caller's half-closes ended its sessions (the worker deletes the keys just
    after the stream's end, so this polls up to a deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        left = [k async for k in redis.scan_iter(match="lg:{s-*")] + [k async for k in redis.scan_iter(match="lg:{t:*")]
        if not left:
            return
        assert loop.time() < deadline, f"session keys left in Redis after the node caller: {left}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("flavour", ["gemini", "vertex"])
async def test_node_caller(node_caller: Path, stack: dict[str, Any], flavour: str) -> None:
    target = stack["front"].address
    code, out, err = await run_caller(node_caller, target)
    assert code == 0, f"node caller exited {code}\nstdout:\n{out}\nstderr:\n{err}"
    pattern = "\n".join(line.replace("{target}", re.escape(target)).replace("{flavour}", flavour)
                        for line in EXPECTED) + "\n"
    match = re.fullmatch(pattern, out)
    assert match, f"unexpected output:\n{out}\nstderr:\n{err}"
    assert match["text_sid"] != match["tools_sid"]
    # the Gemini API's function-call ids, or Vertex's UUIDs, relayed unchanged
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    call_id = r"function-call-\d{1,19}" if flavour == "gemini" else uuid  # gemini: a 63-bit number, not zero-padded
    assert re.fullmatch(call_id, match["call"]), match["call"]
    await assert_sessions_cleaned_up(stack["redis"])


async def test_node_caller_reports_grpc_errors(node_caller: Path, stack: dict[str, Any]) -> None:
    code, out, err = await run_caller(node_caller, stack["front"].address, LIVEGATE_MODEL="no-such-model")
    assert code == 1, f"node caller exited {code}\nstdout:\n{out}\nstderr:\n{err}"
    lines = err.splitlines()
    assert lines[0].startswith("caller failed: gRPC error NOT_FOUND (5): model 'no-such-model' is not served"), err
    assert lines[1] == '  ErrorInfo reason=MODEL_NOT_FOUND domain=livegate.dev metadata={"retryable":"false"}', err
