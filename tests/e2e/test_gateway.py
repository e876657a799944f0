"""The gateway's own behaviour: bad input, capacity, cleanup, admin RPCs, health, reflection."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from google.rpc import error_details_pb2

from livegate.client import APIError
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc
from tests.e2e.helpers import collect_turn, redis_keys, text_of

MODEL = "gemini-live-2.5-flash"


def setup_msg(model: str = MODEL) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.setup.model = model
    m.setup.generation_config.response_modalities.append(1)  # TEXT
    return m


def text_msg(text: str) -> gw.ClientMessage:
    m = gw.ClientMessage()
    turn = m.client_content.turns.add(role="user")
    turn.parts.add(text=text)
    m.client_content.turn_complete = True
    return m


async def stream_status(stub: Any, messages: list[Any], half_close: bool = True) -> tuple[grpc.StatusCode, str, list[gw.ServerMessage], Any]:
    """Send ``messages`` on a Connect stream, read until it ends; return (code, details, received, call)."""
    call = stub.Connect()
    received: list[gw.ServerMessage] = []
    for m in messages:
        await call.write(m)
    if half_close:
        await call.done_writing()
    try:
        async with asyncio.timeout(15):
            async for r in call:
                received.append(r)
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or "", received, err
    return grpc.StatusCode.OK, "", received, call


async def still_serving(client: Any) -> None:
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as session:
        await session.send_client_content(turns={"role": "user", "parts": [{"text": "still there?"}]})
        assert text_of(await collect_turn(session)) == 'You said: "still there?"'


async def assert_no_session_keys(redis: Any, timeout_s: float = 10.0) -> None:
    """Session keys are deleted when sessions end (polls: the worker deletes them just after the end)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        leftover = [k for k in await redis_keys(redis) if k.startswith("lg:{s-") or k.startswith("lg:{t:")]
        if not leftover:
            return
        if loop.time() > deadline:
            details = {k: (await redis.type(k), await redis.ttl(k)) for k in leftover}
            raise AssertionError(f"session keys left in Redis: {details}")
        await asyncio.sleep(0.05)


@pytest.fixture
def stub(stack: dict[str, Any]) -> Any:
    channel = grpc.aio.insecure_channel(stack["front"].address)
    return gateway_pb2_grpc.LiveGatewayStub(channel)


# -- bad input ---------------------------------------------------------------------------------------

async def test_first_message_must_be_setup(stub: Any, client: Any, redis: Any) -> None:
    code, details, received, _ = await stream_status(stub, [text_msg("hi")])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "first message must be `setup`" in details
    assert received == []
    await still_serving(client)


async def test_second_setup_rejected_and_session_cleaned(stub: Any, client: Any, redis: Any) -> None:
    code, details, received, _ = await stream_status(stub, [setup_msg(), setup_msg()])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "setup may only be the first message" in details
    assert received and received[0].HasField("session")
    await assert_no_session_keys(redis)
    await still_serving(client)


async def test_unknown_model_not_found(stub: Any, client: Any) -> None:
    code, details, _, err = await stream_status(stub, [setup_msg("gemini-imaginary-live")])
    assert code == grpc.StatusCode.NOT_FOUND
    assert "gemini-imaginary-live" in details and "gemini-live-2.5-flash" in details
    status = rpc_status.from_call(err)
    info = error_details_pb2.ErrorInfo()
    assert status is not None and status.details[0].Unpack(info)
    assert info.reason == "MODEL_NOT_FOUND"
    await still_serving(client)


async def test_wrong_audio_mime_type(stub: Any, client: Any, redis: Any) -> None:
    bad = gw.ClientMessage()
    bad.realtime_input.audio.mime_type = "audio/mp3"
    bad.realtime_input.audio.data = b"\x00" * 640
    code, details, _, _ = await stream_status(stub, [setup_msg(), bad])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "audio/mp3" in details and "audio/pcm;rate=16000" in details
    await assert_no_session_keys(redis)
    await still_serving(client)


