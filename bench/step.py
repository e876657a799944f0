"""One capacity step, for working on the hot path: N paced real-time audio sessions through livegate (or the
floor chain) on a fresh stack, printing p99s, CPU by process, CPU µs per relayed frame and, for livegate,
the data-plane batch sizes. Much shorter than the full search, and the same numbers.

    python -m bench.step gateway 60            # one run of 60 sessions
    python -m bench.step floor 60,90 --repeat 2
    python -m bench.step gateway 60 --env heartbeat_interval_s=1 --env heartbeat_ttl_s=5
    python -m bench.step gateway 80 --stagger locked   # every session's turns in lockstep

Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import urllib.request
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _batches(addr: str) -> tuple[float, float]:
    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("livegate_redis_batch_commands_sum"):
            total += float(line.split()[-1])
        elif line.startswith("livegate_redis_batch_commands_count"):
            count += float(line.split()[-1])
    return total, count


async def run(kind: str, sizes: list[int], *, duration_s: float, warmup_s: float, repeat: int,
              env: dict[str, str], stagger_s: float | None) -> None:
    from bench import capacity
    from bench.stacks import main_stack

    m = await main_stack(floor=not kind.startswith("gateway"), **env)
    try:
        for n in sizes:
            for _ in range(repeat):
                procs = m.workers + m.fronts if kind.startswith("gateway") else []
                before = [await asyncio.to_thread(_batches, p.metrics) for p in procs]
                r = await capacity.one_run(m, kind, n, duration_s, warmup_s, stagger_s)
                after = [await asyncio.to_thread(_batches, p.metrics) for p in procs]
                out: dict[str, Any] = {
                    "kind": kind, "sessions": n, "sustained": r["sustained"], "verdict": r["verdict"],
                    "p99_ms": {"c2s": r["c2s"]["p99"], "s2c": r["s2c"]["p99"]},
                    "cpu_cores": {k: round(v, 3) for k, v in ((r["steady"] or {}).get("cpu_by_role") or {}).items()},
                    "machine_cores": (r["steady"] or {}).get("machine_cores"),
                    "cpu_us_per_frame": r.get("cpu_us_per_frame"),
                    "redis_commands_per_frame": r["redis_commands_per_frame"],
                    "livegate_added_latency": (r["steady"] or {}).get("livegate_added_latency")}
                if procs:
                    out["commands_per_batch"] = {p.name: round((b[0] - a[0]) / max(1.0, b[1] - a[1]), 2)
                                                 for p, a, b in zip(procs, before, after)}
                print(json.dumps(out), flush=True)
    finally:
        await m.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.step", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("gateway", "gateway_echo", "floor", "floor_paced"))
    ap.add_argument("sessions", help="comma-separated session counts, e.g. 40,60")
    ap.add_argument("--duration", type=float, default=8.0, help="steady seconds per run (default 8)")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=1, help="runs per session count")
    ap.add_argument("--stagger", default="3.5", metavar="SECONDS|locked",
                    help="spread session starts over this many seconds (default 3.5, one scripted turn); "
                         "'locked': 10 ms apart, every session's turns in lockstep")
    ap.add_argument("--env", action="append", default=[], metavar="SETTING=VALUE",
                    help="a livegate setting for the workers and fronts (repeatable)")
    args = ap.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    import uvloop

    uvloop.run(run(args.kind, [int(x) for x in args.sessions.split(",")], duration_s=args.duration,
                   warmup_s=args.warmup, repeat=args.repeat, env=env,
                   stagger_s=None if args.stagger == "locked" else float(args.stagger)))


if __name__ == "__main__":
    main()
