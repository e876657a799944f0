"""Caller input the front must refuse (issue 20): whatever a worker cannot encode as Live API JSON, mime types
the Live API does not take, oversized ids and page tokens, and the ListSessions conventions. Every refusal is a
typed status with an ErrorInfo reason and a bounded message, never INTERNAL or UNKNOWN, and no worker logs a
traceback for it. Through a real stack (front, two workers, Redis, the emulator over TLS)."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc
from tests.budgets.test_message_budgets import answered

MODEL = "gemini-live-2.5-flash"
BOUNDED_DETAILS = 400  # characters: a refusal echoes at most 64 characters of what the caller sent


def setup(**tool_params: Any) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.setup.model = MODEL
    m.setup.generation_config.response_modalities.append(1)
    if tool_params:
        m.setup.tools.add().function_declarations.add(name="lookup").parameters.update(tool_params)
    return m


def tool_response(value: Any) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.tool_response.function_responses.add(id="call-1", name="lookup").response.update({"x": value})
    return m


def audio(mime: str) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.realtime_input.audio.mime_type = mime
    m.realtime_input.audio.data = b"\x00\x00" * 320
    return m


def video_offset(seconds: int) -> gw.ClientMessage:
    m = gw.ClientMessage()
    part = m.client_content.turns.add(role="user").parts.add(text="look")
    part.video_metadata.start_offset.seconds = seconds
    return m


async def close(call: Any) -> None:
    """Half-close a Connect and read it to its end."""
    await call.done_writing()
    async with asyncio.timeout(20):
        while await call.read() is not grpc.aio.EOF:
            pass


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    info = error_details_pb2.ErrorInfo()
    assert status is not None and status.details and status.details[0].Unpack(info), (err.code(), err.details())
    return info.reason


async def stream_status(stub: Any, *messages: gw.ClientMessage) -> grpc.aio.AioRpcError:
    call = stub.Connect()
    for m in messages:
        await call.write(m)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async with asyncio.timeout(20):
            while await call.read() is not grpc.aio.EOF:
                pass
    return err.value


@pytest.fixture
async def stub(stack: dict[str, Any]) -> Any:
    async with grpc.aio.insecure_channel(stack["front"].address) as channel:
        yield gateway_pb2_grpc.LiveGatewayStub(channel)


def assert_refused(err: grpc.aio.AioRpcError, code: grpc.StatusCode, reason: str, *fragments: str) -> None:
    assert err.code() == code, (err.code(), err.details())
    assert reason_of(err) == reason, err.details()
    details = err.details() or ""
    assert len(details) < BOUNDED_DETAILS, len(details)
    for f in fragments:
        assert f in details, details


def no_worker_errors(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or (r.exc_info and r.name.startswith("workers"))]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad[:3]]


async def test_non_finite_numbers_are_refused_with_their_field(stub: Any, caplog: pytest.LogCaptureFixture) -> None:
    """NaN / Infinity in a tool response and in a function's parameters: INVALID_ARGUMENT naming the field, and
    no worker error (issue 20: INTERNAL "SerializeToJsonError" and a worker traceback per message)."""
    caplog.set_level(logging.INFO)
    for value, word in ((float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity")):
        err = await stream_status(stub, setup(), tool_response(value))
        assert_refused(err, grpc.StatusCode.INVALID_ARGUMENT, "NON_FINITE_NUMBER",
                       f'tool_response.function_responses[0].response.fields["x"]: {word} is not valid JSON')
    nested = tool_response({"rows": [1, {"score": float("nan")}]})
    err = await stream_status(stub, setup(), nested)
    assert_refused(err, grpc.StatusCode.INVALID_ARGUMENT, "NON_FINITE_NUMBER",
                   '.fields["rows"].list_value.values[1].struct_value.fields["score"]: NaN')
    err = await stream_status(stub, setup(type="object", properties={"n": {"type": "number", "maximum": float("inf")}}))
    assert_refused(err, grpc.StatusCode.INVALID_ARGUMENT, "NON_FINITE_NUMBER",
                   "setup.tools[0].function_declarations[0].parameters.fields[\"properties\"]", "Infinity")
    temp = setup()
    temp.setup.generation_config.temperature = float("nan")
    err = await stream_status(stub, temp)
    assert_refused(err, grpc.StatusCode.INVALID_ARGUMENT, "NON_FINITE_NUMBER", "setup.generation_config.temperature")
    no_worker_errors(caplog)


async def test_out_of_range_durations_and_deep_nesting_are_refused(stub: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    err = await stream_status(stub, setup(), video_offset(10**12))
    assert_refused(err, grpc.StatusCode.INVALID_ARGUMENT, "VALUE_OUT_OF_RANGE",
                   "client_content.turns[0].parts[0].video_metadata.start_offset")
    deep: list[Any] = []
    for _ in range(40):  # lists: protobuf's parser takes ~48 levels of them (objects: 32, then MALFORMED_MESSAGE)
        deep = [deep]
    err = await stream_status(stub, setup(), tool_response(deep))
    assert_refused(err, grpc.StatusCode.INVALID_ARGUMENT, "NESTING_TOO_DEEP", "nested deeper than 32 levels")
    no_worker_errors(caplog)


async def test_mime_types_are_checked_exactly(stub: Any, stack: dict[str, Any]) -> None:
    for mime in ("audio/pcmXYZ", "audio/pcm;rate=0", "audio/pcm;rate=999999", "audio/pcm;rate=16000x", "audio/mp3",
                 "audio/pcm;rate=", "AUDIO/PCM;RATE=48000", "audio/pcm;rate = 16000", "x" * 100_000):
        err = await stream_status(stub, setup(), audio(mime))
        assert_refused(err, grpc.StatusCode.INVALID_ARGUMENT, "BAD_MIME_TYPE", "audio/pcm;rate=N")
    video = gw.ClientMessage()
    video.realtime_input.video.mime_type = "image/jpegX"
    assert_refused(await stream_status(stub, setup(), video), grpc.StatusCode.INVALID_ARGUMENT, "BAD_MIME_TYPE",
                   "image/jpeg")
    # the forms the Live API takes pass, and the session goes on to a worker
    call = stub.Connect()
    await call.write(setup())
    for mime in ("audio/pcm", "audio/pcm;rate=16000", "audio/pcm; rate=24000", "audio/pcm;rate=48000"):
        await call.write(audio(mime))
    await answered(call, "hi")
    await close(call)


async def test_session_ids_empty_or_huge(stub: Any) -> None:
    """A 100 KB id is NOT_FOUND with a bounded message (issue 20: RESOURCE_EXHAUSTED, the echo outgrew the
    caller's metadata limit); an empty one is INVALID_ARGUMENT."""
    huge = "s-" + "x" * 100_000
    for rpc in (stub.GetSession(gw.GetSessionRequest(session_id=huge)),
                stub.CloseSession(gw.CloseSessionRequest(session_id=huge))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rpc
        assert_refused(err.value, grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND", "(100002 characters)")
    reattach = gw.ClientMessage(reattach=gw.Reattach(session_id=huge, reattach_token="t"))
    assert_refused(await stream_status(stub, reattach), grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    for rpc in (stub.GetSession(gw.GetSessionRequest()), stub.CloseSession(gw.CloseSessionRequest())):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rpc
        assert_refused(err.value, grpc.StatusCode.INVALID_ARGUMENT, "SESSION_ID_REQUIRED", "session_id is required")
    empty = gw.ClientMessage(reattach=gw.Reattach(reattach_token="t"))
    assert_refused(await stream_status(stub, empty), grpc.StatusCode.INVALID_ARGUMENT, "SESSION_ID_REQUIRED")


async def test_page_tokens_and_sizes(stub: Any) -> None:
    """A huge page_token is INVALID_ARGUMENT (issue 20: UNKNOWN, a raw Redis error), as is any token the gateway
    did not issue, and a negative page_size."""
    forged = [base64.urlsafe_b64encode(body).decode().rstrip("=")
              for body in (b"1." + b"9" * 40 + b".s-x", b"2.1.s-x", b"1.1.s{x}", b"\xff\xfe")]
    for token in ("9" * 30, "9" * 5000, "abc", "-1", "x" * 100_000, "a b", *forged):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListSessions(gw.ListSessionsRequest(page_token=token))
        assert_refused(err.value, grpc.StatusCode.INVALID_ARGUMENT, "BAD_PAGE_TOKEN", "next_page_token")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListSessions(gw.ListSessionsRequest(page_size=-1))
    assert_refused(err.value, grpc.StatusCode.INVALID_ARGUMENT, "BAD_PAGE_SIZE", "page_size")


async def test_pages_neither_skip_nor_repeat_while_sessions_come_and_go(stub: Any, stack: dict[str, Any]) -> None:
    async def open_one() -> tuple[Any, str]:
        call = stub.Connect()
        await call.write(setup())
        return call, (await call.read()).session.session_id

    opened = [await open_one() for _ in range(7)]
    steady = {sid for _, sid in opened[::2]}  # live through the whole listing
    churn = [call for call, _ in opened[1::2]]
    seen: list[str] = []
    token = ""
    pages = 0
    added: list[tuple[Any, str]] = []
    while True:
        resp = await stub.ListSessions(gw.ListSessionsRequest(page_size=2, page_token=token))
        pages += 1
        seen += [s.session_id for s in resp.sessions]
        assert len(resp.sessions) <= 2
        if churn:  # between pages: one session ends, another starts
            await close(churn.pop(0))
            added.append(await open_one())
        if not resp.next_page_token:
            break
        assert len(resp.next_page_token) <= 200
        token = resp.next_page_token
    assert len(seen) == len(set(seen)), f"a session was listed twice: {seen}"
    assert steady <= set(seen), f"skipped {steady - set(seen)}"
    assert pages >= 4
    # the default page size (50) lists every live session at once
    everything = await stub.ListSessions(gw.ListSessionsRequest())
    live = {sid for _, sid in opened[::2]} | {sid for _, sid in added}
    assert live <= {s.session_id for s in everything.sessions} and not everything.next_page_token
    capped = await stub.ListSessions(gw.ListSessionsRequest(page_size=1_000_000))
    assert len(capped.sessions) == len(everything.sessions)
    for call, _ in [*opened[::2], *added]:
        await close(call)


async def test_a_worker_ends_an_unencodable_message_with_a_typed_status(stub: Any, stack: dict[str, Any],
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Defence in depth: a logged client message the front did not check (a front of an older version) that
    JSON cannot carry ends its session with INVALID_ARGUMENT UNENCODABLE_MESSAGE, without a worker traceback
    (issue 20: INTERNAL "gateway worker error: SerializeToJsonError" and a traceback per message)."""
    from livegate.redis import keys, records

    caplog.set_level(logging.INFO)
    call = stub.Connect()
    await call.write(setup())
    sid = (await call.read()).session.session_id
    assert (await call.read()).HasField("setup_complete")  # a worker owns it
    redis = stack["redis"]
    record = records.SessionRecord.from_redis(await redis.hgetall(keys.session_meta(sid)))
    raw = tool_response(float("nan")).SerializeToString()
    # what the front writes for client message #1: the log entry, and the owner's inbox entry
    await redis.xadd(keys.session_c2s(sid), {"m": raw, "t": 0}, id=keys.stream_id(1))
    await redis.xadd(keys.worker_inbox(record.worker), {"s": sid, "i": 1, "m": raw, "t": 0})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async with asyncio.timeout(20):
            while await call.read() is not grpc.aio.EOF:
                pass
    assert_refused(err.value, grpc.StatusCode.INVALID_ARGUMENT, "UNENCODABLE_MESSAGE", "toolResponse", "NaN")
    no_worker_errors(caplog)


async def test_a_huge_route_name_is_echoed_bounded(stub: Any) -> None:
    m = setup()
    m.options.upstream = "r" * 100_000
    assert_refused(await stream_status(stub, m), grpc.StatusCode.NOT_FOUND, "ROUTE_NOT_FOUND", "(100000 characters)")
