"""Shared machinery of the benchmark: processes (Redis, the stamping emulator, livegate workers and fronts,
the floor chain), /proc CPU and RSS sampling, Redis INFO commandstats, Prometheus scrapes, percentiles.

Everything listens on 127.0.0.1 and every process started here is stopped by the Stack that started it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from livegate.cli.devstack import RedisProcess, free_port

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- statistics ---------------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def summary_ms(values_s: list[float]) -> dict[str, Any]:
    """p50/p99/max in milliseconds of a list of seconds."""
    if not values_s:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(values_s), "p50": round(pct(values_s, 50) * 1e3, 3), "p99": round(pct(values_s, 99) * 1e3, 3),
            "max": round(max(values_s) * 1e3, 3)}


def diff_ms(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """a - b per percentile (the added latency of a over the baseline b)."""
    out: dict[str, Any] = {}
    for k in ("p50", "p99", "max"):
        out[k] = None if a.get(k) is None or b.get(k) is None else round(a[k] - b[k], 3)
    return out


# -- /proc ------------------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children are ignored) in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / CLK_TCK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError):
        return 0


class CpuMeter:
    """CPU seconds per named process over a window: ``start()`` ... ``stop()`` -> {name: cores}."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._t0 = 0.0
        self._c0: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._c0 = {n: cpu_seconds(p) for n, p in self.pids.items()}

    def stop(self) -> dict[str, float]:
        dt = max(1e-6, time.monotonic() - self._t0)
        return {n: round((cpu_seconds(p) - self._c0[n]) / dt, 3) for n, p in self.pids.items()}


