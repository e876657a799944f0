"""Scenario 2, capacity: the most concurrent real-time audio sessions (640 B in at 50/s, 960 B of 24 kHz
audio out at 50/s) with p99 one-way latency < 50 ms in both directions, >= 99.9 % delivered and >= 98 % of
the target send rate; for livegate, the floor chain and the floor chain on the paced echo (audio out on the
upstream's own 20 ms clock, as from the emulator: bench/floor.py), searched the same way (bisection, resolution 10
sessions), with CPU per process and Redis commands per frame at each step. Each step runs ``repeats`` times
and the run with the median worst-direction p99 decides it (one scheduling spike on shared cores does not).
Sessions start spread over one scripted turn (``bench.load.STAGGER_S``); livegate's maximum is then run once
more with every session's turns in lockstep (``gateway_phase_locked_at_max``)."""

from __future__ import annotations

from typing import Any

from bench.load import STAGGER_S, floor_measure, measure, redis_per_frame, steady_probe
from bench.load import transport_factory as orig_factory
from bench.stacks import Main

P99_LIMIT_MS = 50.0


def sustained(r: dict[str, Any], n: int) -> tuple[bool, str]:
    if r["errors"]:
        return False, f"{r['errors']} session errors"
    for d in ("c2s", "s2c"):
        p99 = r[d]["p99"]
        if p99 is None or p99 >= P99_LIMIT_MS:
            return False, f"{d} p99 {p99} ms"
        dl = r[f"delivered_{d}"]
        if dl is None or dl < 0.999:
            return False, f"{d} delivered {dl}"
    rate = r["frames_c2s"] / (n * 50 * max(0.5, r["session_s"] - 1.0))  # frames sent before the last second
    r["send_rate"] = round(rate, 3)
    if rate < 0.98:
        return False, f"send rate {rate:.3f}"
    return True, "ok"


def _worst_p99(r: dict[str, Any]) -> float:
    vals = [r[d]["p99"] for d in ("c2s", "s2c")]
    return float("inf") if None in vals or r["errors"] else max(vals)


