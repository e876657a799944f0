"""The event-loop lag monitor (livegate/looplag.py): a blocking call on the loop is measured, and logged with
its length and the code that blocked."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest
from prometheus_client import REGISTRY

from livegate.looplag import LoopLagMonitor


def _count(role: str, le: str) -> float:
    return REGISTRY.get_sample_value("livegate_event_loop_lag_seconds_bucket", {"role": role, "le": le}) or 0.0


def block_the_loop_for(seconds: float) -> None:
    time.sleep(seconds)  # synchronous work on the event loop: what the monitor is for


async def test_a_blocking_call_on_the_loop_is_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="livegate.looplag")
    monitor = LoopLagMonitor("worker", interval_s=0.01, stall_s=0.2, name="worker w-test")
    below, total = _count("worker", "0.5"), _count("worker", "+Inf")
    monitor.start()
    try:
        await asyncio.sleep(0.05)  # a few ordinary ticks
        block_the_loop_for(0.6)
        async with asyncio.timeout(5):
            while monitor.stalls < 1:
                await asyncio.sleep(0.01)
    finally:
        await monitor.aclose()
    assert monitor.stalls == 1
    assert 0.55 <= monitor.max_lag_s < 2.0
    # the histogram holds the stall (above 0.5 s) and the ordinary ticks (below)
    assert _count("worker", "+Inf") - total >= 2
    assert (_count("worker", "+Inf") - total) - (_count("worker", "0.5") - below) == 1
    [line] = [r.getMessage() for r in caplog.records if "event loop stalled" in r.getMessage()]
    assert re.match(r"worker w-test: event loop stalled for 0\.[56]\d s", line), line
    assert "block_the_loop_for" in line and "time.sleep(seconds)" in line  # the watchdog's stack of the loop
    assert "paused" not in line


async def test_short_ticks_are_not_stalls(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="livegate.looplag")
    monitor = LoopLagMonitor("front", interval_s=0.01, stall_s=0.2)
    monitor.start()
    monitor.start()  # idempotent
    try:
        await asyncio.sleep(0.03)  # the monitor's timer is running
        block_the_loop_for(0.05)  # shorter than a stall: measured, not logged
        async with asyncio.timeout(5):
            while monitor.max_lag_s < 0.04:
                await asyncio.sleep(0.01)
    finally:
        await monitor.aclose()
        await monitor.aclose()
    assert monitor.stalls == 0
    assert not [r for r in caplog.records if "event loop stalled" in r.getMessage()]


async def test_processes_on_one_loop_share_its_measure() -> None:
    """livegate dev runs a front and workers on one loop: one monitor measures it (one log line per stall), and
    another takes over when that one's process closes first."""
    first = LoopLagMonitor("worker", interval_s=0.01, stall_s=0.2, name="first")
    second = LoopLagMonitor("front", interval_s=0.01, stall_s=0.2, name="second")
    first.start()
    second.start()
    try:
        await _stall_seen_by(first)
        assert second.stalls == 0
        await first.aclose()
        await _stall_seen_by(second)
        assert first.stalls == 1
    finally:
        await first.aclose()
        await second.aclose()


async def _stall_seen_by(monitor: LoopLagMonitor) -> None:
    await asyncio.sleep(0.03)  # its timer is running
    block_the_loop_for(0.3)
    async with asyncio.timeout(5):
        while monitor.stalls < 1:
            await asyncio.sleep(0.01)
