"""A conversation taken over while its earlier stream or session is still alive.

- Resume by handle (the Live API's own flow: collect the handle, the stream ends, reconnect with it): right
  after an abnormal end of the first stream, the new session takes the conversation over (the earlier one is
  ended and its upstream closed first, so the upstream resume is not refused); while the first stream is
  still attached, the answer is FAILED_PRECONDITION SESSION_STILL_ATTACHED, at once.
- A second reattach with the same token: the older stream ends with ABORTED REATTACHED_ELSEWHERE (on whatever
  front it is), a message written on it after the takeover is refused, and every message of the newer stream
  is delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from livegate.redis import keys
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc
from tests.durability.test_lost_callers import session_gone, wait_for
from tests.durability.test_reattach import read_until, text_msg

MODEL = "gemini-live-2.5-flash"


@pytest.fixture
async def stub(stack: dict[str, Any]) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(stack["front"].address) as channel:
        yield gateway_pb2_grpc.LiveGatewayStub(channel)


def setup_msg(handle: str | None = None) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.setup.model = MODEL
    m.setup.generation_config.response_modalities.append(1)  # TEXT
    m.setup.session_resumption.SetInParent()
    if handle is not None:
        m.setup.session_resumption.handle = handle
    return m


def text_of(turn: list[gw.ServerMessage]) -> str:
    return "".join(p.text for m in turn for p in m.server_content.model_turn.parts)


async def ask(call: Any, text: str) -> str:
    await call.write(text_msg(text))
    return text_of(await read_until(call, lambda m: m.server_content.turn_complete))


async def first_session_with_handle(stub: Any) -> tuple[Any, gw.SessionInfo, str]:
    """A session that had one turn, and the gateway handle of its conversation after that turn."""
    call = stub.Connect()
    await call.write(setup_msg())
    info = (await call.read()).session
    assert "Gemini are you there" in await ask(call, "Hello? Gemini are you there?")
    update = await read_until(call, lambda m: m.session_resumption_update.resumable
                              and m.session_resumption_update.new_handle != "")
    handle = update[-1].session_resumption_update.new_handle
    assert handle.startswith("lgh_")
    return call, info, handle


async def test_resume_right_after_a_cancelled_stream_takes_the_conversation_over(stub: Any,
                                                                                 stack: dict[str, Any]) -> None:
    call, info, handle = await first_session_with_handle(stub)
    call.cancel()  # an abnormal end (an exception in the caller, a network drop): the session is detached
    again = stub.Connect()
    await again.write(setup_msg(handle))
    new = (await again.read()).session
    assert new.session_id != info.session_id
    await read_until(again, lambda m: m.HasField("setup_complete"), timeout_s=10)
    assert await ask(again, "What was the last question I asked?") == 'You asked: "Hello? Gemini are you there?"'
    view = await stub.GetSession(gw.GetSessionRequest(session_id=new.session_id))
    assert view.counters.upstream_connects == 1, "the upstream resume was not refused (no 1011 retries)"
    assert await session_gone(stack["redis"], info.session_id), "the earlier session ended before the resume"
    await again.done_writing()


async def test_resume_after_a_half_close_waits_for_the_earlier_session_to_end(stub: Any) -> None:
    call, _, handle = await first_session_with_handle(stub)
    await call.done_writing()  # the SDK's `async with` exit: the session closes, the resume follows at once
    again = stub.Connect()
    await again.write(setup_msg(handle))
    new = (await again.read()).session
    await read_until(again, lambda m: m.HasField("setup_complete"), timeout_s=10)
    assert await ask(again, "What was the last question I asked?") == 'You asked: "Hello? Gemini are you there?"'
    view = await stub.GetSession(gw.GetSessionRequest(session_id=new.session_id))
    assert view.counters.upstream_connects == 1
    await again.done_writing()


async def test_resume_while_the_first_stream_is_attached_is_refused_at_once(stub: Any) -> None:
    call, info, handle = await first_session_with_handle(stub)
    second = stub.Connect()
    await second.write(setup_msg(handle))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async with asyncio.timeout(5):  # well under the 8 upstream attempts of a refused resume
            await second.read()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SESSION_STILL_ATTACHED" in str(err.value.trailing_metadata()) or "still held" in err.value.details()
    assert info.session_id in err.value.details()
    # the first stream is untouched and goes on
    assert await ask(call, "repeat after me: still here") == "still here"
    await call.done_writing()


# -- one stream per reattach ---------------------------------------------------------------------------------


def reattach_msg(info: gw.SessionInfo, last_seq: int) -> gw.ClientMessage:
    return gw.ClientMessage(reattach=gw.Reattach(session_id=info.session_id, reattach_token=info.reattach_token,
                                                 last_seq=last_seq))


async def assert_taken_over(call: Any) -> None:
    """The older stream ends with ABORTED REATTACHED_ELSEWHERE; a message written on it is refused."""
    async with asyncio.timeout(10):
        try:
            while True:  # a write is refused with the stream's end, or fails once it has ended
                await call.write(text_msg("repeat after me: from the old stream"))
                assert await call.read() is not grpc.aio.EOF
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass
        assert await call.code() == grpc.StatusCode.ABORTED
        assert "took it over" in (await call.details() or "")


async def open_attached(stub: Any) -> tuple[Any, gw.SessionInfo, int]:
    call = stub.Connect()
    await call.write(setup_msg())
    info = (await call.read()).session
    got = await read_until(call, lambda m: m.HasField("setup_complete"))
    return call, info, got[-1].seq


async def test_a_second_reattach_ends_the_first_stream_and_delivers_every_message(stub: Any,
                                                                                 stack: dict[str, Any]) -> None:
    first, info, seq = await open_attached(stub)
    one = stub.Connect()
    await one.write(reattach_msg(info, seq))
    assert (await one.read()).session.session_id == info.session_id
    await assert_taken_over(first)
    two = stub.Connect()  # the same token again, while `one` is attached
    await two.write(reattach_msg(info, seq))
    assert (await two.read()).session.session_id == info.session_id
    await assert_taken_over(one)
    for i in range(5):
        assert await ask(two, f"repeat after me: message {i}") == f"message {i}"
    await two.done_writing()
    await wait_for(lambda: session_gone(stack["redis"], info.session_id), "the session ends with its last stream")


async def test_a_reattach_through_another_front_ends_the_stream_on_the_first(stub: Any, stack: dict[str, Any],
                                                                            redis: Any) -> None:
    from service.server import Front

    first, info, seq = await open_attached(stub)
    other = Front(stack["settings"])
    await other.start()
    try:
        async with grpc.aio.insecure_channel(other.address) as channel:
            two = gateway_pb2_grpc.LiveGatewayStub(channel).Connect()
            await two.write(reattach_msg(info, seq))
            assert (await two.read()).session.session_id == info.session_id
            await assert_taken_over(first)
            for i in range(5):
                assert await ask(two, f"repeat after me: message {i}") == f"message {i}"
            assert (await redis.hget(keys.session_meta(info.session_id), "front")).decode() == other.id
            await two.done_writing()
            await wait_for(lambda: session_gone(redis, info.session_id), "the session ends with its last stream")
    finally:
        await other.aclose(0.0)
    assert not stack["front"].sessions