async def one_step(main: Main, kind: str, n: int, duration_s: float, warmup_s: float,
                   repeats: int = 1, stagger_s: float | None = STAGGER_S) -> dict[str, Any]:
    runs = [await one_run(main, kind, n, duration_s, warmup_s, stagger_s) for _ in range(max(1, repeats))]
    runs.sort(key=_worst_p99)
    r = runs[len(runs) // 2]
    r["repeats_worst_p99_ms"] = [None if _worst_p99(x) == float("inf") else round(_worst_p99(x), 2) for x in runs]
    return r


async def one_run(main: Main, kind: str, n: int, duration_s: float, warmup_s: float,
                  stagger_s: float | None = STAGGER_S) -> dict[str, Any]:
    redis_url = main.stack.redis.url  # type: ignore[union-attr]
    if kind in ("floor", "floor_paced"):
        paced = kind == "floor_paced"
        r = await floor_measure("floor", "", n, duration_s, warmup_s,
                                channel=main.floor_paced_channel if paced else main.floor_channel,
                                on_steady=steady_probe(main.floor_pids(paced), redis_url), stagger_s=stagger_s)
        frames = n * 50 * 2 * (r["steady"]["window_s"] if r["steady"] else 0)
    elif kind == "gateway_echo":  # livegate relaying the floor's traffic to the floor's echo
        r = await floor_measure("gateway_echo", "", n, duration_s, warmup_s, channel=main.channels[0],
                                on_steady=steady_probe(main.livegate_echo_pids(), redis_url, main.workers + main.fronts),
                                stagger_s=stagger_s)
        msgs = (r["steady"] or {}).get("relayed_messages") or {}
        frames = msgs.get("c2s", 0) + msgs.get("s2c", 0)
    else:  # gateway (gRPC) or gateway_ws (the Live API WebSocket endpoint), over every front
        targets = main.stubs() if kind == "gateway" else [f.ws for f in main.fronts]
        r = await measure_multi(main, kind, targets, n, duration_s, warmup_s,
                                on_steady=steady_probe(main.livegate_pids(), redis_url, main.workers + main.fronts),
                                stagger_s=stagger_s)
        msgs = (r["steady"] or {}).get("relayed_messages") or {}
        frames = msgs.get("c2s", 0) + msgs.get("s2c", 0)
    r.pop("_raw", None)
    r["cpu_us_per_frame"] = cpu_per_frame(r["steady"], frames)
    if kind in ("gateway", "gateway_ws", "gateway_echo"):
        from bench.memory import _sessions_ended

        await _sessions_ended(main)  # the next step starts from an empty gateway
    r["redis_commands_per_frame"] = redis_per_frame(r["steady"], frames)
    ok, why = sustained(r, n)
    r["sustained"], r["verdict"] = ok, why
    return r


def cpu_per_frame(steady: dict[str, Any] | None, frames: float) -> dict[str, float] | None:
    """CPU µs per relayed frame (both directions) by process role over the steady window: the cost of a frame,
    comparable between chains at the same load."""
    if not steady or not frames:
        return None
    per_s = frames / steady["window_s"]
    return {role: round(cores / per_s * 1e6, 1) for role, cores in steady["cpu_by_role"].items()}


async def measure_multi(main: Main, mode: str, targets: list[Any], n: int, duration_s: float, warmup_s: float,
                        on_steady: Any, stagger_s: float | None = STAGGER_S) -> dict[str, Any]:
    """Like ``measure`` but spreads the sessions over every front (round robin): ``targets`` are the fronts'
    stubs (``gateway``) or WebSocket URLs (``gateway_ws``)."""
    import itertools

    from bench import load

    cycle = itertools.cycle([orig_factory(mode, main.emulator, t) for t in targets])
    orig = load.transport_factory
    load.transport_factory = lambda mode, emulator, stub=None: (lambda: next(cycle)())  # type: ignore[assignment]
    try:
        return await measure(mode, main.emulator, n, duration_s, warmup_s, on_steady=on_steady,
                             stagger_s=stagger_s)
    finally:
        load.transport_factory = orig  # type: ignore[assignment]


async def search(main: Main, kind: str, *, start: int, duration_s: float, warmup_s: float, max_steps: int,
                 repeats: int = 1, stagger_s: float | None = STAGGER_S, resolution: int = 10,
                 ceiling: int = 600) -> dict[str, Any]:
    lo, hi = 0, None
    n = start
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for _ in range(max_steps):
        r = await one_step(main, kind, n, duration_s, warmup_s, repeats, stagger_s)
        steps.append(r)
        if r["sustained"]:
            lo, best = n, r
        else:
            hi = n
        if hi is None:
            nxt = min(ceiling, int(n * 1.5 // resolution * resolution) or n + resolution)
            if nxt == n:
                break
        else:
            if hi - lo <= resolution:
                break
            nxt = (lo + hi) // 2 // resolution * resolution or max(1, (lo + hi) // 2)
        n = nxt
    return {"kind": kind, "stagger_s": stagger_s, "max_sessions": lo, "first_failure": hi, "at_max": best,
            "steps": [{k: s[k] for k in ("sessions", "c2s", "s2c", "delivered_c2s", "delivered_s2c", "send_rate",
                                         "sustained", "verdict", "redis_commands_per_frame", "steady", "errors",
                                         "error_examples", "repeats_worst_p99_ms", "cpu_us_per_frame") if k in s} for s in steps]}


def per_core(result: dict[str, Any], roles: tuple[str, ...]) -> float | None:
    best = result.get("at_max")
    if not best or not best.get("steady"):
        return None
    cores = sum(best["steady"]["cpu_by_role"].get(r, 0.0) for r in roles)
    return round(result["max_sessions"] / cores, 1) if cores else None


async def run_websocket(main: Main, *, start: int, duration_s: float, warmup_s: float, max_steps: int,
                        repeats: int = 1, stagger_s: float | None = STAGGER_S) -> dict[str, Any]:
    """The capacity of the Live API WebSocket path next to the gRPC path and the floor, in one run: the same
    conversations (bench/script.py), the same search and limits; only the caller's protocol differs."""
    kw = {"start": start, "duration_s": duration_s, "warmup_s": warmup_s, "max_steps": max_steps, "repeats": repeats,
          "stagger_s": stagger_s}
    out: dict[str, Any] = {"p99_limit_ms": P99_LIMIT_MS, "repeats": repeats, "stagger_s": stagger_s}
    for kind in ("floor", "gateway", "gateway_ws"):
        out[kind] = await search(main, kind, **kw)
    out["gateway_sessions_per_core"] = per_core(out["gateway"], ("front", "worker"))
    out["gateway_ws_sessions_per_core"] = per_core(out["gateway_ws"], ("front", "worker"))
    if out["gateway"]["max_sessions"]:
        out["ws_ratio_to_grpc"] = round(out["gateway_ws"]["max_sessions"] / out["gateway"]["max_sessions"], 2)
    if out["floor"]["max_sessions"]:
        out["ws_ratio_to_floor"] = round(out["gateway_ws"]["max_sessions"] / out["floor"]["max_sessions"], 2)
    return out


async def run(main: Main, *, start: int, duration_s: float, warmup_s: float, max_steps: int,
              repeats: int = 1, stagger_s: float | None = STAGGER_S) -> dict[str, Any]:
    kw = {"start": start, "duration_s": duration_s, "warmup_s": warmup_s, "max_steps": max_steps, "repeats": repeats,
          "stagger_s": stagger_s}
    floor = await search(main, "floor", **kw)
    # livegate relaying the floor's own traffic to the floor's own echo, right after the floor: the two
    # chains differ only in their relays (front, worker, Redis layout), not in the upstream or the client
    gw_echo = await search(main, "gateway_echo", **kw)
    paced = await search(main, "floor_paced", **kw)
    gw = await search(main, "gateway", **kw)
    # the stress shape at livegate's maximum: the same sessions started 10 ms apart, every turn in lockstep
    locked = None
    if gw["max_sessions"]:
        r = await one_step(main, "gateway", gw["max_sessions"], duration_s, warmup_s, repeats, stagger_s=None)
        locked = {k: r.get(k) for k in ("sessions", "c2s", "s2c", "sustained", "verdict", "repeats_worst_p99_ms",
                                        "cpu_us_per_frame")}
    out = {"p99_limit_ms": P99_LIMIT_MS, "repeats": repeats, "stagger_s": stagger_s, "floor": floor,
           "floor_paced": paced, "gateway": gw, "gateway_echo": gw_echo,
           "gateway_phase_locked_at_max": locked,
           "gateway_sessions_per_core": per_core(gw, ("front", "worker")),
           "gateway_echo_sessions_per_core": per_core(gw_echo, ("front", "worker")),
           "floor_sessions_per_core": per_core(floor, ("floor_front", "floor_worker")),
           "floor_paced_sessions_per_core": per_core(paced, ("floor_front", "floor_worker"))}
    if floor["max_sessions"]:
        out["ratio_to_floor"] = round(gw["max_sessions"] / floor["max_sessions"], 2)
        out["relay_ratio_to_floor"] = round(gw_echo["max_sessions"] / floor["max_sessions"], 2)
    if paced["max_sessions"]:
        out["ratio_to_paced_floor"] = round(gw["max_sessions"] / paced["max_sessions"], 2)
    return out
