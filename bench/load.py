"""Run N scripted sessions at once, directly or through livegate, and join them with the emulator's stamps."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from typing import Any

from bench.common import (CpuMeter, Emulator, aggregate_roles, commandstats, commandstats_delta,
                          histogram_quantiles, latency_buckets, machine_split, machine_times, no_gc_pauses, scrape,
                          summary_ms)
from bench.script import Direct, Gateway, SessionResult, converse, match

_keys = itertools.count(1)

# How sessions start. By default their starts are spread over one scripted turn (~3.3 s, bench/script.py), so
# the turn boundaries of different sessions fall at independent moments, as in a fleet of independent calls.
# Identical scripts started 10 ms apart ("phase-locked", ``stagger_s=None``) change turns in lockstep: every
# session's turn end, next turn and reply synthesis land in the same half second, every 3.3 s, a burst no
# fleet of independent callers produces and that the floor chain (no turns) never sees. The capacity scenario
# still runs that shape once at livegate's maximum, as a stress row.
STAGGER_S = 3.5


def ramp_for(n: int, stagger_s: float | None) -> float:
    """Seconds over which ``n`` sessions start."""
    if n <= 1:
        return 0.0
    return min(2.0, n * 0.01) if stagger_s is None else stagger_s


def new_key() -> str:
    return f"bs{next(_keys)}"


async def run_sessions(make: Any, n: int, duration_s: float, *, ramp_s: float | None = None,
                       **kw: Any) -> tuple[list[SessionResult], float]:
    """``make()`` -> a transport; session i starts at i * ramp / n (ramp: ``ramp_s``, or phase-locked).
    Returns the results and the time the last session started (the start of the steady state)."""
    ramp = ramp_for(n, None) if ramp_s is None else ramp_s
    t0 = time.time()

    async def one(i: int) -> SessionResult:
        await asyncio.sleep(i * ramp / max(1, n))
        return await converse(make(), new_key(), duration_s=duration_s, **kw)

    results = await asyncio.gather(*(one(i) for i in range(n)))
    return list(results), t0 + ramp


GEMINI_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


def transport_factory(mode: str, emulator: Emulator, stub: Any = None) -> Any:
    """``direct`` (the emulator's WebSocket), ``gateway`` (livegate's gRPC ``Connect`` on ``stub``) or
    ``gateway_ws`` (livegate's Live API WebSocket endpoint at ``stub``, a front's ``ws://host:port``: the
    direct client's own code, pointed at the gateway)."""
    if mode == "direct":
        ctx = emulator.ssl_context()
        return lambda: Direct(emulator.gemini_ws, ctx)
    if mode == "gateway_ws":
        return lambda: Direct(stub + GEMINI_PATH, None)
    return lambda: Gateway(stub)


async def measure(mode: str, emulator: Emulator, n: int, duration_s: float, warmup_s: float,
                  stub: Any = None, on_steady: Any = None, stagger_s: float | None = STAGGER_S) -> dict[str, Any]:
    """One load run: n sessions started over the ramp, then warmup, then ``duration_s`` with all of them
    running (the steady window: the only latencies kept)."""
    make = transport_factory(mode, emulator, stub)
    with no_gc_pauses():
        return await _measure(make, mode, emulator, n, duration_s, warmup_s, on_steady, ramp_for(n, stagger_s))


async def _measure(make: Any, mode: str, emulator: Emulator, n: int, duration_s: float, warmup_s: float,
                   on_steady: Any, ramp: float) -> dict[str, Any]:
    session_s = ramp + warmup_s + duration_s  # the first session runs to the end of the steady window
    task = asyncio.ensure_future(run_sessions(make, n, session_s, ramp_s=ramp))
    steady = None
    if on_steady is not None:
        await asyncio.sleep(ramp + warmup_s + 1.0)  # setups take a moment too
        steady = await on_steady(duration_s - 1.5)
    results, t_steady = await task
    stamps = await emulator.dump()
    m = match(results, stamps, since=t_steady + warmup_s, until=t_steady + warmup_s + duration_s)
    setups = [r.setup_s for r in results if r.setup_s is not None]
    errors = [r.error for r in results if r.error]
    return {"mode": mode, "sessions": n, "duration_s": duration_s,
            "c2s": summary_ms(m["c2s"]), "s2c": summary_ms(m["s2c"]), "setup": summary_ms(setups),
            "delivered_c2s": m["delivered_c2s"], "delivered_s2c": m["delivered_s2c"],
            "frames_c2s": m["frames_c2s"], "frames_s2c": m["frames_s2c"], "errors": len(errors),
            "error_examples": errors[:3], "steady": steady, "ramp_s": ramp, "session_s": session_s, "_raw": m}


# -- the floor chain ---------------------------------------------------------------------------------------------

async def floor_measure(mode: str, target: str, n: int, duration_s: float, warmup_s: float,
                        ssl_ctx: Any = None, channel: Any = None, on_steady: Any = None,
                        stagger_s: float | None = STAGGER_S) -> dict[str, Any]:
    """``mode`` = "floor" (gRPC into the floor front at ``target``), "floor_direct" (WebSocket straight to
    the echo at ``target``) or "gateway_echo" (livegate's front on ``channel``, upstream route "echo"). Same
    ramp and steady window as ``measure``."""
    import websockets

    from bench.echo_session import floor_session, gateway_open

    ramp = ramp_for(n, stagger_s)
    total = ramp + warmup_s + duration_s

    async def one(i: int) -> dict[str, Any]:
        await asyncio.sleep(i * ramp / max(1, n))
        t0 = time.time()
        setup_s = None
        if mode in ("floor", "gateway_echo"):
            call = channel.stream_stream("/floor.Floor/Relay" if mode == "floor" else "/livegate.v1.LiveGateway/Connect")()
            try:
                if mode == "floor":
                    res = await floor_session(call, "floor", total)
                else:
                    try:
                        setup_s = await gateway_open(call)
                    except Exception as exc:  # noqa: BLE001 - a session that did not open is a data point
                        return {"sent": {}, "c2s": [], "s2c": [], "end": t0, "t0": t0, "setup_s": None,
                                "error": f"open: {type(exc).__name__}: {exc}"}
                    t0 = time.time()  # this session's frames start now
                    res = await floor_session(call, "gateway", total)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(call.done_writing(), 1)
                call.cancel()
        else:
            async with websockets.connect(target, ssl=ssl_ctx, compression=None, ping_interval=None) as ws:
                res = await floor_session(ws, "ws", total)
        res["setup_s"] = setup_s
        res["t0"] = t0
        return res

    with no_gc_pauses():
        task = asyncio.ensure_future(asyncio.gather(*(one(i) for i in range(n))))
        steady = None
        if on_steady is not None:
            await asyncio.sleep(ramp + warmup_s + 0.5)
            steady = await on_steady(duration_s - 1.5)
        results = await task
    since = min(r["t0"] for r in results) + ramp + warmup_s
    until = since + duration_s
    c2s = [v for r in results for ts, v in r["c2s"] if since <= ts < until]
    s2c = [v for r in results for ts, v in r["s2c"] if since <= ts < until]
    sent = sum(1 for r in results for ts in r["sent"].values() if ts < r["end"] - 1.0)
    got = sum(1 for r in results for ts, _ in r["c2s"] if ts < r["end"] - 1.0)
    return {"mode": mode, "sessions": n, "duration_s": duration_s, "c2s": summary_ms(c2s), "s2c": summary_ms(s2c),
            "setup": summary_ms([r["setup_s"] for r in results if r["setup_s"] is not None]), "delivered_c2s": got / sent if sent else None,
            "delivered_s2c": got / sent if sent else None, "frames_c2s": sent, "frames_s2c": got,
            "errors": sum(1 for r in results if r.get("error")),
            "error_examples": [r["error"] for r in results if r.get("error")][:3], "steady": steady, "ramp_s": ramp, "session_s": total,
            "_raw": {"c2s": c2s, "s2c": s2c}}


# -- what the processes did during the steady window ----------------------------------------------------------

# labels come sorted; the front counts c2s messages, the worker s2c: each message is counted once
_MSGS = re.compile(r'^livegate_messages_total\{direction="(\w+)",kind="[^"]*",role="\w+"\} ([0-9.e+]+)$')


def _worker_messages(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _MSGS.match(line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def steady_probe(pids: dict[str, int], redis_url: str, metrics: list[Any] | None = None) -> Any:
    """An ``on_steady(seconds)`` callback: CPU per process (/proc), Redis commands (INFO commandstats) and,
    for livegate, the processes' own added-latency histograms and message counters, over the window."""

    async def probe(seconds: float) -> dict[str, Any]:
        seconds = max(0.5, seconds)
        meter = CpuMeter(pids)
        before = await commandstats(redis_url)
        scr0 = [await asyncio.to_thread(scrape, p.metrics) for p in metrics or ()]
        machine0 = machine_times()
        meter.start()
        await asyncio.sleep(seconds)
        cores = meter.stop()
        machine = machine_split(machine0, machine_times())
        after = await commandstats(redis_url)
        scr1 = [await asyncio.to_thread(scrape, p.metrics) for p in metrics or ()]
        out: dict[str, Any] = {"window_s": seconds, "cpu_cores": cores, "cpu_by_role": aggregate_roles(cores),
                               "machine_cores": machine,
                               "redis_commands": commandstats_delta(before, after)}
        if metrics:
            b0: dict[str, list[tuple[float, float]]] = {}
            b1: dict[str, list[tuple[float, float]]] = {}
            msgs = {"c2s": 0.0, "s2c": 0.0}
            for t0, t1 in zip(scr0, scr1):
                for d, rows in latency_buckets(t0).items():
                    b0.setdefault(d, []).extend(rows)
                for d, rows in latency_buckets(t1).items():
                    b1.setdefault(d, []).extend(rows)
                m0, m1 = _worker_messages(t0), _worker_messages(t1)
                for d in msgs:
                    msgs[d] += m1.get(d, 0.0) - m0.get(d, 0.0)
            out["livegate_added_latency"] = histogram_quantiles(_merge(b0), _merge(b1))
            out["relayed_messages"] = msgs
        return out

    return probe


def _merge(b: dict[str, list[tuple[float, float]]]) -> dict[str, list[tuple[float, float]]]:
    out = {}
    for d, rows in b.items():
        acc: dict[float, float] = {}
        for le, n in rows:
            acc[le] = acc.get(le, 0.0) + n
        out[d] = sorted(acc.items())
    return out


def redis_per_frame(steady: dict[str, Any] | None, frames: float) -> float | None:
    if not steady or not frames:
        return None
    return round(sum(steady["redis_commands"].values()) / frames, 3)
