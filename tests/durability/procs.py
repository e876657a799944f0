"""Real livegate processes for fault tests: workers and fronts started as ``python -m livegate.cli ...``
subprocesses, so they can be SIGKILLed and SIGTERMed like pods."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

from livegate.cli.devstack import free_port


@contextlib.asynccontextmanager
async def emulator_server(tmp_path_factory: Any, **config: Any) -> AsyncIterator[Any]:
    """The emulator (real TLS, the run's certificate) configured for one test module, e.g. real-time pacing."""
    from emulator.config import EmulatorConfig
    from emulator.server import EmulatorServer

    emu = EmulatorServer(EmulatorConfig(port=0, cert_dir=str(tmp_path_factory.getbasetemp() / "emulator-cert"), **config))
    await emu.start()
    try:
        yield emu
    finally:
        await emu.aclose()


class Proc:
    def __init__(self, role: str, proc: subprocess.Popen[bytes], ident: str, address: str = "",
                 metrics_port: int = 0, log_path: str = "") -> None:
        self.role = role
        self.log_path = log_path  # its stderr (the log), if the stack captures logs
        self.metrics_port = metrics_port
        self.proc = proc
        self.id = ident
        self.address = address

    def __repr__(self) -> str:
        return f"<Proc {self.role} {self.id} pid={self.proc.pid}>"

    def log(self) -> str:
        """What the process logged so far (a stack made with ``logs_dir``)."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)

    async def wait(self, timeout_s: float) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.proc.poll() is None:
            if loop.time() > deadline:
                raise TimeoutError(f"{self} did not exit within {timeout_s}s")
            await asyncio.sleep(0.05)
        return int(self.proc.returncode)


class ProcStack:
    """Workers and fronts as subprocesses sharing one Redis and one upstream (the in-process emulator)."""

    def __init__(self, redis_url: str, emulator: Any, *, logs_dir: str = "", **env: Any) -> None:
        self.env = {**os.environ, "LIVEGATE_REDIS_URL": redis_url, "LIVEGATE_UPSTREAM_URL": emulator.url,
                    "LIVEGATE_UPSTREAM_CA_FILE": str(emulator.cert_path), "LIVEGATE_UPSTREAM_API_KEY": "test-key",
                    "LIVEGATE_LOG_JSON": "false", "LIVEGATE_HEARTBEAT_INTERVAL_S": "0.2",
                    "LIVEGATE_HEARTBEAT_TTL_S": "1.0", "LIVEGATE_SETUP_TIMEOUT_S": "10",
                    **{f"LIVEGATE_{k.upper()}": str(v) for k, v in env.items()}}
        self.procs: list[Proc] = []
        self.logs_dir = logs_dir  # set: each process's stderr goes to a file there (Proc.log), not the terminal

    async def _start(self, role: str, args: list[str], pattern: str) -> Proc:
        metrics_port = free_port()
        env = {**self.env, "LIVEGATE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"}
        log_path = os.path.join(self.logs_dir, f"{role}-{len(self.procs)}.log") if self.logs_dir else ""
        with open(log_path, "wb") if log_path else contextlib.nullcontext() as log:
            proc = subprocess.Popen([sys.executable, "-m", "livegate.cli", role, *args], env=env,
                                    stdout=subprocess.PIPE, stderr=log)
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=30)
        m = re.search(pattern, line.decode())
        if not m:
            proc.kill()
            raise RuntimeError(f"{role} did not start: {line!r}")
        p = Proc(role, proc, m.group(1), m.groupdict().get("addr") or "", metrics_port, log_path)
        self.procs.append(p)
        return p

    async def worker(self, capacity: int = 10) -> Proc:
        return await self._start("worker", ["--capacity", str(capacity)], r"livegate worker (\S+) started")

    async def front(self) -> Proc:
        return await self._start("front", ["--listen", f"127.0.0.1:{free_port()}"],
                                 r"livegate front (\S+) listening on (?P<addr>\S+)")

    async def aclose(self) -> None:
        for p in self.procs:
            if p.proc.poll() is None:
                p.proc.terminate()
        for p in self.procs:
            try:
                await p.wait(15)
            except TimeoutError:
                p.proc.kill()
                p.proc.wait()
            if p.proc.stdout:
                p.proc.stdout.close()
