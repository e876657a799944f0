"""Scenario 4, memory: RSS of the front and the worker (from /proc) with 1, 100 and 500 live sessions
(setup complete, idle), over the processes' RSS with no session after a warm-up session; per session =
delta / sessions. Sessions are opened through the front with the raw gRPC API."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.common import rss_bytes
from bench.load import new_key
from bench.script import OPEN_TIMEOUT_S, Gateway, converse
from bench.stacks import Main


async def _sessions_ended(main: Main, timeout_s: float = 20.0) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(main.stack.redis.url)  # type: ignore[union-attr]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            keys = [k async for k in r.scan_iter(match="lg:{*}:meta", count=1000)]
            if not keys:
                return
            await asyncio.sleep(0.2)
    finally:
        await r.aclose()


async def run(main: Main, sizes: list[int]) -> dict[str, Any]:
    stub = main.stubs()[0]
    front, worker = main.fronts[0], main.workers[0]
    # warm-up: code paths, connection pools, caches
    await converse(Gateway(stub), new_key(), duration_s=0.5, audio_in=True, turns=False)
    await _sessions_ended(main)
    await asyncio.sleep(0.5)
    base = {"front": rss_bytes(front.pid), "worker": rss_bytes(worker.pid)}
    rows = []
    for n in sizes:
        transports = [Gateway(stub) for _ in range(n)]

        async def open_one(i: int, t: Gateway) -> bool:
            await asyncio.sleep(i * min(2.0, n * 0.005) / n)
            try:
                async with asyncio.timeout(OPEN_TIMEOUT_S):
                    await t.open()
                return True
            except Exception:  # noqa: BLE001 - counted
                return False

        opened = await asyncio.gather(*(open_one(i, t) for i, t in enumerate(transports)))
        ok = sum(opened)
        await asyncio.sleep(1.0)
        rss = {"front": rss_bytes(front.pid), "worker": rss_bytes(worker.pid),
               "emulator": rss_bytes(main.emulator.proc.pid)}
        await asyncio.gather(*(t.close() for t in transports))
        per = {k: round((rss[k] - base[k]) / max(1, n) / 1024, 1) for k in ("front", "worker")}
        rows.append({"sessions": n, "set_up": ok, "rss_mib": {k: round(v / 2**20, 1) for k, v in rss.items()},
                     "per_session_kib": per, "per_session_total_kib": round(per["front"] + per["worker"], 1)})
        await _sessions_ended(main)
        await asyncio.sleep(0.5)
    return {"baseline_mib": {k: round(v / 2**20, 1) for k, v in base.items()}, "rows": rows}
