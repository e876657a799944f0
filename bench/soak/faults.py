"""The soak's faults: the fleet of processes they kill, stop and replace (:class:`Fleet`), the emulator's
admin API that breaks upstream sockets (:class:`Emulator`), and the schedule (:func:`fault_loop`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import ssl
import time
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from bench.common import Proc, Stack

if TYPE_CHECKING:
    from bench.soak.caller import Caller, Counts

ADMIN_TOKEN = "soak-admin-token"
PROCESS_FAULTS = ("worker_kill", "worker_stop", "worker_term", "front_kill", "front_stop", "front_term")
OTHER_FAULTS = ("redis_kill", "upstream_1011", "upstream_drop", "caller_reattach", "caller_resume")
FAULTS = PROCESS_FAULTS + OTHER_FAULTS


class Fleet:
    """The soak's processes: the emulator, fronts and workers that faults kill and replace."""

    def __init__(self, stack: Stack, env: dict[str, Any], fronts: int, workers: int) -> None:
        self.stack = stack
        self.env = env
        self.n_fronts, self.n_workers = fronts, workers
        self.fronts: list[Proc] = []
        self.workers: list[Proc] = []
        self.stopped: set[int] = set()  # pids SIGSTOPped right now (not targets of another fault)

    async def start(self) -> None:
        self.workers = list(await asyncio.gather(*(self.stack.worker(capacity=400, **self.env)
                                                   for _ in range(self.n_workers))))
        self.fronts = list(await asyncio.gather(*(self.stack.front(**self.env) for _ in range(self.n_fronts))))

    def live_fronts(self) -> list[str]:
        return [p.address for p in self.fronts if p.popen.poll() is None and p.pid not in self.stopped] or \
            [p.address for p in self.fronts if p.popen.poll() is None]

    async def replace(self, role: str, victim: Proc) -> None:
        pool = self.fronts if role == "front" else self.workers
        with contextlib.suppress(ValueError):
            pool.remove(victim)
        fresh = await (self.stack.front(**self.env) if role == "front" else self.stack.worker(capacity=400, **self.env))
        pool.append(fresh)

    async def process_fault(self, kind: str, ttl_s: float) -> None:
        role, action = kind.split("_")
        pool = [p for p in (self.fronts if role == "front" else self.workers)
                if p.popen.poll() is None and p.pid not in self.stopped]
        if len(pool) < 2:  # keep one of each role serving
            return
        victim = random.choice(pool)
        if action == "stop":
            self.stopped.add(victim.pid)
            victim.kill(signal.SIGSTOP)
            await asyncio.sleep(ttl_s + 2.0)  # past the heartbeat TTL: the fleet declares it dead
            victim.kill(signal.SIGCONT)
            self.stopped.discard(victim.pid)
            return
        victim.kill(signal.SIGKILL if action == "kill" else signal.SIGTERM)
        deadline = time.monotonic() + 30
        while victim.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await self.replace(role, victim)


class Emulator:
    """The emulator's admin API (fault injection, conversations, live sessions)."""

    def __init__(self, url: str, cert: str) -> None:
        self.url = url
        self.ctx = ssl.create_default_context(cafile=cert)

    def _call(self, method: str, path: str, query: dict[str, Any] | None = None) -> Any:
        q = f"?{urllib.parse.urlencode(query)}" if query else ""
        req = urllib.request.Request(f"{self.url}/emulator/v1/{path}{q}", method=method,
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    async def call(self, method: str, path: str, query: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self._call, method, path, query)

    async def inject(self, **rule: Any) -> bool:
        sessions = (await self.call("GET", "sessions"))["sessions"]
        if not sessions:
            return False
        target = random.choice(sessions)
        await self.call("POST", "faults", {"target": target["session_id"], "when": "immediately", **rule})
        return True


async def fault_loop(kinds: list[str], duration_s: float, fleet: Fleet, emu: Emulator, callers: list[Caller],
                     counts: Counts, redis_url: str, ttl_s: float) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(redis_url)
    start = time.monotonic()
    random.shuffle(kinds)
    gap = duration_s / (len(kinds) + 1)
    running: set[asyncio.Task[Any]] = set()
    try:
        for i, kind in enumerate(kinds):
            await asyncio.sleep(max(0.0, start + gap * (i + 1) - time.monotonic()))
            if kind in PROCESS_FAULTS:
                task = asyncio.create_task(fleet.process_fault(kind, ttl_s))
                running.add(task)
                task.add_done_callback(running.discard)
            elif kind == "redis_kill":
                await r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            elif kind == "upstream_1011":
                if not await emu.inject(action="close", close="internal"):
                    continue
            elif kind == "upstream_drop":
                if not await emu.inject(action="drop"):
                    continue
            else:  # a caller's own fault, at its next chance
                random.choice([c for c in callers if c.pending_fault is None] or callers).pending_fault = kind
            counts.faults[kind] += 1
            counts.event("fault", kind)
        await asyncio.gather(*running)
    finally:
        await r.aclose()
