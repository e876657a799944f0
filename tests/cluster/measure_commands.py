"""Redis commands (and redis-server CPU) per audio frame on the real stack, from ``INFO commandstats``.

    python -m tests.cluster.measure_commands [--cluster] [--frames 250] [--pace-ms 20]

One worker, one front, the emulator (20 ms output chunks, real-time pacing), one AUDIO session:

- client -> upstream: ``--frames`` silent 20 ms input frames (the emulator's VAD hears nothing, so nothing
  comes back), paced every ``--pace-ms`` ms (0: as fast as the client can send);
- upstream -> client: one spoken answer in 20 ms chunks; counted per server message the caller received.

Each phase starts with ``CONFIG RESETSTAT`` on every master; the background rate (heartbeats, idle XREAD
timeouts), measured over an idle phase, is subtracted. Not a test: prints a table (used in docs/redis.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from livegate.cli.devstack import RedisProcess, dev_stack
from tests.cluster.localcluster import RedisClusterProcess
from livegate.settings import Settings


USEC: Counter[str] = Counter()  # command time per command name, last phase


async def stats(ports: list[int]) -> tuple[Counter[str], float, float]:
    """(calls per command, command usec, redis-server CPU seconds) summed over the masters."""
    calls: Counter[str] = Counter()
    usec = 0.0
    cpu = 0.0
    USEC.clear()
    for port in ports:
        async with Redis(port=port) as r:
            for name, st in (await r.info("commandstats")).items():
                if name.startswith("cmdstat_config") or name.startswith("cmdstat_info"):
                    continue
                calls[name.removeprefix("cmdstat_").upper()] += int(st["calls"])
                usec += float(st["usec"])
                USEC[name.removeprefix("cmdstat_").upper()] += float(st["usec"])
            info = await r.info("cpu")
            cpu += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return calls, usec, cpu


async def reset(ports: list[int]) -> None:
    for port in ports:
        async with Redis(port=port) as r:
            await r.config_resetstat()


async def phase(ports: list[int], body: Any) -> tuple[Counter[str], float, float, float, Any]:
    await reset(ports)
    _, _, cpu0 = await stats(ports)
    t0 = time.monotonic()
    result = await body()
    elapsed = time.monotonic() - t0
    calls, usec, cpu1 = await stats(ports)
    return calls, usec, cpu1 - cpu0, elapsed, result


async def main(args: argparse.Namespace) -> None:
    from emulator.config import EmulatorConfig
    from livegate.client import Client

    logging.basicConfig(level=logging.WARNING)
    server: RedisProcess | RedisClusterProcess = RedisClusterProcess().start() if args.cluster else RedisProcess().start()
    ports = server.ports if isinstance(server, RedisClusterProcess) else [server.port]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(redis_url=server.url, front_listen="127.0.0.1:0", worker_capacity=max(10, args.sessions),
                                log_json=False, upstream_api_key="k", upstream_flavour="gemini")
            emu = EmulatorConfig(port=0, pacing=1.0, audio_chunk_ms=20, cert_dir=tmp)
            async with dev_stack(settings, workers=1, emulator_config=emu, start_redis=False) as parts, \
                    Client(parts["front"].address) as client:
                config = {"response_modalities": ["AUDIO"], "realtime_input_config": {
                    "automatic_activity_detection": {"disabled": True}}}
                async with contextlib.AsyncExitStack() as es:
                    sessions = [await es.enter_async_context(client.aio.live.connect(
                        model="gemini-live-2.5-flash", config=config)) for _ in range(args.sessions)]
                    for session in sessions:
                        await session.send_client_content(turns={"role": "user", "parts": [{"text": "warm up"}]})
                        async for _ in session.receive():
                            pass

                    async def idle() -> None:
                        await asyncio.sleep(args.idle_s)

                    async def send_frames(session: Any) -> None:
                        frame = b"\x00\x00" * 320
                        start = time.monotonic()
                        for i in range(args.frames):
                            await session.send_realtime_input(audio={"data": frame, "mime_type": "audio/pcm;rate=16000"})
                            if args.pace_ms:
                                await asyncio.sleep(max(0.0, start + (i + 1) * args.pace_ms / 1000 - time.monotonic()))

                    async def c2s() -> int:
                        await asyncio.gather(*(send_frames(s) for s in sessions))
                        # the last frame has reached the upstream once the worker counted it
                        w = parts["workers"][0]
                        while w.stats.c2s < sent0 + args.frames * len(sessions):
                            await asyncio.sleep(0.005)
                        return args.frames * len(sessions)

                    async def answer(session: Any) -> int:
                        await session.send_client_content(turns={"role": "user", "parts": [{"text": args.say}]})
                        n = 0
                        async for m in session.receive_raw():
                            n += 1
                            if m.server_content.turn_complete:
                                break
                        return n

                    async def s2c() -> int:
                        return sum(await asyncio.gather(*(answer(s) for s in sessions)))

                    idle_calls, idle_usec, idle_cpu, idle_t, _ = await phase(ports, idle)
                    sent0 = parts["workers"][0].stats.c2s
                    rows = []
                    for name, body in (("client->upstream (per input frame)", c2s),
                                       ("upstream->client (per server message)", s2c)):
                        calls, usec, cpu, t, n = await phase(ports, body)
                        k = t / idle_t
                        net = {c: calls[c] - idle_calls.get(c, 0) * k for c in calls}
                        per_cmd = {c: USEC[c] / n for c in USEC if USEC[c] / n >= 0.05}
                        rows.append((name, n, t, net, (usec - idle_usec * k) / n, (cpu - idle_cpu * k) / n, per_cmd))
    finally:
        server.stop()
    print(f"redis: {'cluster of 3 masters' if args.cluster else 'single node'}; {args.sessions} session(s); input pacing "
          f"{args.pace_ms or 'none'} ms; idle background per second: "
          + ", ".join(f"{c} {v / idle_t:.1f}" for c, v in sorted(idle_calls.items())))
    for name, n, t, net, usec, cpu, per_cmd in rows:
        total = sum(net.values())
        detail = ", ".join(f"{c} {v / n:.2f}" for c, v in sorted(net.items(), key=lambda kv: -kv[1]) if v / n >= 0.005)
        print(f"{name}: n={n} in {t:.2f}s -> {total / n:.2f} commands ({detail}); "
              f"{usec:.1f} us command time ({', '.join(f'{c} {u:.1f}' for c, u in sorted(per_cmd.items()))}), "
              f"{cpu * 1e6:.0f} us redis-server CPU")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster", action="store_true")
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--pace-ms", type=float, default=20.0)
    p.add_argument("--idle-s", type=float, default=3.0)
    p.add_argument("--say", default="say: " + "the quick brown fox jumps over the lazy dog " * 3)
    asyncio.run(main(p.parse_args()))
