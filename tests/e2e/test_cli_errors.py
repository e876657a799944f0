"""A person's mistakes at start end with one line that names what to fix, never a traceback, and a busy
port is never shared with an unrelated stack."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import pytest

from livegate import __version__
from livegate.cli.devstack import free_port
from livegate.settings import Settings, unknown_env
from service.server import Front
from tests.e2e.test_cli import run


def _one_line_error(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("livegate:") and "warning" not in line]
    assert "Traceback" not in out, out
    assert len(lines) == 1, out
    return lines[0]


async def test_version() -> None:
    code, out = await run("--version", timeout_s=30)
    assert code == 0 and out.strip() == f"livegate {__version__}"


async def test_unreachable_redis_names_the_setting() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    for role in ("front", "worker"):
        code, out = await run(role, "--redis-url", dead, timeout_s=60, env={"LIVEGATE_METRICS_LISTEN": ""})
        assert code == 2, out
        line = _one_line_error(out)
        assert "LIVEGATE_REDIS_URL" in line and dead in line, line


async def test_dev_honours_livegate_redis_url(redis_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    code, out = await run("dev", "--listen", "127.0.0.1:0", timeout_s=60,
                          env={"LIVEGATE_REDIS_URL": dead, "REDIS_URL": ""})
    assert code == 2, out
    assert "LIVEGATE_REDIS_URL" in _one_line_error(out)
    # and a reachable one is used, not a private redis-server
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livegate.cli", "dev", "--listen", "127.0.0.1:0", "--pacing", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "LIVEGATE_REDIS_URL": redis_url, "REDIS_URL": ""})
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            while b"livegate dev: front on" not in (line := await proc.stdout.readline()):
                assert line, "dev exited before it started"
        assert f"redis at {redis_url}".encode() in line, line
    finally:
        proc.terminate()
        await proc.wait()


async def test_misspelled_settings_are_warned_about() -> None:
    assert unknown_env({"LIVEGATE_REDIS_ULR": "x", "LIVEGATE_REDIS_URL": "y", "PATH": "/bin",
                        "LIVEGATE_EMULATOR_ADMIN_TOKEN": "t"}) == [
        "LIVEGATE_REDIS_ULR is not a livegate setting and is ignored; did you mean LIVEGATE_REDIS_URL?"]
    code, out = await run("front", "--redis-url", f"redis://127.0.0.1:{free_port()}/0", timeout_s=60,
                          env={"LIVEGATE_WORKER_CAPACTY": "3"})
    assert "LIVEGATE_WORKER_CAPACTY is not a livegate setting and is ignored; did you mean LIVEGATE_WORKER_CAPACITY?" in out


async def test_a_busy_port_fails_loudly(redis: Any, redis_url: str) -> None:
    """grpc sets SO_REUSEPORT by default: a second front on the same port used to bind too, and the kernel
    split the callers between two unrelated stacks."""
    port = free_port()
    settings = Settings(redis_url=redis_url, front_listen=f"127.0.0.1:{port}").with_ids("front")
    first = Front(settings)
    await first.start()
    try:
        second = Front(settings.model_copy(update={"front_id": ""}).with_ids("front"))
        with pytest.raises(OSError, match=f"could not listen on 127.0.0.1:{port}.*in use"):
            await second.start()
        await second.aclose()
        assert await redis.zscore("lg:{fleet}:fronts", second.id) is None  # it registered nowhere
    finally:
        await first.aclose()
