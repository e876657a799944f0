"""A flood of maximum-size messages at full speed: the flooder is refused with a typed status, Redis stays under
the bound docs/redis.md states (``service.budget.redis_bound``), and another tenant's turns are all answered.
Timing (the bystander's latency) is measured by ``python -m bench.isolation``, not asserted here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from bench.isolation import (CALM_KEY, FLOOD_KEY, Flood, RedisSampler, flood, keys_document, media_message, open_session,
                             refusal_of, turn_latency)
from livegate.settings import Settings
from livegate.v1 import gateway_pb2_grpc
from service.budget import redis_bound

SIZE = 256 * 1024
# small bounds, so a short flood overruns them many times; rates high enough that the flood is at full speed
BOUNDS = {"max_media_chunks_bytes": SIZE, "c2s_log_max_bytes": 1024 * 1024, "s2c_log_max_bytes": 256 * 1024,
          "upstream_max_frame_bytes": 1024 * 1024, "session_bytes_per_s": 64 * 1024 * 1024,
          "session_burst_bytes": 64 * 1024 * 1024, "tenant_bytes_per_s": 64 * 1024 * 1024,
          "tenant_burst_bytes": 64 * 1024 * 1024, "budget_wait_s": 1.0}
FLOOD_MESSAGES = 40  # 10 MiB: ten times the c2s log's bound


@pytest.fixture
def keys_file(tmp_path: Path) -> str:
    path = tmp_path / "caller-keys.json"
    path.write_text(keys_document())
    return str(path)


@pytest.fixture
def settings_overrides(keys_file: str) -> dict[str, Any]:
    return {**BOUNDS, "auth_modes": ("api_key",), "caller_keys_file": keys_file}


@pytest.fixture
async def stub(stack: dict[str, Any]) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(stack["front"].address) as ch:
        yield gateway_pb2_grpc.LiveGatewayStub(ch)


def log_full_refusals() -> float:
    return REGISTRY.get_sample_value("livegate_budget_refusals_total",
                                     {"kind": "c2s_log", "reason": "c2s_log_full"}) or 0.0


def refused_typed(f: Flood) -> bool:
    """The flooder's view of its refusal. The front always ends it with RESOURCE_EXHAUSTED C2S_LOG_FULL, but a
    grpc-python caller whose write is in flight when the status arrives may report INTERNAL "Internal error
    from Core" instead (its failed send overrides the status): a flooder's write always is."""
    r = f.refusal
    return r is not None and ((r.code == grpc.StatusCode.RESOURCE_EXHAUSTED and r.reason == "C2S_LOG_FULL")
                              or (r.code == grpc.StatusCode.INTERNAL and not r.reason))


def bound_of(stack: dict[str, Any]) -> Any:
    settings: Settings = stack["front"].settings
    return redis_bound(settings)


async def test_a_flood_is_refused_and_redis_stays_bounded(stack: dict[str, Any], stub: Any) -> None:
    bound = bound_of(stack)
    before = log_full_refusals()
    async with RedisSampler(stack["redis"], interval_s=0.02) as sampler:
        f = await flood(stub, SIZE, metadata=(("x-api-key", FLOOD_KEY),), max_messages=FLOOD_MESSAGES)
    assert f.refusal is not None, f"all {f.sent} messages of {SIZE} bytes were taken"
    assert refused_typed(f), f
    assert log_full_refusals() == before + 1
    assert sampler.samples >= 5
    assert sampler.peak_session <= bound.session, (sampler.peak_session, bound)
    assert sampler.peak_stream <= bound.stream, (sampler.peak_stream, bound)
    # the whole of Redis (client buffers aside): one session, two worker inboxes, one front outbox, plus the
    # fleet's small keys and scripts
    assert sampler.peak_used <= bound.fleet(1, 2, 1) + 1024 * 1024, (sampler.peak_used, bound.fleet(1, 2, 1))


async def test_a_bystander_tenant_is_answered_during_a_flood(stack: dict[str, Any], stub: Any) -> None:
    bound = bound_of(stack)
    calm = (("x-api-key", CALM_KEY),)
    call, _ = await open_session(stub, calm)
    floods = [Flood() for _ in range(3)]
    async with RedisSampler(stack["redis"], interval_s=0.05) as sampler:
        tasks = [asyncio.create_task(flood(stub, SIZE, metadata=(("x-api-key", FLOOD_KEY),),
                                           max_messages=FLOOD_MESSAGES, out=f)) for f in floods]
        async with asyncio.timeout(60):
            latencies = await turn_latency(call, 10)  # every turn answered while the flood runs
            await asyncio.gather(*tasks)
    call.cancel()
    assert len(latencies) == 10
    for f in floods:
        assert refused_typed(f), f
    assert sampler.peak_session <= bound.session
    assert sampler.peak_used <= bound.fleet(4, 2, 1) + 1024 * 1024


async def test_a_caller_over_its_log_bound_gets_the_typed_status(stub: Any) -> None:
    call, _ = await open_session(stub, (("x-api-key", FLOOD_KEY),))
    for _ in range(5):  # 1.25 MiB: the fifth does not fit the 1 MiB bound (nothing trims the log meanwhile)
        await call.write(media_message(SIZE))
    with pytest.raises(grpc.aio.AioRpcError) as err:  # nothing in flight: the caller reads the front's status
        async with asyncio.timeout(15):
            while await call.read() is not grpc.aio.EOF:
                pass
    r = refusal_of(err.value)
    assert r.code == grpc.StatusCode.RESOURCE_EXHAUSTED and r.reason == "C2S_LOG_FULL"
    assert r.retry_delay_s == BOUNDS["budget_wait_s"]  # RetryInfo
