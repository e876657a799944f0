"""Profile of the hot path: py-spy samples the worker and the front (real ``livegate`` processes), and the
emulator they talk to (the upstream, which shares their cores), while N sessions run the scripted conversation; the collapsed stacks are reduced to the share of samples per leaf
function and per group (JSON/base64, protobuf, Redis, WebSocket/TLS, gRPC, asyncio/uvloop, livegate's own code).
The raw collapsed stacks are kept next to the results (profile-<role>-native.txt.gz)."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.load import STAGGER_S, run_sessions, transport_factory
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


IDLE = ("epoll_wait", "epoll_pwait")
# a thread pool's idle worker (waiting for work on its queue): py-spy samples it like a running thread
IDLE_FRAMES = ("PyThread_acquire_lock_timed", "_worker (concurrent/futures/thread.py")
WRITES = ("write (", "writev (", "sendmsg (", "send (", "sendto (")
READS = ("read (", "readv (", "recv (", "recvmsg (", "recvfrom (")


def _who(frames: list[str]) -> str:
    joined = ";".join(frames)
    if "redis/" in joined:
        return "Redis"
    if "grpc" in joined or "cygrpc" in joined:
        return "gRPC"
    if "websockets/" in joined or "ssl" in joined:
        return "WebSocket"
    return "other"


def classify(frames: list[str]) -> str | None:
    """A group for one stack (leaf last); None = idle (waiting in epoll)."""
    top = frames[-1]
    if any(top.startswith(w) for w in IDLE) or any(f.startswith(IDLE_FRAMES) for f in frames[-3:]):
        return None
    if any(top.startswith(w) for w in WRITES):
        return f"syscall: socket write ({_who(frames)})"
    if any(top.startswith(w) for w in READS):
        return f"syscall: socket read ({_who(frames)})"
    if top.startswith("getpid"):
        return ("syscall: getpid (asyncio.get_running_loop on CPython 3.11: asyncio.timeout per Redis reply, "
                "Queue.get, wait_for)")
    if top.startswith("getrandom"):
        return "syscall: getrandom (websockets client frame mask, os.urandom per frame)"
    for name, needles in GROUPS:
        if any(any(nd in f for nd in needles) for f in frames[-4:]):
            return name
    return "livegate + other Python / interpreter"


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
        total += count
        group = classify(frames)
        if group is None:
            idle += count
            continue
        groups[group] += count
        # the leaf, or for a syscall/C leaf, the innermost Python frame that led to it
        py = next((f for f in reversed(frames) if ".py:" in f), frames[-1])
        leaf[py if py is not frames[-1] and "(lib" in frames[-1] else frames[-1]] += count
    busy = max(1, total - idle)
    return {"samples": total, "idle_share": round(idle / max(1, total), 3),
            "groups": {k: round(v / busy, 4) for k, v in groups.most_common()},
            "top": [(k, round(v / busy, 4)) for k, v in leaf.most_common(25)]}


async def run(out: Path, *, sessions: int, seconds: float, native: bool = True) -> dict[str, Any]:
    spy = _py_spy()
    if spy is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    m = await main_stack(floor=False)
    res: dict[str, Any] = {"sessions": sessions, "seconds": seconds,
                           "py_spy": subprocess.run([spy, "--version"], capture_output=True, text=True).stdout.strip()}
    try:
        make = transport_factory("gateway", m.emulator, m.stubs()[0])
        load = asyncio.ensure_future(run_sessions(make, sessions, STAGGER_S + seconds + 4, ramp_s=STAGGER_S))
        await asyncio.sleep(STAGGER_S + 3)
        out.mkdir(parents=True, exist_ok=True)
        procs = {}
        for role, p in (("worker", m.workers[0]), ("front", m.fronts[0]), ("upstream", m.emulator.proc)):
            path = out / f"profile-{role}{'-native' if native else ''}.txt"
            procs[role] = (path, await asyncio.create_subprocess_exec(
                spy, "record", "--pid", str(p.pid), "--duration", str(int(seconds)), "--rate", "200",
                "--format", "raw", "--output", str(path), *(["--native"] if native else ["--nonblocking"]),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE))
        for role, (path, proc) in procs.items():
            _, err = await proc.communicate()
            if proc.returncode != 0 or not path.exists():
                res[role] = None
                res[f"{role}_error"] = err.decode()[-500:]
            else:
                text = path.read_text()
                res[role] = reduce(text)
                with gzip.open(str(path) + ".gz", "wt") as f:  # kept next to the results, compressed
                    f.write(text)
                path.unlink()
        await load
        await m.emulator.dump()
    finally:
        await m.aclose()
    return res
