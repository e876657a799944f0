"""Operations, proven against real tools: promtool accepts both processes' metrics, and a real Prometheus
scraping a real stack returns data for every panel of every Grafana dashboard in the chart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from livegate.client import Client
from livegate.cli.devstack import free_port
from livegate.v1 import gateway_pb2 as gw
from tests.durability.procs import ProcStack, emulator_server

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                                reason="needs Debian's prometheus package (scripts/bootstrap.sh installs it)")

MODEL = "gemini-live-2.5-flash"
DASHBOARDS = Path(__file__).resolve().parents[2] / "helm" / "livegate" / "dashboards"
# admission control with a small cap, so that waits and refusals happen (the capacity dashboard's panels)
ADMISSION = json.dumps({"scopes": {"default/gemini-live-2.5-flash": {"cap": 2}}, "lease_ttl_s": 10})


@contextlib.contextmanager
def running_prometheus(targets: list[str], tmp_path: Path) -> Iterator[int]:
    """A real Prometheus scraping ``targets`` every second (namespace ``livegate-test``); yields its port."""
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "livegate", "static_configs": [
            {"targets": targets, "labels": {"namespace": "livegate-test"}}]}]}))
    prom = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield prom_port
    finally:
        prom.send_signal(signal.SIGTERM)
        prom.wait(timeout=20)


async def query(prom_port: int, expr: str) -> dict[str, Any]:
    """One instant query; the parsed reply ({} when Prometheus does not answer yet)."""
    try:
        return dict(json.loads(await http_get(prom_port, "/api/v1/query?query=" + urllib.parse.quote(expr))))
    except (OSError, ValueError):  # not listening yet, or still starting ("Service Unavailable")
        return {}


async def http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data.partition(b"\r\n\r\n")[2]


@pytest.fixture
async def emulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    async with emulator_server(tmp_path_factory, pacing=0.0, connection_lifetime_s=3.0, go_away_lead_s=2.0) as emu:
        yield emu


@pytest.fixture
async def procs(redis: Any, redis_url: str, emulator: Any) -> AsyncIterator[ProcStack]:
    stack = ProcStack(redis_url, emulator, go_away_margin_s=0.5, admission_json=ADMISSION)
    try:
        yield stack
    finally:
        await stack.aclose()


async def converse(session: Any, text: str) -> None:
    await session.send_client_content(turns={"role": "user", "parts": [{"text": text}]})
    async with asyncio.timeout(30):
        async for m in session.receive_raw():
            if m.tool_call.function_calls:
                await session.send_tool_response(function_responses=[
                    {"id": fc.id, "name": fc.name, "response": {"result": "ok"}} for fc in m.tool_call.function_calls])
            if m.server_content.turn_complete:
                return


async def test_promtool_accepts_both_processes(procs: ProcStack) -> None:
    worker = await procs.worker()
    front = await procs.front()
    async with Client(front.address) as client, client.aio.live.connect(
            model=MODEL, config={"response_modalities": ["AUDIO"]}) as s:
        await converse(s, "Hello there")
    for p in (front, worker):
        body = await http_get(p.metrics_port, "/metrics")
        assert b"livegate_" in body
        r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
        assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (p.role, r.stdout, r.stderr)


def panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())

        def walk(panels: list[dict[str, Any]]) -> None:
            for p in panels:
                walk(p.get("panels", []))
                for t in p.get("targets", []) or []:
                    if t.get("expr"):
                        out.append((path.stem, p.get("title", "?"), t["expr"]))

        walk(board.get("panels", []))
    return out


def instantiate(expr: str) -> str:
    """Grafana's variables as the dashboards would set them for our test namespace."""
    for var, value in (("$__rate_interval", "1m"), ("$__range", "10m"), ("$__interval", "15s"),
                       ("$namespace", "livegate-test"), ("$tenant", ".*"), ("$model", ".*"), ("$flavour", ".*")):
        expr = expr.replace(var, value)
    return expr


async def test_every_dashboard_panel_returns_data(procs: ProcStack, emulator: Any, redis: Any,
                                                  tmp_path: Path) -> None:
    workers = [await procs.worker(), await procs.worker()]
    front = await procs.front()
    targets = [f"127.0.0.1:{p.metrics_port}" for p in (*workers, front)]
    with running_prometheus(targets, tmp_path) as prom_port:
        await drive_every_event(front, workers, emulator, redis)
        await every_panel_has_data(prom_port)


async def every_panel_has_data(prom_port: int) -> None:
    queries = panel_queries()
    assert len(queries) >= 40
    missing = []
    try:
        async with asyncio.timeout(60):
            pending = list(queries)
            while pending:
                still = []
                for board, title, expr in pending:
                    reply = await query(prom_port, instantiate(expr))
                    if reply.get("status") != "success" or not reply["data"]["result"]:
                        still.append((board, title, expr))
                pending = missing = still
                if still:
                    await asyncio.sleep(1.0)  # the next scrape (scrape_interval 1s)
    except TimeoutError:
        pytest.fail("panels without data: " + "; ".join(f"{b}/{t}: {e}" for b, t, e in missing))


async def drive_every_event(front: Any, workers: list[Any], emulator: Any, redis: Any) -> None:
    """Traffic that makes every dashboard panel non-empty. The takeover comes first: a SIGKILLed worker takes
    its own series with it, so everything counted later must happen on the survivor. Counters that panels
    read with `increase(...) > 0` must rise between two scrapes, so those events happen more than once."""
    tools = [{"function_declarations": [{"name": "turn_on_the_lights"}]}]
    async with Client(front.address) as client:
        stub = client.stub()
        async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["AUDIO"], "tools": tools},
                                           options=gw.SessionOptions(upstream_events=True)) as s:
            await converse(s, "Hello there")
            # the owning worker dies: a takeover
            info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
            owner = next(w for w in workers if w.id == info.worker_id)
            owner.kill(signal.SIGKILL)
            await converse(s, "After the takeover?")
            # audio and text turns, a tool call, over several 3 s connection lifetimes (go_aways, renewals)
            await converse(s, "Turn on the lights please")
            for i in range(8):
                await converse(s, f"Question {i}?")
                await asyncio.sleep(0.5)
            # upstream 1011 closes (renewed), two scrapes apart
            for _ in range(2):
                conv = emulator.conversations[-1]
                emulator.faults.add({"target": conv["id"], "when": "immediately", "action": "close", "close": "internal"})
                await converse(s, "After the close?")
                await asyncio.sleep(2.5)
            # a caller whose stream breaks and who reattaches
            s._call.cancel()
            await s.reattach()
            await converse(s, "After the reattach?")
            # Redis connections dropped
            await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            await converse(s, "After the Redis blip?")
        async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
            await converse(s, "A second session")
            # admission: the cap is 2, so a third session waits (admission wait) and, given a short deadline,
            # is refused (admission rejection); quota headroom is exported along the way
            async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s2:
                await converse(s2, "Holding the second slot")
                for _ in range(2):  # two refusals, scrapes apart: `increase(...) > 0` panels see them
                    call = stub.Connect(timeout=1.0)
                    await call.write(gw.ClientMessage(setup=gw.ClientMessage().setup.__class__(
                        model=MODEL, generation_config={"response_modalities": [1]})))
                    with pytest.raises(grpc.aio.AioRpcError):
                        while True:
                            await call.read()
                    await asyncio.sleep(2.5)
