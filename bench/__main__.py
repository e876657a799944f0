"""``python -m bench [--quick] [--out docs/benchmarks] [--only overhead,capacity,...]``

Starts everything itself (Redis, the emulator, livegate workers and fronts, the floor chain), runs the
scenarios and writes ``results.json``, ``README.md`` (tables) and PNG plots into ``--out``.
``--quick`` runs each scenario for a few seconds: for correctness of the harness only, numbers meaningless.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

SCENARIOS = ("memory", "overhead", "capacity", "scaleout", "resilience", "profile", "websocket")


def plan(quick: bool) -> dict[str, Any]:
    if quick:
        return {"overhead": {"sizes": [2], "duration_s": 1.2, "warmup_s": 0.3, "stagger_s": 0.3},
                "capacity": {"start": 3, "duration_s": 1.5, "warmup_s": 0.3, "max_steps": 1, "stagger_s": 0.3},
                "memory": {"sizes": [1, 10]},
                "profile": {"sessions": 5, "seconds": 2},
                "websocket": {"sizes": [2], "duration_s": 1.2, "warmup_s": 0.3, "stagger_s": 0.3, "start": 3,
                              "max_steps": 1}}
    # sessions start spread over one scripted turn (bench/load.py, STAGGER_S)
    return {"overhead": {"sizes": [1, 50, 200], "duration_s": 8.0, "warmup_s": 2.0, "stagger_s": 3.5},
            "capacity": {"start": 100, "duration_s": 6.0, "warmup_s": 2.0, "max_steps": 6, "repeats": 3,
                         "stagger_s": 3.5},
            "memory": {"sizes": [1, 100, 500]},
            "profile": {"sessions": 100, "seconds": 12},
            # the Live API WebSocket path next to gRPC and the floor: overhead at these sizes, then capacity
            "websocket": {"sizes": [1, 50], "duration_s": 8.0, "warmup_s": 2.0, "stagger_s": 3.5, "start": 40,
                          "max_steps": 4, "repeats": 3}}


def environment() -> dict[str, Any]:
    import grpc
    import redis
    import websockets

    def cmd(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    try:
        import matplotlib

        mpl = matplotlib.__version__
    except ImportError:
        mpl = None
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git": cmd("git", "rev-parse", "--short", "HEAD"),
            # the product code measured is the working tree: uncommitted changes to it are listed here
            "uncommitted_product_changes": [ln for ln in cmd("git", "status", "--porcelain", "--", "livegate", "service",
                                                             "workers", "emulator", "proto").splitlines() if ln],
            "python": platform.python_version(),
            "cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "grpcio": grpc.__version__, "redis_py": redis.__version__, "websockets": websockets.__version__,
            "redis_server": cmd("redis-server", "--version"), "matplotlib": mpl,
            "loadavg_at_start": os.getloadavg()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench import capacity, memory, overhead, resilience, scaleout
    from bench.stacks import main_stack

    p = plan(args.quick)
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    if args.quick and not args.only:
        only.discard("profile")
    out: dict[str, Any] = {"quick": args.quick, "environment": environment(), "plan": p, "scenarios": {},
                           "errors": {}}
    timings: dict[str, float] = {}

    async def guarded(name: str, coro: Any) -> Any:
        from bench.common import settle

        # start from a quiet machine: what the previous scenario left running has wound down (recorded)
        out.setdefault("busy_cores_before", {})[name] = await settle(timeout_s=3.0 if args.quick else 20.0)
        t0 = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            res = await coro
            out["scenarios"][name] = res
            return res
        except Exception as exc:  # noqa: BLE001 - one broken scenario must not lose the others
            out["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            return None
        finally:
            timings[name] = round(time.monotonic() - t0, 1)
            out["timings_s"] = timings
            print(f"[bench] {name} done in {timings[name]} s", file=sys.stderr, flush=True)
            try:  # what is measured so far survives an interrupted run
                from bench import report

                report.write(Path(args.out), out, plots=False)
            except Exception:  # noqa: BLE001 - the final write reports for real
                traceback.print_exc()

    if "memory" in only:
        async def mem() -> Any:
            m = await main_stack(floor=False)
            try:
                return await memory.run(m, p["memory"]["sizes"])
            finally:
                await m.aclose()
        await guarded("memory", mem())

    if only & {"overhead", "capacity", "scaleout", "websocket"}:
        m = await main_stack()
        try:
            if "overhead" in only:
                await guarded("overhead", overhead.run(m, **p["overhead"]))
            cap = None
            if "capacity" in only:
                cap = await guarded("capacity", capacity.run(m, **p["capacity"]))
            if "scaleout" in only:
                await guarded("scaleout", scaleout.run(m, (cap or {}).get("gateway"), **p["capacity"]))
            if "websocket" in only:
                await guarded("websocket", websocket_compare(m, **p["websocket"]))
        finally:
            await m.aclose()

    if "resilience" in only:
        await guarded("resilience", resilience.run(quick=args.quick))

    if "profile" in only:
        from bench import profile

        await guarded("profile", profile.run(Path(args.out), **p["profile"]))

    out["timings_s"] = timings
    return out


async def websocket_compare(m: Any, *, sizes: list[int], duration_s: float, warmup_s: float, stagger_s: float,
                            start: int, max_steps: int, repeats: int = 1) -> dict[str, Any]:
    """The Live API WebSocket path (overhead, then capacity) next to the gRPC path and the floor, one run."""
    from bench import capacity, overhead

    return {"overhead": await overhead.run(m, sizes, duration_s, warmup_s, stagger_s),
            "capacity": await capacity.run_websocket(m, start=start, duration_s=duration_s - 2.0,
                                                     warmup_s=warmup_s, max_steps=max_steps, repeats=repeats,
                                                     stagger_s=stagger_s)}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few seconds per scenario (harness check only)")
    ap.add_argument("--out", default="docs/benchmarks", help="where results.json, README.md and PNGs go")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    import uvloop

    from bench import report

    results = uvloop.run(run(args))
    out = Path(args.out)
    report.write(out, results, plots=not args.no_plots)
    print(f"[bench] wrote {out}/results.json and {out}/README.md", file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
