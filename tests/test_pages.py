"""ListSessions pages on a real Redis (service/pages.py): sessions created in the same millisecond (equal
scores) are ordered by id and paged without a skip or a repeat, however many share a score."""

from __future__ import annotations

from typing import Any

import pytest

from livegate.errors import GatewayError
from service import pages


async def list_all(redis: Any, key: str, size: int) -> list[str]:
    out: list[str] = []
    after = None
    while True:
        sids, after = await pages.page(redis, key, after, size)
        out += sids
        if after is None:
            return out
        after = pages.Cursor.parse(after.token())  # through its token, as a caller sends it back


async def test_equal_scores_are_paged_exactly(redis: Any) -> None:
    key = "lg:{t:test}:sessions"
    members = {f"s-{i:03d}": 1000 + (i // 7) for i in range(40)}  # runs of 7 sessions per millisecond
    await redis.zadd(key, members)
    for size in (1, 2, 3, 7, 8, 50):
        assert await list_all(redis, key, size) == sorted(members, key=lambda m: (members[m], m)), size
    # a session that starts between two pages, after the cursor, is listed; one that ends is not
    first, after = await pages.page(redis, key, None, 10)
    assert after is not None
    await redis.zadd(key, {"s-999": 5000})
    await redis.zrem(key, "s-020")
    sids, cursor = await pages.page(redis, key, after, 100)
    assert cursor is None and "s-999" in sids and "s-020" not in sids and not set(sids) & set(first)


def test_page_size_rule() -> None:
    assert pages.page_size(0) == 50 and pages.page_size(7) == 7 and pages.page_size(10**9) == 1000
    with pytest.raises(GatewayError) as err:
        pages.page_size(-1)
    assert err.value.reason == "BAD_PAGE_SIZE"