@pytest.mark.parametrize("settings_overrides", [{"max_message_bytes": 64 * 1024}])
async def test_message_over_size_limit(stub: Any, client: Any, settings_overrides: dict[str, Any]) -> None:
    big = gw.ClientMessage()
    big.realtime_input.audio.mime_type = "audio/pcm;rate=16000"
    big.realtime_input.audio.data = b"\x00" * (128 * 1024)
    code, details, _, _ = await stream_status(stub, [setup_msg(), big])
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in details
    await still_serving(client)


async def test_garbage_bytes(stack: dict[str, Any], client: Any) -> None:
    channel = grpc.aio.insecure_channel(stack["front"].address)
    connect = channel.stream_stream("/livegate.v1.LiveGateway/Connect", request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
    call = connect()
    await call.write(b"\xff\xff\xff\xff garbage \x00\x01")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with asyncio.timeout(10):
            async for _ in call:
                pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ClientMessage" in (info.value.details() or "")
    await channel.close()
    await still_serving(client)


# -- capacity and cleanup ------------------------------------------------------------------------

@pytest.mark.parametrize("settings_overrides", [{"worker_capacity": 2, "setup_timeout_s": 2.0}])
async def test_two_workers_share_sessions_by_capacity(client: Any, stub: Any, stack: dict[str, Any], redis: Any,
                                                      settings_overrides: dict[str, Any]) -> None:
    async with contextlib_stack() as enter:
        sessions = [await enter(client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}))
                    for _ in range(4)]
        for s in sessions:  # each has a worker: a turn works
            await s.send_client_content(turns={"role": "user", "parts": [{"text": "hi"}]})
            await collect_turn(s)
        owners = [(await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))).worker_id for s in sessions]
        assert sorted(owners.count(w.id) for w in stack["workers"]) == [2, 2]
        # a fifth session finds every worker full and is refused with a clear, retryable status
        code, details, _, err = await stream_status(stub, [setup_msg()])
        assert code == grpc.StatusCode.UNAVAILABLE and "no worker took the session" in details
        status = rpc_status.from_call(err)
        retry = error_details_pb2.RetryInfo()
        assert status is not None and any(d.Unpack(retry) for d in status.details)
        # when a session ends, its worker takes the next one
        await sessions[0].aclose()
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "now?"}]})
        assert text_of(await collect_turn(s)) == 'You said: "now?"'
    await assert_no_session_keys(redis)


async def test_nothing_left_in_redis_after_sessions_end(client: Any, stack: dict[str, Any], redis: Any) -> None:
    for i in range(3):
        async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"], "session_resumption": {}}) as s:
            await s.send_client_content(turns={"role": "user", "parts": [{"text": f"turn {i}"}]})
            await collect_turn(s)
    await assert_no_session_keys(redis)
    keys = await redis_keys(redis)
    for k in keys:
        ttl = await redis.ttl(k)
        owned = any(tag in k for tag in ("{w:", "{f:", "{alloc}", "{fleet}"))  # deleted by their process at shutdown
        assert owned or ttl > 0, f"{k} has neither an owner nor a TTL"
    for w in stack["workers"]:
        assert not w.sessions


# -- admin RPCs ------------------------------------------------------------------------------------

