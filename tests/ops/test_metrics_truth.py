"""Metrics that tell the truth, scraped from real processes: each role exports only its own metrics, no
``_created`` noise, one casing for label values, and labelled counters present at 0 before their first event,
so that a real Prometheus's ``increase()`` sees the first upstream close (the "Closes in range" panel)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from livegate.cli.devstack import free_port
from livegate.client import Client
from tests.durability.procs import ProcStack, emulator_server
from tests.ops.test_prometheus import (MODEL, converse, http_get, instantiate, panel_queries, query,
                                      running_prometheus)

# a front's metrics that a worker never moves, and the other way round
WORKER_ONLY = ("livegate_worker_capacity", "livegate_worker_sessions", "livegate_upstream_connects_total",
               "livegate_upstream_closes_total", "livegate_tokens_total", "livegate_worker_takeovers_total")
FRONT_ONLY = ("livegate_sessions_started_total", "livegate_sessions_ended_total", "livegate_reattaches_total",
              "livegate_admission_rejections_total", "livegate_budget_refusals_total", "livegate_pending_connects")


@pytest.fixture
async def procs(redis: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ProcStack]:
    """Real fronts and workers (subprocesses) on the emulator (``procs.emulator``)."""
    async with emulator_server(tmp_path_factory, pacing=0.0) as emu:
        stack = ProcStack(redis_url, emu)
        stack.emulator = emu  # type: ignore[attr-defined]
        try:
            yield stack
        finally:
            await stack.aclose()


def families(body: bytes) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def sample_names(body: bytes) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in body.decode().splitlines() if line and line[0] != "#"}


def closes_at(body: bytes, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if s.name == "livegate_upstream_closes_total" and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def test_each_role_exports_its_own_truthful_metrics(procs: ProcStack) -> None:
    worker = await procs.worker()
    front = await procs.front()
    # before any session: the close classification's counters are there, at 0
    before = await http_get(worker.metrics_port, "/metrics")
    assert closes_at(before, flavour="gemini", code="1011", reason="resume") == 0.0
    assert closes_at(before, flavour="gemini", code="1008", reason="upstream_model_not_found") == 0.0
    async with Client(front.address) as client, client.aio.live.connect(
            model=MODEL, config={"response_modalities": ["AUDIO"]}) as s:
        await converse(s, "Hello there")
    bodies = {p.role: await http_get(p.metrics_port, "/metrics") for p in (front, worker)}
    for role, body in bodies.items():
        names = sample_names(body)
        assert not [n for n in names if n.endswith("_created")], role
        bad = sorted({f"{s.name}{{{k}={v!r}}}" for fam in text_string_to_metric_families(body.decode())
                      for s in fam.samples for k, v in s.labels.items()
                      if s.name.startswith("livegate_") and k not in ("version", "le") and v != v.lower()})
        assert not bad, f"{role}: label values not lower-case: {bad}"
    front_names, worker_names = families(bodies["front"]), families(bodies["worker"])
    assert not [m for m in WORKER_ONLY if m.removesuffix("_total") in front_names], sorted(front_names)
    assert not [m for m in FRONT_ONLY if m.removesuffix("_total") in worker_names], sorted(worker_names)
    # the session's rows of the front's ended counter exist for outcomes that did not happen
    ended = {s.labels["outcome"]: s.value for s in front_names["livegate_sessions_ended"].samples
             if s.name.endswith("_total") and s.labels["model"] == MODEL and s.labels["protocol"] == "grpc"}
    assert ended.get("ok") == 1.0 and ended.get("upstream_closed") == 0.0, ended
    audio = [s for s in worker_names["livegate_tokens"].samples if s.labels["modality"] == "audio"]
    assert audio and any(s.value > 0 for s in audio)


async def test_increase_sees_the_first_close(procs: ProcStack, tmp_path: Path) -> None:
    """The upstream dashboard's "Closes in range": a real Prometheus's ``increase()`` over the first close."""
    worker = await procs.worker()
    front = await procs.front()
    # the upstream dashboard's "Closes in range" panel, as Grafana would send it
    expr = instantiate(next(e for board, title, e in panel_queries()
                            if board == "upstream" and title == "Closes in range"))
    with running_prometheus([f"127.0.0.1:{worker.metrics_port}"], tmp_path) as prom_port:
        async with Client(front.address) as client, client.aio.live.connect(
                model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
            await converse(s, "Hello there")
            async with asyncio.timeout(30):  # Prometheus has scraped the worker (the series exists, at 0 if pre-set)
                while not (await query(prom_port, "up == 1")).get("data", {}).get("result"):
                    await asyncio.sleep(0.2)
            await asyncio.sleep(1.5)  # one more scrape: the series' sample before the close
            emulator = procs.emulator  # type: ignore[attr-defined]
            emulator.faults.add({"target": emulator.conversations[-1]["id"], "when": "immediately",
                                 "action": "close", "close": "internal"})
            await converse(s, "After the close?")
        body = await http_get(worker.metrics_port, "/metrics")
        assert closes_at(body, code="1011", reason="resume") == 1.0
        loop = asyncio.get_running_loop()
        deadline, seen = loop.time() + 8, []
        while not seen and loop.time() < deadline:  # a few scrapes and evaluations after the close
            seen = (await query(prom_port, expr)).get("data", {}).get("result", [])
            if not seen:
                await asyncio.sleep(0.5)
        assert [(r["metric"]["code"], r["metric"]["reason"]) for r in seen] == [("1011", "resume")], \
            f"the panel does not show the first close: {expr} -> {seen}"


async def test_dev_serves_metrics(redis_url: str) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livegate.cli", "dev", "--listen", "127.0.0.1:0", "--redis-url", redis_url,
        "--metrics-listen", f"127.0.0.1:{port}", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LIVEGATE_LOG_LEVEL": "WARNING"})
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
            assert line.startswith("livegate dev:"), line
            assert f"metrics on http://127.0.0.1:{port}/metrics" in line
            body = await http_get(port, "/metrics")
        names = sample_names(body)
        # the dev stack is every role in one process: it keeps them all
        assert {"livegate_worker_capacity", "livegate_pending_connects", "livegate_build_info"} <= names
        assert not [n for n in names if n.endswith("_created")]
        assert re.search(rb'livegate_upstream_closes_total\{code="1011",flavour="gemini",reason="resume"\} 0\.0', body)
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
