"""livegate.logs: a line's session and tenant travel with the call (bound in the context or passed as
``extra``), never parsed out of the message text."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from livegate import logs


def _format(record: logging.LogRecord) -> dict:
    logs.ContextFilter().filter(record)
    return orjson.loads(logs.JsonFormatter("test").format(record))


def _record(msg: str, *args: object, **extra: str) -> logging.LogRecord:
    record = logging.LogRecord("livegate.test", logging.INFO, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


async def test_bound_fields_reach_the_tasks_started_after_the_bind() -> None:
    seen: list[dict] = []

    async def child(line: str) -> None:
        await asyncio.sleep(0)
        seen.append(_format(_record(line)))

    async def session_task(sid: str, tenant: str) -> None:
        logs.bind(session=sid, tenant=tenant)
        await asyncio.sleep(0)
        task = asyncio.create_task(child(f"child of {sid}"))
        seen.append(_format(_record(f"line of {sid}")))
        await task

    await asyncio.gather(session_task("s-a", "acme"), session_task("s-b", "globex"))
    got = sorted((d["msg"], d["session"], d["tenant"]) for d in seen)
    assert got == [("child of s-a", "s-a", "acme"), ("child of s-b", "s-b", "globex"),
                   ("line of s-a", "s-a", "acme"), ("line of s-b", "s-b", "globex")]
    assert "session" not in _format(_record("outside every session"))  # the binds stayed in their tasks


def test_text_is_not_parsed_for_fields() -> None:
    out = _format(_record("session %s created for tenant %s", "s-abc", "acme"))
    assert "session" not in out and "tenant" not in out


def test_extra_wins_over_the_context_and_unbind_restores() -> None:
    token = logs.bind(session="s-outer")
    try:
        assert _format(_record("x", **logs.fields(session="s-inner")))["session"] == "s-inner"
        assert _format(_record("y"))["session"] == "s-outer"
    finally:
        logs.unbind(token)
    assert logs.bound() == {}


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown log fields"):
        logs.bind(sesion="s-typo")
