"""Event-loop stalls under load: what the heartbeat TTL must outlast (docs/durability.md, "Pauses").

Runs N paced real-time audio sessions through livegate (the capacity step of bench/step.py, on a fresh
stack of real processes), then reads every front's and worker's ``livegate_event_loop_lag_seconds`` and
prints, per process: the timer ticks measured, the share of them late by more than 10/50/100 ms, the p99 and
p99.9 (as the upper bound of their histogram bucket), the largest bucket reached, and the stalls of 0.5 s or
more that the process logged (exact lengths, with the code that held the loop).

    python -m bench.pauses 60                  # 60 sessions, 20 s
    python -m bench.pauses 60,120 --duration 30 --env heartbeat_ttl_s=2

Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import urllib.request
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

METRIC = "livegate_event_loop_lag_seconds_bucket"


def lag_buckets(addr: str) -> dict[float, float]:
    """The cumulative lag histogram of one process: upper bound (s) -> observations at or below it."""
    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()  # noqa: S310 - loopback
    out: dict[float, float] = {}
    for line in text.splitlines():
        m = re.match(METRIC + r'\{le="([^"]+)",role="[^"]+"\} (\S+)', line)
        if m:
            out[float(m.group(1))] = float(m.group(2))
    return out


def quantile(buckets: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` (inf: beyond the largest bound)."""
    total = buckets.get(float("inf"), 0.0)
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return float("inf")


def summary(before: dict[float, float], after: dict[float, float], log: str) -> dict[str, Any]:
    diff = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    total = diff.get(float("inf"), 0.0)
    late = {f"over_{int(t * 1000)}ms": round(1 - diff.get(t, 0.0) / total, 5) if total else None
            for t in (0.01, 0.05, 0.1)}
    reached = [le for le in sorted(diff) if diff[le] > (diff.get(_prev(diff, le), 0.0))]
    return {"ticks": int(total), **late, "p99_le_s": quantile(diff, 0.99), "p999_le_s": quantile(diff, 0.999),
            "max_le_s": reached[-1] if reached else 0.0,
            "stalls_s": [float(s) for s in re.findall(r"event loop stalled for ([\d.]+) s", log)]}


def _prev(buckets: dict[float, float], le: float) -> float:
    lower = [b for b in buckets if b < le]
    return max(lower) if lower else -1.0


async def run(sizes: list[int], *, duration_s: float, warmup_s: float, env: dict[str, str]) -> None:
    from bench import capacity
    from bench.stacks import main_stack

    m = await main_stack(floor=False, **env)
    try:
        for n in sizes:
            procs = m.workers + m.fronts
            logs = {p.name: os.path.join(m.stack.tmp, f"{p.name}.log") for p in procs}
            sizes_before = {name: os.path.getsize(path) for name, path in logs.items()}
            before = [await asyncio.to_thread(lag_buckets, p.metrics) for p in procs]
            r = await capacity.one_run(m, "gateway", n, duration_s, warmup_s)
            after = [await asyncio.to_thread(lag_buckets, p.metrics) for p in procs]
            out: dict[str, Any] = {"sessions": n, "duration_s": duration_s, "sustained": r["sustained"],
                                   "cpu_cores": {k: round(v, 3) for k, v in
                                                 ((r["steady"] or {}).get("cpu_by_role") or {}).items()},
                                   "machine_cores": (r["steady"] or {}).get("machine_cores"), "lag": {}}
            for p, a, b in zip(procs, before, after):
                with open(logs[p.name], encoding="utf-8", errors="replace") as f:
                    f.seek(sizes_before[p.name])
                    out["lag"][p.name] = summary(a, b, f.read())
            print(json.dumps(out), flush=True)
    finally:
        await m.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", help="comma-separated session counts")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--env", action="append", default=[], help="a livegate setting, name=value (repeatable)")
    args = ap.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    asyncio.run(run([int(x) for x in args.sizes.split(",")], duration_s=args.duration, warmup_s=args.warmup, env=env))


if __name__ == "__main__":
    main()
