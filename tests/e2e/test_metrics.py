"""The ops port serves Prometheus metrics that describe real traffic, plus health and readiness."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from livegate.ops import OpsServer
from tests.e2e.helpers import collect_turn

MODEL = "gemini-live-2.5-flash"


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
            out[key] = s.value
    return out


def total(values: dict[str, float], name: str, **labels: str) -> float:
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(v for k, v in values.items() if k.startswith(name + "{") and all(w in k for w in want))


async def test_metrics_describe_the_traffic(client: Any, stack: dict[str, Any]) -> None:
    worker = stack["workers"][0]
    ops = OpsServer("127.0.0.1:0", ready=worker.ready)
    await ops.start()
    try:
        async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["AUDIO"]}) as s:
            await s.send_client_content(turns={"role": "user", "parts": [{"text": "Hello there"}]})
            await collect_turn(s)
        status, body = await http_get(ops.port, "/metrics")
        assert status == 200
        values = samples(body.decode())
        assert total(values, "livegate_sessions_started_total", model=MODEL, tenant="default") >= 1
        assert total(values, "livegate_messages_total", role="front", direction="c2s", kind="client_content") >= 1
        assert total(values, "livegate_messages_total", role="worker", direction="s2c", kind="server_content") >= 1
        assert total(values, "livegate_message_bytes_total", role="worker", direction="s2c") > 24000
        assert total(values, "livegate_added_latency_seconds_count", direction="c2s") >= 1
        assert total(values, "livegate_added_latency_seconds_count", direction="s2c") >= 3
        assert total(values, "livegate_setup_seconds_count", model=MODEL) >= 1
        assert total(values, "livegate_first_response_seconds_count", model=MODEL) >= 1
        assert total(values, "livegate_upstream_connects_total", result="ok") >= 1
        assert total(values, "livegate_tokens_total", model=MODEL, direction="response", modality="audio") > 0
        assert total(values, "livegate_sessions_ended_total", outcome="ok") >= 1
        # no label carries a session id (ids are "s-" + 24 url-safe characters)
        assert not any(re.search(r"s-[A-Za-z0-9_-]{24}", k.split("{", 1)[1]) for k in values)
        assert (await http_get(ops.port, "/healthz"))[0] == 200
        assert (await http_get(ops.port, "/readyz"))[0] == 200
        await worker.drain(timeout_s=0)
        assert (await http_get(ops.port, "/readyz"))[0] == 503
        assert (await http_get(ops.port, "/nope"))[0] == 404
    finally:
        await ops.aclose()
