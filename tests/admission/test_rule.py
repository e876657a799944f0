"""The admission rule, checked against a plain-Python model over random sequences of acquires and releases
(seeded, so every run is the same sequence)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from livegate.errors import GatewayError
from livegate.admission.control import Admission, Lease
from tests.admission.helpers import live, queue_keys_gone

S = "gemini:models/gemini-live-2.5-flash"
CAP = 10
SHARES = {"a": (3, None), "b": (2, 4), "c": (0, 5)}  # listed: (guaranteed, max)
DEFAULT_MAX = 3  # unlisted tenants "x", "y"


def model_admits(used: dict[str, int], t: str) -> bool:
    """docs/admission.md, "The admission rule", written out."""
    g, m = SHARES.get(t, (0, DEFAULT_MAX))
    total = sum(used.values())
    reserved_by_others = sum(max(0, gs - used.get(s, 0)) for s, (gs, _) in SHARES.items() if s != t)
    return total < CAP and (m is None or used.get(t, 0) < m) and (
        used.get(t, 0) < g or total + reserved_by_others < CAP)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_decisions_match_the_rule(make: Callable[..., Admission], redis: Any, seed: int) -> None:
    adm = make({"scopes": {S: {"cap": CAP, "default_tenant": {"max": DEFAULT_MAX},
                               "tenants": {t: {"guaranteed": g, "max": m} for t, (g, m) in SHARES.items()}}}})
    rng = random.Random(seed)
    held: list[Lease] = []
    used: dict[str, int] = {}
    admitted = refused = 0
    for _ in range(250):
        if held and rng.random() < 0.4:
            lease = held.pop(rng.randrange(len(held)))
            assert await adm.release(lease)
            used[lease.tenant] -= 1
        else:
            t = rng.choice("abcxy")
            expect = model_admits(used, t)
            try:
                held.append(await adm.acquire(t, S, 0))
                got = True
                used[t] = used.get(t, 0) + 1
                admitted += 1
            except GatewayError as e:
                assert e.reason == "ADMISSION_FULL"
                got = False
                refused += 1
            assert got == expect, (t, dict(used))
        # invariants: the cap, every max, and every unused guarantee still fits in the free slots
        total = sum(used.values())
        assert total == await live(redis, S) <= CAP
        assert all(used.get(t, 0) <= (m if m is not None else CAP) for t, (_, m) in SHARES.items())
        assert all(n <= DEFAULT_MAX for t, n in used.items() if t not in SHARES)
        assert CAP - total >= sum(max(0, g - used.get(t, 0)) for t, (g, _) in SHARES.items())
    assert admitted > 50 and refused > 20  # both branches were exercised
    assert await queue_keys_gone(redis, S)
