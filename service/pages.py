"""``ListSessions`` pages: the page size rule and opaque page tokens.

A tenant's sessions are a Redis sorted set scored by creation time (``lg:{t:<tenant>}:sessions``). A page
token names the last session a page returned (its score and id: a keyset cursor, not an offset), so the next
page starts right after it however many sessions started or ended meanwhile: a session that lives through the
whole listing is returned exactly once, never skipped, never repeated. The token is base64url text the
gateway checks before use; anything it did not issue is INVALID_ARGUMENT ``BAD_PAGE_TOKEN``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from typing import Any

from livegate.errors import invalid_argument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_TOKEN_CHARS = 200
_VERSION = "1"
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")
_BODY_RE = re.compile(r"1\.(\d{1,15})\.([A-Za-z0-9_-]{1,128})")


def page_size(requested: int) -> int:
    """0: the default (50); above 1000: 1000; negative: INVALID_ARGUMENT."""
    if requested < 0:
        raise invalid_argument(f"page_size must be >= 0 (0: the default of {DEFAULT_PAGE_SIZE}); got {requested}",
                               "BAD_PAGE_SIZE")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


@dataclasses.dataclass(frozen=True, order=True)
class Cursor:
    """The last session of a page, in the sorted set's order (score, then id bytes)."""

    score: int
    sid: bytes

    def token(self) -> str:
        body = f"{_VERSION}.{self.score}.{self.sid.decode()}".encode()
        return base64.urlsafe_b64encode(body).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Cursor | None:
        """The cursor of a token this gateway issued; None for the first page (empty token)."""
        if not token:
            return None
        bad = invalid_argument("page_token is not one this gateway issued: pass next_page_token from the previous "
                               "ListSessions response unchanged (empty for the first page)", "BAD_PAGE_TOKEN")
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN_RE.fullmatch(token):
            raise bad
        try:
            body = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        except (binascii.Error, ValueError):
            raise bad from None
        m = _BODY_RE.fullmatch(body)
        if m is None:
            raise bad
        return cls(int(m.group(1)), m.group(2).encode())


async def page(redis: Any, key: str, after: Cursor | None, size: int) -> tuple[list[str], Cursor | None]:
    """Up to ``size`` session ids after ``after``, and the cursor of the next page (None: this is the last)."""
    out: list[Cursor] = []
    offset, batch = 0, size + 1
    while len(out) <= size:
        rows = await redis.zrange(key, after.score if after else "-inf", "+inf", byscore=True, withscores=True,
                                  offset=offset, num=batch)
        for member, score in rows:
            c = Cursor(int(score), member)
            if after is None or c > after:  # members of the cursor's score up to its id came on earlier pages
                out.append(c)
        if len(rows) < batch:
            break
        offset += batch
    more = len(out) > size
    out = out[:size]
    return [c.sid.decode() for c in out], (out[-1] if more else None)
