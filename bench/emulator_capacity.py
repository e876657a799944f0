"""How many paced audio sessions one emulator process carries (issue: "one emulator process serves at least 500
concurrent paced audio sessions on one core").

Each session speaks the Live API over TLS straight to the emulator (no gateway): setup with AUDIO replies, a
text turn whose ~4 s spoken answer is paced in real time, and 16 kHz input audio streamed in real time for the
whole window in chunks of ``--chunk-ms``. The emulator's CPU comes from /proc (utime + stime) over the window;
two load-generator processes share the sessions. Results go to docs/benchmarks/emulator.json and .md.

    python -m bench.emulator_capacity                 # 100, 250, 500 sessions at 20 ms and 100 ms chunks
    python -m bench.emulator_capacity --sessions 50 --seconds 5 --chunk-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def session(url: str, ctx: ssl.SSLContext, seconds: float, chunk_ms: int, stats: dict[str, float]) -> None:
    import base64

    import websockets

    frame = base64.b64encode(b"\x00\x00" * (16 * chunk_ms)).decode()
    async with websockets.connect(url, ssl=ctx, additional_headers={"x-goog-api-key": "bench"}, max_size=None,
                                  compression=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-live-2.5-flash",
                                            "generationConfig": {"responseModalities": ["AUDIO"]}}}))
        await ws.recv()
        await ws.send(json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [
            {"text": "say: this is a paced answer of a few seconds of speech"}]}], "turnComplete": True}}))

        async def reader() -> None:
            async for msg in ws:
                stats["frames_out"] += 1
                stats["bytes_out"] += len(msg)

        rd = asyncio.create_task(reader())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        n = 0
        msg = json.dumps({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": frame}}})
        while loop.time() - t0 < seconds:
            await ws.send(msg)
            n += 1
            stats["frames_in"] += 1
            lag = loop.time() - (t0 + n * chunk_ms / 1000)
            stats["max_lag_s"] = max(stats["max_lag_s"], lag)
            await asyncio.sleep(max(0.0, -lag))
        rd.cancel()


def generator(url: str, cert: str, n: int, seconds: float, chunk_ms: int, q: Any) -> None:
    async def main() -> dict[str, float]:
        ctx = ssl.create_default_context(cafile=cert)
        stats = {"frames_in": 0.0, "frames_out": 0.0, "bytes_out": 0.0, "max_lag_s": 0.0, "failed": 0.0}
        results = await asyncio.gather(*(session(url, ctx, seconds, chunk_ms, stats) for _ in range(n)),
                                       return_exceptions=True)
        stats["failed"] = sum(1 for r in results if isinstance(r, BaseException))
        return stats

    try:
        import uvloop

        q.put(uvloop.run(main()))
    except ImportError:  # pragma: no cover
        q.put(asyncio.run(main()))


def measure(sessions: int, seconds: float, chunk_ms: int, emulator_pid: int, url: str, cert: str) -> dict[str, Any]:
    q: Any = multiprocessing.get_context("spawn").Queue()
    half = [sessions - sessions // 2, sessions // 2]
    procs = [multiprocessing.get_context("spawn").Process(target=generator, args=(url, cert, h, seconds, chunk_ms, q))
             for h in half if h]
    c0, t0 = cpu_seconds(emulator_pid), time.monotonic()
    for p in procs:
        p.start()
    parts = [q.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    wall = time.monotonic() - t0
    cores = (cpu_seconds(emulator_pid) - c0) / wall
    total = {k: sum(p[k] for p in parts) for k in ("frames_in", "frames_out", "bytes_out", "failed")}
    return {"sessions": sessions, "chunk_ms": chunk_ms, "seconds": seconds, "emulator_cores": round(cores, 3),
            "emulator_cores_per_100_sessions": round(cores / sessions * 100, 3),
            "client_msgs_per_s": round(total["frames_in"] / wall), "server_msgs_per_s": round(total["frames_out"] / wall),
            "max_input_lag_s": round(max(p["max_lag_s"] for p in parts), 3), "failed_sessions": int(total["failed"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.emulator_capacity")
    ap.add_argument("--sessions", type=int, nargs="*", default=[100, 250, 500])
    ap.add_argument("--chunk-ms", type=int, nargs="*", default=[20, 100])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    port = free_port()
    cert_dir = tempfile.mkdtemp(prefix="lg-emu-bench-")
    emu = subprocess.Popen([sys.executable, "-m", "emulator", "--port", str(port), "--cert-dir", cert_dir,
                            "--pacing", "1", "--loop", "uvloop", "--log-level", "WARNING"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        cert_path = str(next(p for p in Path(cert_dir).iterdir() if "cert" in p.name))
        url = f"wss://127.0.0.1:{port}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
        rows = []
        for chunk in args.chunk_ms:
            for n in args.sessions:
                row = measure(n, args.seconds, chunk, emu.pid, url, cert_path)
                print(json.dumps(row), flush=True)
                rows.append(row)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "emulator.json").write_text(json.dumps({"machine": {"cores": os.cpu_count()}, "rows": rows}, indent=2))
        lines = ["# Emulator capacity", "", "One emulator process (uvloop, TLS), paced audio sessions: real-time input "
                 "audio in chunks of `chunk_ms`, one turn of ~4 s paced spoken reply each; two load-generator processes "
                 "on the same 2 cores. Reproduce: `python -m bench.emulator_capacity`.", "",
                 "| sessions | chunk ms | emulator cores | cores per 100 sessions | client msgs/s | server msgs/s | max input lag s | failed |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            lines.append(f"| {r['sessions']} | {r['chunk_ms']} | {r['emulator_cores']} | {r['emulator_cores_per_100_sessions']} | "
                         f"{r['client_msgs_per_s']} | {r['server_msgs_per_s']} | {r['max_input_lag_s']} | {r['failed_sessions']} |")
        (args.out / "emulator.md").write_text("\n".join(lines) + "\n")
    finally:
        emu.terminate()
        emu.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
