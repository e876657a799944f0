"""Bounds on what a client may make the emulator hold or walk, before and while a message is parsed.

* An **unauthenticated** connection (a credential the emulator refuses, or none where one is required) may
  send messages of at most `UNAUTHENTICATED_MAX_BYTES`: websockets refuses a bigger frame from its header
  (close 1009) and never reads its payload. Only such a connection's `setup` is read, to close it with the
  credential error the real service sends; a setup that fits is plenty (the tested setups are under 4 KiB).
* A message nested deeper than `MAX_JSON_DEPTH` objects/arrays (the outer object counts as 1) is refused
  1007 "Request contains an invalid argument." before anything walks it. The real service's limit is not
  documented; 100 is the default `max_recursion_depth` of protobuf's JSON parser (`json_format.Parse`,
  counted in nested messages), the order of limit a proto3-JSON service has. orjson itself stops at 1024,
  Python's recursion at 1000; the emulator's own walkers (and orjson.dumps, 255) stay far below 100.
"""

from __future__ import annotations

from typing import Any

MAX_JSON_DEPTH = 100
UNAUTHENTICATED_MAX_BYTES = 64 * 1024


def too_deep(frame: str | bytes, value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the parsed `value` of `frame` nests deeper than `limit` containers.

    A message with at most `limit` brackets cannot be deeper, so the common frames (audio: one base64 string)
    cost two C-speed counts; the others are walked without recursion, stopping at the first level too deep.
    """
    brackets = frame.count("{") + frame.count("[") if isinstance(frame, str) else frame.count(b"{") + frame.count(b"[")
    if brackets <= limit or not isinstance(value, (dict, list)):
        return False
    if limit < 1:
        return True
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False
