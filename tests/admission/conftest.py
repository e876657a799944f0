"""Admission tests: real Redis (the session's redis-server, flushed per test), no mocks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from livegate.admission.control import Admission, AdmissionConfig


@pytest.fixture
async def make(redis: Any, redis_url: str) -> AsyncIterator[Callable[..., Admission]]:
    """``make(config_dict, own_client=False)`` -> an Admission; ``own_client`` gives it its own connection
    pool (another front, as far as Redis can tell)."""
    from livegate.redis.connect import connect

    clients: list[Any] = []

    def factory(config: dict[str, Any], *, own_client: bool = False) -> Admission:
        client = redis
        if own_client:
            client = connect(redis_url)
            clients.append(client)
        return Admission(client, AdmissionConfig.from_dict(config))

    yield factory
    for c in clients:
        await c.aclose()
