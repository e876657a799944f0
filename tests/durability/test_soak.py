"""The chaos soak, short: ``bench.soak`` (real processes: 3 fronts, 3 workers, the emulator, Redis) with every
kind of fault at least once while callers hold conversations, and every count that must be zero is zero:
turns lost or duplicated, seq gaps after a reattach, silent turns, wrong answers, and the sessions, keys,
leases and upstream sockets left once the last grace is over. The full run (100 sessions, 10 of each fault)
is ``python -m bench.soak``; docs/benchmarks/soak.md has its figures."""

from __future__ import annotations

import pytest

from bench.soak import FAULTS, soak


@pytest.mark.timeout(300)
async def test_short_soak_loses_nothing_and_leaves_nothing() -> None:
    report = await soak(sessions=8, duration_s=40, faults_each=1, silent_s=30, log=lambda _line: None)
    events = "\n".join(f"{at:7.2f}s {who} {what}" for at, who, what in report["events"])
    assert report["zero"] == dict.fromkeys(report["zero"], 0), f"{report}\n{events}"
    assert report["turns_answered"] == report["turns_sent"] > 0
    missing = [k for k in FAULTS if not report["faults"].get(k)]
    assert not missing, f"faults that did not happen: {missing}"
    assert report["faults"]["upstream_go_away"] > 0 and report["reattaches"] > 0
