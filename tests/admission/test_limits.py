"""Rate limit, quota feedback, atomicity under concurrency, config, the no-config mode, key layout."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from redis.cluster import key_slot

from livegate.errors import GatewayError
from livegate.admission.control import Admission, AdmissionConfig, Lease, admission_keys, rate_bucket
from tests.admission.helpers import live, queue_keys_gone, wait_until

S = "gemini:models/gemini-live-2.5-flash"


async def test_rate_limit_burst_then_rate_limited(make: Callable[..., Admission]) -> None:
    adm = make({"rate": {"default": {"per_s": 4, "burst": 3}, "vip": {"per_s": 100, "burst": 100}}})
    for _ in range(3):
        await adm.acquire("acme", S, 0)  # scope not configured: only the rate applies
    with pytest.raises(GatewayError) as exc:
        await adm.acquire("acme", S, 0)
    err = exc.value
    assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED and err.reason == "RATE_LIMITED" and err.retryable
    assert err.retry_after_s is not None and 0.05 < err.retry_after_s <= 0.25  # one token per 1/4 s
    for _ in range(10):
        await adm.acquire("vip", S, 0)  # its own bucket
    await adm.acquire("other", S, 0)  # and so does every other tenant under "default"
    await asyncio.sleep(err.retry_after_s + 0.02)  # waiting for the advertised retry time is the point here
    await adm.acquire("acme", S, 0)
    with pytest.raises(GatewayError):
        await adm.acquire("acme", S, 0)


async def test_rate_limit_is_checked_before_queueing(make: Callable[..., Admission], redis: Any) -> None:
    adm = make({"scopes": {S: {"cap": 1}}, "rate": {"acme": {"per_s": 1, "burst": 1}}})
    await adm.acquire("acme", S, 0)
    with pytest.raises(GatewayError) as exc:
        await adm.acquire("acme", S, 5)
    assert exc.value.reason == "RATE_LIMITED"  # at once, not after 5 s in the queue
    assert await queue_keys_gone(redis, S)


async def test_quota_close_shrinks_the_cap_then_it_recovers(make: Callable[..., Admission]) -> None:
    adm = make({"scopes": {S: {"cap": 5}}, "recover_interval_s": 0.4})
    held = [await adm.acquire("acme", S, 0) for _ in range(4)]
    assert await adm.headroom(S) == 1
    start = time.monotonic()
    assert await adm.on_upstream_quota_exceeded(S) == 3  # 4 live, the 4th was one too many
    assert await adm.headroom(S) == 0
    with pytest.raises(GatewayError) as exc:
        await adm.acquire("acme", S, 0)
    assert "reduced from 5 after upstream quota errors" in exc.value.message
    await adm.release(held.pop())  # the failed session ends
    assert await adm.headroom(S) == 0  # 3 live, cap 3
    # +1 per interval, never above the configured cap
    caps = []
    while time.monotonic() - start < 1.4:
        st = await adm.status(S)
        assert st is not None
        caps.append(st["cap"])
        await asyncio.sleep(0.02)
    assert caps[0] == 3 and caps[-1] == 5 and caps == sorted(caps) and set(caps) == {3, 4, 5}
    assert await adm.headroom(S) == 2
    # a quota close with nothing live leaves one slot as a probe
    for lease in held:
        await adm.release(lease)
    assert await adm.on_upstream_quota_exceeded(S) == 1
    await adm.acquire("acme", S, 0)
    assert await adm.headroom(S) == 0


async def test_repeated_quota_closes_keep_the_lowest_cap(make: Callable[..., Admission]) -> None:
    adm = make({"scopes": {S: {"cap": 10}}, "recover_interval_s": 60})
    held = [await adm.acquire("acme", S, 0) for _ in range(8)]
    assert await adm.on_upstream_quota_exceeded(S) == 7
    await adm.release(held.pop())
    assert await adm.on_upstream_quota_exceeded(S) == 6
    assert await adm.on_upstream_quota_exceeded(S) == 6  # 7 live - 1 = 6: a close never raises the cap


async def test_concurrent_acquires_never_exceed_the_cap(make: Callable[..., Admission], redis: Any) -> None:
    """200 acquires from 4 'fronts' (own connection pools) and 3 tenants; every holder checks the lease ZSET
    and a shared in-test counter right after it is admitted."""
    cap = 12
    config = {"scopes": {S: {"cap": cap, "tenants": {"t0": {"guaranteed": 4}, "t1": {"guaranteed": 2, "max": 6}}}}}
    fronts = [make(config, own_client=True) for _ in range(4)]
    holding = 0
    peak = 0
    zpeak = 0
    rng = random.Random(7)

    async def session(i: int) -> None:
        nonlocal holding, peak, zpeak
        adm = fronts[i % 4]
        lease = await adm.acquire(f"t{i % 3}", S, 30)
        holding += 1
        peak = max(peak, holding)
        n = await live(redis, S)
        zpeak = max(zpeak, n)
        assert n <= cap and holding <= cap
        await asyncio.sleep(rng.random() * 0.01)
        holding -= 1
        assert await adm.release(lease)

    start = time.monotonic()
    await asyncio.gather(*[session(i) for i in range(200)])
    assert peak <= cap and zpeak <= cap
    assert peak >= cap - 2  # the cap was actually reached
    assert await live(redis, S) == 0 and await queue_keys_gone(redis, S)
    used = await redis.hgetall(admission_keys(S)[2])
    assert not used, used  # per-tenant counts back to zero
    assert time.monotonic() - start < 20


async def test_renew_many_one_pipeline_across_scopes(make: Callable[..., Admission], redis: Any) -> None:
    other = "vertex:p/europe-west4/live"
    adm = make({"scopes": {S: {"cap": 2}, other: {"cap": 2}}, "lease_ttl_s": 0.3})
    leases = [await adm.acquire("acme", S, 0), await adm.acquire("acme", other, 0),
              await adm.acquire("acme", "uncapped", 0)]

    async def beat() -> None:
        while True:
            assert await adm.renew_many(leases) == []
            await asyncio.sleep(0.1)

    task = asyncio.create_task(beat())
    try:
        deadline = time.monotonic() + 0.9
        while time.monotonic() < deadline:  # three TTLs
            assert await live(redis, S) == 1 and await live(redis, other) == 1
            await adm.headroom(S)  # purges what expired
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    for lease in leases:
        await adm.release(lease)
    assert await live(redis, S) == 0 and await live(redis, other) == 0


async def test_no_config_admits_everything_without_redis() -> None:
    adm = Admission(None, None)
    leases = [await adm.acquire("acme", S, 0) for _ in range(1000)]
    assert len({x.id for x in leases}) == 1000
    assert await adm.renew_many(leases) == [] and await adm.release(leases[0]) is False
    assert await adm.headroom(S) is None and await adm.on_upstream_quota_exceeded(S) is None


def test_lease_round_trips_through_a_string() -> None:
    lease = Lease("0123abcd", "vertex:my-proj/us-central1/live-2.5", "team:a/b c%")
    text = str(lease)
    assert Lease.parse(text) == lease and text.count(":") == 2


def test_keys_of_a_scope_share_one_slot() -> None:
    for scope in (S, "vertex:my-proj/us-central1/live-2.5", "odd}scope{"):
        keys = admission_keys(scope)
        assert len(keys) == 9 and all(k.startswith("lg:{adm:") for k in keys)
        assert len({key_slot(k.encode()) for k in keys}) == 1
    assert rate_bucket("acme") == "lg:{rate:acme}:bucket"


def test_config_from_file_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "admission.json"
    path.write_text(json.dumps({
        "scopes": {S: {"cap": 1000, "tenants": {"acme": {"guaranteed": 100, "max": 500}},
                       "default_tenant": {"guaranteed": 0, "max": None}}},
        "rate": {"default": {"per_s": 5, "burst": 20}, "acme": {"per_s": 50, "burst": 100}},
        "lease_ttl_s": 10}))
    cfg = AdmissionConfig.from_file(path)
    sc = cfg.scopes[S]
    assert sc.cap == 1000 and sc.share("acme").guaranteed == 100 and sc.share("acme").max == 500
    assert sc.share("nobody").max is None and cfg.rate_for("nobody").per_s == 5  # type: ignore[union-attr]
    assert cfg.rate_for("acme").burst == 100 and cfg.lease_ttl_s == 10  # type: ignore[union-attr]
    bad: list[dict[str, Any]] = [
        {"scopes": {S: {"cap": 0}}},
        {"scopes": {S: {"cap": 10, "tenants": {"a": {"guaranteed": 6}, "b": {"guaranteed": 5}}}}},
        {"scopes": {S: {"cap": 10, "tenants": {"a": {"guaranteed": 6, "max": 5}}}}},
        {"scopes": {S: {"cap": 10, "default_tenant": {"guaranteed": 1}}}},
        {"rate": {"default": {"per_s": 0, "burst": 1}}},
        {"lease_ttl_s": 0},
    ]
    for raw in bad:
        with pytest.raises(ValueError):
            AdmissionConfig.from_dict(raw)
    with pytest.raises(ValueError, match="admission config"):
        AdmissionConfig.from_file(tmp_path / "missing.json")


async def test_waiters_poll_cheaply(make: Callable[..., Admission], redis: Any) -> None:
    """A waiter in another process (no local wake-up) still notices a freed slot within the poll bound."""
    adm, elsewhere = make({"scopes": {S: {"cap": 1}}}), make({"scopes": {S: {"cap": 1}}}, own_client=True)
    holder = await adm.acquire("acme", S, 0)
    task = asyncio.create_task(elsewhere.acquire("acme", S, 10))
    await wait_until(lambda: _waiting_one(adm))
    await asyncio.sleep(1.0)  # let its backoff reach the cap
    start = time.monotonic()
    await adm.release(holder)
    await asyncio.wait_for(task, 2)
    assert time.monotonic() - start < 0.45


async def _waiting_one(adm: Admission) -> bool:
    st = await adm.status(S)
    return st is not None and st["waiting"] == 1
