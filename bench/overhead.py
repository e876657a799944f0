"""Scenario 1, overhead: the same scripted conversation directly to the emulator and through livegate (its
gRPC ``Connect``, and its Live API WebSocket endpoint with the direct client's own code), and the floor chain
(bench/floor.py) next to its own direct WebSocket baseline, at 1 / 50 / 200 sessions.

Added latency per direction = (one-way latency through the chain) - (one-way latency direct), per
percentile. One-way latencies are measured end to end on the host clock: client send -> emulator (or echo)
arrival, emulator (or echo) send -> client arrival (bench/emu.py, bench/script.py)."""

from __future__ import annotations

from typing import Any

from bench.common import diff_ms, pct, summary_ms
from bench.load import STAGGER_S, floor_measure, measure, steady_probe
from bench.stacks import Main


async def run(main: Main, sizes: list[int], duration_s: float, warmup_s: float,
              stagger_s: float | None = STAGGER_S) -> dict[str, Any]:
    emu = main.emulator
    redis_url = main.stack.redis.url  # type: ignore[union-attr]
    rows: list[dict[str, Any]] = []
    for n in sizes:
        runs: dict[str, dict[str, Any]] = {}
        runs["direct"] = await measure("direct", emu, n, duration_s, warmup_s, stagger_s=stagger_s)
        runs["gateway"] = await measure("gateway", emu, n, duration_s, warmup_s, stub=main.stubs()[0],
                                        on_steady=steady_probe(main.livegate_pids(), redis_url,
                                                               main.workers + main.fronts), stagger_s=stagger_s)
        runs["gateway_ws"] = await measure("gateway_ws", emu, n, duration_s, warmup_s, stub=main.fronts[0].ws,
                                           on_steady=steady_probe(main.livegate_pids(), redis_url,
                                                                  main.workers + main.fronts), stagger_s=stagger_s)
        runs["floor_direct"] = await floor_measure("floor_direct", main.floor["echo"].ident, n, duration_s, warmup_s,
                                                   ssl_ctx=emu.ssl_context(), stagger_s=stagger_s)
        runs["floor"] = await floor_measure("floor", "", n, duration_s, warmup_s, channel=main.floor_channel,
                                            stagger_s=stagger_s)
        # per message: latency through the chain - the direct path's median (conservative: the direct path's
        # own jitter is counted as added); and, for reference, the difference of the percentiles
        added = {d: per_message(runs["gateway"], runs["direct"], d) for d in ("c2s", "s2c")}
        ws_added = {d: per_message(runs["gateway_ws"], runs["direct"], d) for d in ("c2s", "s2c")}
        floor_added = {d: per_message(runs["floor"], runs["floor_direct"], d) for d in ("c2s", "s2c")}
        pct_diff = {"gateway": {d: diff_ms(runs["gateway"][d], runs["direct"][d]) for d in ("c2s", "s2c")},
                    "floor": {d: diff_ms(runs["floor"][d], runs["floor_direct"][d]) for d in ("c2s", "s2c")}}
        for r in runs.values():
            r.pop("_raw", None)
        row = {"sessions": n, "runs": runs, "added": added, "websocket_added": ws_added, "floor_added": floor_added,
               "percentile_difference": pct_diff,
               "setup_ms": {"direct": runs["direct"]["setup"], "gateway": runs["gateway"]["setup"],
                            "added": diff_ms(runs["gateway"]["setup"], runs["direct"]["setup"])}}
        rt = [added[d]["p50"] for d in ("c2s", "s2c")]
        frt = [floor_added[d]["p50"] for d in ("c2s", "s2c")]
        wrt = [ws_added[d]["p50"] for d in ("c2s", "s2c")]
        if None not in wrt:
            row["websocket_added_round_trip_p50_ms"] = round(sum(wrt), 3)
            row["websocket_added_p99_ms"] = {d: ws_added[d]["p99"] for d in ("c2s", "s2c")}
        if None not in rt and None not in frt:
            row["added_round_trip_p50_ms"] = round(sum(rt), 3)
            row["floor_added_round_trip_p50_ms"] = round(sum(frt), 3)
            row["ratio_to_floor_p50"] = round(sum(rt) / sum(frt), 2) if sum(frt) > 0 else None
        rows.append(row)
    return {"sizes": sizes, "duration_s": duration_s, "warmup_s": warmup_s, "stagger_s": stagger_s, "rows": rows}


def per_message(chain: dict[str, Any], direct: dict[str, Any], d: str) -> dict[str, Any]:
    base = pct(direct["_raw"][d], 50)
    if base is None:
        return summary_ms([])
    return summary_ms([x - base for x in chain["_raw"][d]])