@contextlib.contextmanager
def no_gc_pauses() -> Iterator[None]:
    """The load generator's own garbage collector stays out of a measurement: a full collection of this
    process (results, gRPC and protobuf objects of earlier steps) took up to 67 ms, which the stamps taken
    here would have counted as relay latency. Collected after the window instead."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()


def machine_times() -> list[float]:
    """The machine's CPU time counters (/proc/stat, first line): user nice system idle iowait irq softirq
    steal ..."""
    with open("/proc/stat") as f:
        return [float(x) for x in f.readline().split()[1:]]


def machine_split(before: list[float], after: list[float]) -> dict[str, float]:
    """Cores of the whole machine between two ``machine_times``: busy in processes (user), in the kernel
    (system, interrupts), idle, and **stolen**: time this VM's vCPUs were runnable but the hypervisor ran
    something else. Steal is capacity the box did not have during the window (it was 10-23 % here)."""
    d = [b - a for a, b in zip(before, after)]
    total = sum(d[:8])
    if total <= 0:
        return {}
    n = os.cpu_count() or 1

    def cores(x: float) -> float:
        return round(x / total * n, 3)

    return {"user": cores(d[0] + d[1]), "kernel": cores(d[2] + d[5] + d[6]), "idle": cores(d[3] + d[4]),
            "stolen": cores(d[7])}


def busy_cores(window_s: float = 0.5) -> float:
    """Cores the whole machine kept busy over ``window_s`` (/proc/stat; blocking)."""
    def sample() -> tuple[float, float]:
        with open("/proc/stat") as f:
            v = [float(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0.0)  # idle + iowait
        return sum(v), idle

    t0, i0 = sample()
    time.sleep(window_s)
    t1, i1 = sample()
    total = t1 - t0
    return 0.0 if total <= 0 else (1.0 - (i1 - i0) / total) * (os.cpu_count() or 1)


async def settle(*, below_cores: float = 0.3, timeout_s: float = 20.0) -> float:
    """Wait until the machine is quiet (what the previous scenario left running has wound down), bounded;
    returns the last busy-cores reading, recorded with the scenario."""
    deadline = time.monotonic() + timeout_s
    busy = await asyncio.to_thread(busy_cores)
    while busy > below_cores and time.monotonic() < deadline:
        busy = await asyncio.to_thread(busy_cores)
    return round(busy, 2)


def aggregate_roles(cores: dict[str, float]) -> dict[str, float]:
    """{'front-1': x, 'front-2': y, 'worker-1': z} -> {'front': x+y, 'worker': z, ...}."""
    out: dict[str, float] = {}
    for name, v in cores.items():
        role = name.split("-")[0]
        out[role] = round(out.get(role, 0.0) + v, 3)
    return out


# -- Redis --------------------------------------------------------------------------------------------------

async def commandstats(url: str) -> dict[str, int]:
    import redis.asyncio as aioredis

    r = aioredis.from_url(url)
    try:
        info = await r.info("commandstats")
    finally:
        await r.aclose()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def commandstats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    keys = set(before) | set(after)
    d = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return {k: v for k, v in sorted(d.items(), key=lambda kv: -kv[1]) if v > 0 and k not in ("info",)}


# -- Prometheus -----------------------------------------------------------------------------------------------

def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as r:  # noqa: S310 - loopback
        return r.read().decode()


_BUCKET = re.compile(r'^livegate_added_latency_seconds_bucket\{direction="(\w+)",le="([^"]+)"\} ([0-9.e+]+)$')


def latency_buckets(text: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for line in text.splitlines():
        m = _BUCKET.match(line)
        if m:
            le = math.inf if m.group(2) == "+Inf" else float(m.group(2))
            out.setdefault(m.group(1), []).append((le, float(m.group(3))))
    return out


def histogram_quantiles(before: dict[str, list[tuple[float, float]]], after: dict[str, list[tuple[float, float]]]
                        ) -> dict[str, dict[str, Any]]:
    """p50/p90/p99 upper bounds (bucket edges, ms) of the observations between two scrapes, per direction."""
    out: dict[str, dict[str, Any]] = {}
    for direction, buckets in after.items():
        prev = dict(before.get(direction, []))
        cum = [(le, n - prev.get(le, 0.0)) for le, n in sorted(buckets)]
        total = cum[-1][1] if cum else 0
        row: dict[str, Any] = {"n": int(total)}
        for q in (50, 90, 99):
            edge = next((le for le, n in cum if total and n >= total * q / 100), None)
            row[f"p{q}_le"] = None if edge is None else (edge if math.isinf(edge) else round(edge * 1e3, 3))
        out[direction] = row
    return out


# -- processes ------------------------------------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    ident: str = ""
    address: str = ""
    metrics: str = ""
    ws: str = ""  # a front's Live API WebSocket endpoint (ws://host:port)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)


@dataclass
class Emulator:
    proc: Proc
    url: str
    cert: str
    stamps_path: str

    @property
    def gemini_ws(self) -> str:
        host = self.url.split("://", 1)[1]
        return f"wss://{host}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"

    def ssl_context(self) -> Any:
        import ssl

        return ssl.create_default_context(cafile=self.cert)

    async def dump(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Ask the emulator for its stamps (and forget them there)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.stamps_path)
        self.proc.kill(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while not os.path.exists(self.stamps_path):
            if time.monotonic() > deadline:
                raise TimeoutError("emulator did not dump its stamps")
            await asyncio.sleep(0.05)
        with open(self.stamps_path, "rb") as f:
            import orjson

            return orjson.loads(f.read())


@dataclass
class Stack:
    """Processes of one measurement; ``aclose()`` stops them all (SIGTERM, then SIGKILL)."""

    tmp: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="livegate-bench-"))
    procs: list[Proc] = field(default_factory=list)
    redis: RedisProcess | None = None
    emulator: Emulator | None = None
    env: dict[str, str] = field(default_factory=dict)
    _started: dict[str, int] = field(default_factory=dict)  # processes started per role

    def pids(self) -> dict[str, int]:
        out = {p.name: p.pid for p in self.procs if p.popen.poll() is None}
        if self.redis and self.redis.proc:
            out["redis"] = self.redis.proc.pid
        out["loadgen"] = os.getpid()
        return out

    def start_redis(self) -> str:
        self.redis = RedisProcess().start()
        return self.redis.url

    def _name(self, role: str) -> str:
        """``role-N``, numbered when asked, not when the process is up: processes started together (gather)
        get distinct names, logs and CPU rows."""
        n = self._started[role] = self._started.get(role, 0) + 1
        return f"{role}-{n}"

    async def _spawn(self, name: str, argv: list[str], pattern: str, env: dict[str, str] | None = None) -> Proc:
        log = os.path.join(self.tmp, f"{name}.log")
        with open(log, "wb") as stderr:  # the child keeps its own descriptor
            popen = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=stderr)
        assert popen.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(popen.stdout.readline), timeout=60)
        m = re.search(pattern, line.decode())
        if not m:
            popen.kill()
            popen.wait()
            popen.stdout.close()
            raise RuntimeError(f"{name} did not start: {line!r} (log: {log})")
        p = Proc(name, popen, m.group(1), (m.groupdict().get("addr") or ""))
        self.procs.append(p)
        return p

    async def start_emulator(self, *, pacing: float = 1.0, audio_chunk_ms: int = 20, lifetime_s: float = 600.0,
                             go_away_lead_s: float = 50.0) -> Emulator:
        stamps = os.path.join(self.tmp, "stamps.json")
        p = await self._spawn("emulator", [sys.executable, "-m", "bench.emu", "--pacing", str(pacing),
                                           "--audio-chunk-ms", str(audio_chunk_ms), "--lifetime-s", str(lifetime_s),
                                           "--go-away-lead-s", str(go_away_lead_s), "--stamps", stamps,
                                           "--cert-dir", os.path.join(tempfile.gettempdir(), "livegate-bench-cert")],
                              r"emulator (\S+) (?P<addr>\S+)")
        self.emulator = Emulator(p, p.ident, p.address, stamps)
        return self.emulator

    def livegate_env(self, **extra: Any) -> dict[str, str]:
        assert self.redis and self.emulator
        env = {"LIVEGATE_REDIS_URL": self.redis.url, "LIVEGATE_UPSTREAM_URL": self.emulator.url,
               "LIVEGATE_UPSTREAM_CA_FILE": self.emulator.cert, "LIVEGATE_UPSTREAM_API_KEY": "bench-key",
               "LIVEGATE_LOG_JSON": "false", "LIVEGATE_LOG_LEVEL": "WARNING", "LIVEGATE_SETUP_TIMEOUT_S": "30",
               "GRPC_VERBOSITY": "ERROR"}
        env.update({f"LIVEGATE_{k.upper()}": str(v) for k, v in extra.items()})
        return env

    async def worker(self, capacity: int = 1000, **extra: Any) -> Proc:
        metrics = f"127.0.0.1:{free_port()}"
        p = await self._spawn(self._name("worker"), [sys.executable, "-m", "livegate.cli", "worker", "--capacity", str(capacity)],
                              r"livegate worker (\S+) started",
                              self.livegate_env(metrics_listen=metrics, **extra))
        p.metrics = metrics
        return p

    async def front(self, **extra: Any) -> Proc:
        """A front serving gRPC and, on a port of its own, the Live API WebSocket protocol (``p.ws``)."""
        metrics = f"127.0.0.1:{free_port()}"
        extra.setdefault("ws_listen", f"127.0.0.1:{free_port()}")
        p = await self._spawn(self._name("front"), [sys.executable, "-m", "livegate.cli", "front", "--listen",
                                             f"127.0.0.1:{free_port()}"],
                              r"livegate front (\S+) listening on (?P<addr>\S+)",
                              self.livegate_env(metrics_listen=metrics, **extra))
        p.metrics = metrics
        p.ws = f"ws://{extra['ws_listen']}"
        return p

    async def floor_proc(self, role: str, *args: str) -> Proc:
        return await self._spawn(self._name(f"floor{role}"), [sys.executable, "-m", "bench.floor", role, *args],
                                 r"floor \S+ (\S+) (?P<addr>\S+)")

    async def aclose(self) -> None:
        for p in self.procs:
            p.kill(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in self.procs:
            while p.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if p.popen.poll() is None:
                p.popen.kill()
                p.popen.wait()
            if p.popen.stdout:
                p.popen.stdout.close()
        self.procs.clear()
        if self.redis:
            self.redis.stop()
            self.redis = None


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