async def test_admin_get_list_close(client: Any, stub: Any, redis: Any) -> None:
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "count me"}]})
        await collect_turn(s)
        info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
        assert info.state == gw.Session.ACTIVE and info.model == MODEL and info.tenant == "default"
        assert socket.gethostname() in info.worker_id and str(os.getpid()) in info.worker_id
        assert info.counters.client_messages == 1 and info.counters.server_messages >= 3
        assert info.counters.upstream_connects == 1 and info.age.ToMilliseconds() >= 0
        listed = await stub.ListSessions(gw.ListSessionsRequest())
        assert [x.session_id for x in listed.sessions] == [s.session_id]
        closed = await stub.CloseSession(gw.CloseSessionRequest(session_id=s.session_id))
        assert closed.session.state == gw.Session.CLOSING
        with pytest.raises(APIError) as ended:  # the client raises google-genai's errors
            async with asyncio.timeout(10):
                async for _ in s.receive_raw():
                    pass
        assert ended.value.grpc_status == grpc.StatusCode.ABORTED
    await assert_no_session_keys(redis)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_and_reflection(stack: dict[str, Any]) -> None:
    async with grpc.aio.insecure_channel(stack["front"].address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "livegate.v1.LiveGateway"):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = refl.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        resp = await call.read()
        await call.done_writing()
        names = {s.name for s in resp.list_services_response.service}
        assert {"livegate.v1.LiveGateway", "grpc.health.v1.Health"} <= names


async def test_reflection_v1_as_well_as_v1alpha(stack: dict[str, Any]) -> None:
    """grpcurl, buf curl and Postman ask grpc.reflection.v1 first; older tools v1alpha. Both answer, and a
    file descriptor asked through v1 describes the gateway."""
    async with grpc.aio.insecure_channel(stack["front"].address) as channel:
        for version in ("v1", "v1alpha"):
            call = channel.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                                         request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                         response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            names = {s.name for s in (await call.read()).list_services_response.service}
            await call.write(reflection_pb2.ServerReflectionRequest(file_containing_symbol="livegate.v1.LiveGateway"))
            files = (await call.read()).file_descriptor_response.file_descriptor_proto
            await call.done_writing()
            assert {"livegate.v1.LiveGateway", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection"} <= names, version
            assert files, version


def contextlib_stack() -> Any:
    import contextlib

    class _Stack(contextlib.AsyncExitStack):
        async def __aenter__(self) -> Any:  # type: ignore[override]
            await super().__aenter__()
            return self.enter_async_context

    return _Stack()


async def test_half_close_lets_the_turn_in_flight_finish(stub: Any, redis: Any) -> None:
    """A caller that sends its turn and half-closes at once (a `buf curl` heredoc) still gets the reply."""
    code, _, received, _ = await stream_status(stub, [setup_msg(), text_msg("Hello? Anyone there?")])
    assert code == grpc.StatusCode.OK
    texts = "".join(p.text for m in received for p in m.server_content.model_turn.parts)
    assert texts == 'You said: "Hello? Anyone there?"'
    assert received[-1].server_content.turn_complete
    await assert_no_session_keys(redis)


# -- fencing -----------------------------------------------------------------------------------------

async def test_the_front_drops_outbox_entries_of_an_older_epoch(client: Any, stub: Any, stack: dict[str, Any],
                                                                redis: Any) -> None:
    from livegate.redis import keys
    from livegate import metrics

    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "hi"}]})
        await collect_turn(s)
        front = stack["front"]
        session = front.sessions[s.session_id]
        assert session.epoch == 1
        # what a worker that lost the session (a lower epoch) still writes: the next seq, a whole turn
        stale = gw.ServerMessage(seq=session.last_seq + 1)
        stale.server_content.model_turn.parts.add(text="from a worker that lost the session")
        stale.server_content.turn_complete = True
        before = metrics.STALE_ENTRIES._value.get()
        await redis.xadd(keys.front_outbox(front.id), {"s": s.session_id, "q": stale.seq, "m": stale.SerializeToString(),
                                                       "w": "worker-gone", "ep": 0})
        # the owner's next turn takes that seq, after the stale entry in the outbox: the caller reads the owner's
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "again"}]})
        assert text_of(await collect_turn(s)) == 'You said: "again"'
        assert metrics.STALE_ENTRIES._value.get() == before + 1
        owner = (await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))).worker_id
        assert owner in {w.id for w in stack["workers"]} and session.worker == owner
