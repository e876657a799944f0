"""Profile of the hot path: py-spy samples the worker and the front (real ``livegate`` processes) while N
sessions run the scripted conversation; the collapsed stacks are reduced to the share of samples per leaf
function and per group (JSON/base64, protobuf, Redis, WebSocket/TLS, gRPC, asyncio/uvloop, livegate's own code).
The raw collapsed stacks are kept next to the results (profile-<role>.txt)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.load import run_sessions, transport_factory
from bench.stacks import main_stack

GROUPS = (  # first match wins, on the whole stack from the leaf up
    ("JSON (orjson) / base64", ("orjson", "base64", "b64encode", "b64decode", "binascii")),
    ("protobuf / codec", ("codec.py", "protobuf", "SerializeToString", "FromString", "json_format", "ParseFromString")),
    ("Redis client (redis-py, hiredis)", ("redis/", "hiredis")),
    ("WebSocket / TLS (websockets, ssl)", ("websockets/", "ssl.py", "_ssl")),
    ("gRPC (grpc.aio, cygrpc)", ("grpc/", "cygrpc", "_cython")),
    ("asyncio / uvloop machinery", ("asyncio/", "uvloop")),
)


def _py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def reduce(collapsed: str) -> dict[str, Any]:
    leaf: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = idle = 0
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        top = frames[-1]
        total += count
        if any(w in top for w in ("select", "epoll", "poll (", "_run_once", "run_forever")) and "uvloop" not in top:
            idle += count
        leaf[top] += count
        for name, needles in GROUPS:
            if any(any(nd in f for nd in needles) for f in frames[-3:]):
                groups[name] += count
                break
        else:
            groups["livegate + other Python"] += count
    busy = max(1, total)
    return {"samples": total, "idle_share": round(idle / busy, 3),
            "groups": {k: round(v / busy, 4) for k, v in groups.most_common()},
            "top": [(k, round(v / busy, 4)) for k, v in leaf.most_common(25)]}


async def run(out: Path, *, sessions: int, seconds: float) -> dict[str, Any]:
    spy = _py_spy()
    if spy is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    m = await main_stack(floor=False)
    res: dict[str, Any] = {"sessions": sessions, "seconds": seconds,
                           "py_spy": subprocess.run([spy, "--version"], capture_output=True, text=True).stdout.strip()}
    try:
        make = transport_factory("gateway", m.emulator, m.stubs()[0])
        load = asyncio.ensure_future(run_sessions(make, sessions, seconds + 4))
        await asyncio.sleep(3)
        out.mkdir(parents=True, exist_ok=True)
        procs = {}
        for role, p in (("worker", m.workers[0]), ("front", m.fronts[0])):
            path = out / f"profile-{role}.txt"
            procs[role] = (path, await asyncio.create_subprocess_exec(
                spy, "record", "--pid", str(p.pid), "--duration", str(int(seconds)), "--rate", "200",
                "--format", "raw", "--nonblocking", "--output", str(path),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE))
        for role, (path, proc) in procs.items():
            _, err = await proc.communicate()
            if proc.returncode != 0 or not path.exists():
                res[role] = None
                res[f"{role}_error"] = err.decode()[-500:]
            else:
                res[role] = reduce(path.read_text())
        await load
        await m.emulator.dump()
    finally:
        await m.aclose()
    return res
