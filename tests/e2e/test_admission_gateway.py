"""Admission control through the gateway: capped scopes, fair waiting within the caller's deadline, typed
refusals, rate limits, and the cap shrinking after an upstream quota close (livegate/admission/control.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from livegate.admission.control import scope_of
from livegate.client import APIError
from tests.e2e.helpers import collect_turn, text_of

MODEL = "gemini-live-2.5-flash"
SCOPE = scope_of("default", MODEL)
CAP2 = {"admission_json": json.dumps({"scopes": {SCOPE: {"cap": 2}}, "lease_ttl_s": 5})}


def reason_of(err: grpc.aio.AioRpcError) -> str:
    info = error_details_pb2.ErrorInfo()
    status = rpc_status.from_call(err)
    assert status is not None and status.details[0].Unpack(info)
    return info.reason


async def hello(session: Any, text: str) -> str:
    await session.send_client_content(turns={"role": "user", "parts": [{"text": text}]})
    return text_of(await collect_turn(session))


@pytest.mark.parametrize("settings_overrides", [CAP2])
async def test_session_over_the_cap_waits_then_is_admitted(client: Any, stack: dict[str, Any],
                                                           settings_overrides: dict[str, Any]) -> None:
    cfg = {"response_modalities": ["TEXT"]}
    async with client.aio.live.connect(model=MODEL, config=cfg) as first, \
            client.aio.live.connect(model=MODEL, config=cfg) as second:
        await hello(first, "one")
        await hello(second, "two")

        async def third() -> str:
            async with client.aio.live.connect(model=MODEL, config=cfg) as s:
                return await hello(s, "three")

        waiting = asyncio.create_task(third())
        await asyncio.sleep(0.5)  # it is queued: the scope is full
        assert not waiting.done()
        await first.aclose()  # a slot frees
        assert await asyncio.wait_for(waiting, timeout=10) == 'You said: "three"'


@pytest.mark.parametrize("settings_overrides", [CAP2])
async def test_full_scope_refuses_at_the_callers_deadline(stack: dict[str, Any], client: Any,
                                                          settings_overrides: dict[str, Any]) -> None:
    from tests.e2e.test_error_contract import setup

    cfg = {"response_modalities": ["TEXT"]}
    async with client.aio.live.connect(model=MODEL, config=cfg) as a, client.aio.live.connect(model=MODEL, config=cfg) as b:
        await hello(a, "one")
        await hello(b, "two")
        async with grpc.aio.insecure_channel(stack["front"].address) as channel:
            from livegate.v1 import gateway_pb2_grpc

            call = gateway_pb2_grpc.LiveGatewayStub(channel).Connect(timeout=2.0)
            await call.write(setup())
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and reason_of(err.value) == "ADMISSION_FULL"
    assert "cap" in (err.value.details() or "")


@pytest.mark.parametrize("settings_overrides", [{"admission_json": json.dumps(
    {"scopes": {SCOPE: {"cap": 10}}, "rate": {"default": {"per_s": 0.2, "burst": 1}}})}])
async def test_session_creation_rate_limit(client: Any, settings_overrides: dict[str, Any]) -> None:
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await hello(s, "first")
    with pytest.raises(APIError) as err:  # the client raises google-genai's errors
        async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}):
            pass
    assert err.value.grpc_status == grpc.StatusCode.RESOURCE_EXHAUSTED and err.value.reason == "RATE_LIMITED"


@pytest.mark.parametrize("settings_overrides", [{"admission_json": json.dumps({"scopes": {SCOPE: {"cap": 5}}})}])
async def test_upstream_quota_close_shrinks_the_cap(client: Any, stack: dict[str, Any],
                                                    settings_overrides: dict[str, Any]) -> None:
    admission = stack["front"].admission
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as keep, \
            client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as doomed:
        await hello(keep, "stays")
        await hello(doomed, "goes")
        assert await admission.headroom(SCOPE) == 3
        emulator = stack["emulator"]
        emulator.faults.add({"target": emulator.conversations[-1]["id"], "when": "immediately", "action": "close",
                             "close": "quota"})
        with pytest.raises(APIError) as err:
            await hello(doomed, "again")
        assert reason_of(err.value.rpc_error) == "UPSTREAM_QUOTA_EXCEEDED"
        # the real cap is lower than configured: no new session beyond what is live now
        async with asyncio.timeout(5):
            while (await admission.status(SCOPE) or {}).get("cap") != 1:
                await asyncio.sleep(0.05)
        assert await admission.headroom(SCOPE) == 0


@pytest.mark.parametrize("settings_overrides", [CAP2])
async def test_a_failed_lease_renewal_does_not_make_the_worker_unready(client: Any, stack: dict[str, Any],
                                                                       settings_overrides: dict[str, Any]) -> None:
    """The beat reached Redis, so the fleet counts the worker alive: a failure after it (renewing the
    admission leases) is logged by the heartbeat loop and must not take the worker out of service."""
    from livegate.redis.keys import admission_keys

    cfg = {"response_modalities": ["TEXT"]}
    async with client.aio.live.connect(model=MODEL, config=cfg) as session:
        await hello(session, "one")
        worker = next(w for w in stack["workers"] if w.sessions)
        leases_key = admission_keys(SCOPE)[0]
        saved = await stack["redis"].zrange(leases_key, 0, -1, withscores=True)
        await stack["redis"].delete(leases_key)
        await stack["redis"].set(leases_key, "not a zset")  # the renewal script now fails with WRONGTYPE
        before = worker.heartbeat.last
        try:
            with pytest.raises(Exception, match="WRONGTYPE"):
                await worker.heartbeat.beat()
            assert worker.heartbeat.last > before and worker.ready()
        finally:
            await stack["redis"].delete(leases_key)
            await stack["redis"].zadd(leases_key, dict(saved))
        assert await hello(session, "two") == 'You said: "two"'
