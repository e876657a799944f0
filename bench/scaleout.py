"""Scenario 5, scale-out: the capacity search again with 2 workers and 2 fronts (sessions spread over the
fronts round robin; workers pull sessions from the shared allocation stream), next to 1 + 1; Redis CPU and
commands per frame at each limit show whether Redis is the first bottleneck. The paper estimate for
internet scale is written by bench/report.py from these numbers."""

from __future__ import annotations

from typing import Any

from bench.capacity import per_core, search
from bench.load import STAGGER_S
from bench.stacks import Main


async def run(main: Main, one: dict[str, Any] | None, *, start: int, duration_s: float, warmup_s: float,
              max_steps: int, repeats: int = 1, stagger_s: float | None = STAGGER_S) -> dict[str, Any]:
    if one is None:  # capacity did not run: measure 1 + 1 here
        one = await search(main, "gateway", start=start, duration_s=duration_s, warmup_s=warmup_s,
                           max_steps=max_steps, repeats=repeats, stagger_s=stagger_s)
    await main.add_livegate(workers=1, fronts=1)
    two = await search(main, "gateway", start=max(start, one["max_sessions"] or start), duration_s=duration_s,
                       warmup_s=warmup_s, max_steps=max_steps, repeats=repeats, stagger_s=stagger_s)

    def redis_at_max(r: dict[str, Any]) -> dict[str, Any]:
        best = r.get("at_max") or {}
        st = best.get("steady") or {}
        return {"redis_cores": (st.get("cpu_by_role") or {}).get("redis"),
                "redis_commands_per_frame": best.get("redis_commands_per_frame"),
                "cpu_by_role": st.get("cpu_by_role")}

    return {"one": {"workers": 1, "fronts": 1, "max_sessions": one["max_sessions"],
                    "first_failure": one["first_failure"], "per_core": per_core(one, ("front", "worker")),
                    **redis_at_max(one)},
            "two": {"workers": 2, "fronts": 2, "max_sessions": two["max_sessions"],
                    "first_failure": two["first_failure"], "per_core": per_core(two, ("front", "worker")),
                    **redis_at_max(two)},
            "two_search": two}
