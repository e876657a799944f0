"""docs/errors.md is the error contract: this test reads its table and provokes every row against a real stack
(front, workers, Redis, the emulator), checking the gRPC status, the ErrorInfo reason and the retryable flag."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc
from tests.e2e.helpers import collect_turn, text_of

MODEL = "gemini-live-2.5-flash"
DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def contract() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| ([A-Za-z0-9_]+) \| ([A-Z_]+|\(none\)) \| (yes|no|-) \|", line)
        if m and m.group(1) != "reason":
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


CONTRACT = contract()


def setup(model: str = MODEL, modalities: tuple[int, ...] = (1,), voice: str = "") -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.setup.model = model
    m.setup.generation_config.response_modalities.extend(modalities)
    if voice:
        m.setup.generation_config.speech_config.voice_config.prebuilt_voice_config.voice_name = voice
    return m


def text(t: str) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.client_content.turns.add(role="user").parts.add(text=t)
    m.client_content.turn_complete = True
    return m


def audio(ms: int, mime: str = "audio/pcm;rate=16000") -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.realtime_input.audio.mime_type = mime
    m.realtime_input.audio.data = b"\x00\x00" * (16 * ms)
    return m


async def ended(call: Any, timeout_s: float = 30.0) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async with asyncio.timeout(timeout_s):
            while await call.read() is not grpc.aio.EOF:
                pass
    return err.value


async def stream(stub: Any, *messages: gw.ClientMessage) -> grpc.aio.AioRpcError:
    call = stub.Connect()
    for m in messages:
        await call.write(m)
    return await ended(call)


async def after_first_turn(stub: Any, emulator: Any, close: dict[str, Any]) -> grpc.aio.AioRpcError:
    """An upstream close (fault injection) in a live session, after one good turn."""
    call = stub.Connect()
    await call.write(setup())
    await call.write(text("Hello?"))
    async with asyncio.timeout(20):
        while not (await call.read()).server_content.turn_complete:
            pass
    emulator.faults.add({"target": emulator.conversations[-1]["id"], "when": "immediately", "action": "close", **close})
    await call.write(text("Still there?"))
    return await ended(call)


async def resume_handle(client: Any) -> str:
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"], "session_resumption": {}}) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "remember me"}]})
        await collect_turn(s)
        async for m in s.receive_raw():
            if m.session_resumption_update.new_handle:
                return str(m.session_resumption_update.new_handle)
    raise AssertionError("no handle")


Trigger = Callable[[dict[str, Any]], Awaitable[Any]]


# a slow reader's receive window must stay small: gRPC's BDP probing would otherwise grow it past the reply
SLOW_READER_CHANNEL = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65536)]


async def _slow_reader(c: dict[str, Any]) -> grpc.aio.AioRpcError:
    call = c["slow_stub"].Connect()
    await call.write(setup(modalities=(3,)))  # audio replies: enough bytes to fill the caller's HTTP/2 window
    sid = (await call.read()).session.session_id
    await call.write(text("say: " + "word " * 800))
    async with asyncio.timeout(30):
        while await c["redis"].xlen(f"lg:{{{sid}}}:s2c") < 150:
            await asyncio.sleep(0.05)
    return await ended(call)


async def _replay_trimmed(c: dict[str, Any]) -> grpc.aio.AioRpcError:
    call = c["stub"].Connect()
    await call.write(setup())
    info = (await call.read()).session
    await call.write(text("say: " + "word " * 2000))
    async with asyncio.timeout(30):
        while not (await call.read()).server_content.turn_complete:
            pass
    call.cancel()
    return await stream(c["stub"], gw.ClientMessage(reattach=gw.Reattach(
        session_id=info.session_id, reattach_token=info.reattach_token, last_seq=0)))


async def _closed_by_admin(c: dict[str, Any]) -> grpc.aio.AioRpcError:
    call = c["stub"].Connect()
    await call.write(setup())
    sid = (await call.read()).session.session_id
    await call.read()  # setup_complete: a worker holds it
    await c["stub"].CloseSession(gw.CloseSessionRequest(session_id=sid))
    return await ended(call)


async def _session_lost(c: dict[str, Any]) -> grpc.aio.AioRpcError:
    """The front was paused past its heartbeat TTL, and the session's grace ran out meanwhile (docs/durability.md,
    "Pauses"): when the front rejoins the fleet, the session cannot be re-attached."""
    from livegate.redis import keys

    call = c["stub"].Connect()
    await call.write(setup())
    sid = (await call.read()).session.session_id
    await call.read()  # setup_complete: a worker holds it
    # what a worker does to the sessions of a front it found dead, with the grace already over
    await c["redis"].hset(keys.session_meta(sid), mapping={"state": "detached", "grace_until_ms": 1})
    await c["front"].membership.rejoin(5.0)  # what the front does when its beat finds itself declared dead
    return await ended(call)


async def _handle_model_mismatch(c: dict[str, Any]) -> grpc.aio.AioRpcError:
    m = setup("gemini-2.0-flash-live-001")
    m.setup.session_resumption.handle = await resume_handle(c["client"])
    return await stream(c["stub"], m)


async def _handle_not_found(c: dict[str, Any]) -> grpc.aio.AioRpcError:
    m = setup()
    m.setup.session_resumption.handle = "lgh_not-a-handle"
    return await stream(c["stub"], m)


async def _session_still_attached(c: dict[str, Any]) -> grpc.aio.AioRpcError:
    first = c["stub"].Connect()  # attached, with a resumption handle
    m = setup()
    m.setup.session_resumption.SetInParent()
    await first.write(m)
    await first.write(text("remember me"))
    handle = ""
    async with asyncio.timeout(20):
        while not handle:
            handle = (await first.read()).session_resumption_update.new_handle
    m.setup.session_resumption.handle = handle
    return await stream(c["stub"], m)


async def _reattached_elsewhere(c: dict[str, Any]) -> grpc.aio.AioRpcError:
    first = c["stub"].Connect()
    await first.write(setup())
    info = (await first.read()).session
    second = c["stub"].Connect()
    await second.write(gw.ClientMessage(reattach=gw.Reattach(session_id=info.session_id,
                                                            reattach_token=info.reattach_token)))
    await second.read()
    return await ended(first)


async def _unary(coro: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    return err.value


async def _resumed(c: dict[str, Any]) -> None:
    async with c["client"].aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "Is it on?"}]})
        await collect_turn(s)
        c["emulator"].faults.add({"target": c["emulator"].conversations[-1]["id"], "when": "immediately",
                                  "action": "close", "close": "internal"})
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "What was the last question I asked?"}]})
        assert text_of(await collect_turn(s)) == 'You asked: "Is it on?"'


def _tool_response_without_id() -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.tool_response.function_responses.add().response.update({"result": "ok"})
    return m


def _tool_response_with(value: Any) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.tool_response.function_responses.add(id="call-1", name="f").response.update({"x": value})
    return m


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _video_offset(seconds: int) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.client_content.turns.add(role="user").parts.add(text="look").video_metadata.start_offset.seconds = seconds
    return m


def _realtime_text(n: int) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.realtime_input.text = "x" * n
    return m


async def _admission_full(c: dict[str, Any]) -> grpc.aio.AioRpcError:
    held = c["stub"].Connect()
    await held.write(setup())
    await held.read()
    await held.read()  # setup_complete: it holds the scope's only slot
    waiting = c["stub"].Connect(timeout=1.5)
    await waiting.write(setup())
    return await ended(waiting)


async def _rate_limited(c: dict[str, Any]) -> grpc.aio.AioRpcError:
    first = c["stub"].Connect()
    await first.write(setup())
    await first.read()
    return await stream(c["stub"], setup())


def _media(size: int) -> gw.ClientMessage:
    return gw.ClientMessage(realtime_input={"media_chunks": [{"mime_type": "image/jpeg", "data": b"\xff" * size}]})


async def _pending_connects(c: dict[str, Any]) -> grpc.aio.AioRpcError:
    held = c["stub"].Connect()  # authenticated, no first message yet: the tenant's one pending Connect
    try:
        async with asyncio.timeout(10):
            while c["front"].budgets.pending_total < 1:
                await asyncio.sleep(0.01)
        return await ended(c["stub"].Connect())
    finally:
        held.cancel()


_CAP1 = json.dumps({"scopes": {"default/gemini-live-2.5-flash": {"cap": 1}}})
_RATE1 = json.dumps({"rate": {"default": {"per_s": 0.1, "burst": 1}}})


# reason -> (settings overrides, trigger)
TRIGGERS: dict[str, tuple[dict[str, Any], Trigger]] = {
    "SETUP_REQUIRED": ({}, lambda c: stream(c["stub"], text("hi"))),
    "SECOND_SETUP": ({}, lambda c: stream(c["stub"], setup(), setup())),
    "MISPLACED_REATTACH": ({}, lambda c: stream(c["stub"], setup(), gw.ClientMessage(reattach=gw.Reattach(session_id="x")))),
    "MALFORMED_MESSAGE": ({}, lambda c: stream(c["raw"], b"\xff\xff\xff garbage")),
    "EMPTY_MESSAGE": ({}, lambda c: stream(c["stub"], setup(), gw.ClientMessage())),
    "MODEL_REQUIRED": ({}, lambda c: stream(c["stub"], setup(model=""))),
    "ONE_MODALITY": ({}, lambda c: stream(c["stub"], setup(modalities=(1, 3)))),
    "MODALITY_NOT_SUPPORTED": ({}, lambda c: stream(c["stub"], setup("gemini-2.5-flash-native-audio-preview-09-2025"))),
    "UNKNOWN_VOICE": ({}, lambda c: stream(c["stub"], setup(modalities=(3,), voice="Bogus"))),
    "BAD_MIME_TYPE": ({}, lambda c: stream(c["stub"], setup(), audio(20, "audio/mp3"))),
    "AUDIO_CHUNK_TOO_LONG": ({}, lambda c: stream(c["stub"], setup(), audio(3000))),
    "TOOL_RESPONSE_ID": ({}, lambda c: stream(c["stub"], setup(), _tool_response_without_id())),
    "TEXT_TOO_LONG": ({}, lambda c: stream(c["stub"], setup(), _realtime_text(1_000_001))),
    "BAD_PAGE_TOKEN": ({}, lambda c: _unary(c["stub"].ListSessions(gw.ListSessionsRequest(page_token="abc")))),
    "BAD_PAGE_SIZE": ({}, lambda c: _unary(c["stub"].ListSessions(gw.ListSessionsRequest(page_size=-1)))),
    "SESSION_ID_REQUIRED": ({}, lambda c: _unary(c["stub"].GetSession(gw.GetSessionRequest()))),
    "NON_FINITE_NUMBER": ({}, lambda c: stream(c["stub"], setup(), _tool_response_with(float("nan")))),
    "VALUE_OUT_OF_RANGE": ({}, lambda c: stream(c["stub"], setup(), _video_offset(10**12))),
    "NESTING_TOO_DEEP": ({}, lambda c: stream(c["stub"], setup(), _tool_response_with(_nested_list(40)))),
    "HANDLE_MODEL_MISMATCH": ({}, _handle_model_mismatch),
    "MODEL_NOT_FOUND": ({}, lambda c: stream(c["stub"], setup(model="gemini-imaginary"))),
    "SESSION_NOT_FOUND": ({}, lambda c: _unary(c["stub"].GetSession(gw.GetSessionRequest(session_id="s-nope")))),
    "HANDLE_NOT_FOUND": ({}, _handle_not_found),
    "REPLAY_TRIMMED": ({"s2c_history_len": 3}, _replay_trimmed),
    "CLOSED_BY_ADMIN": ({}, _closed_by_admin),
    "SESSION_LOST": ({}, _session_lost),
    "REATTACHED_ELSEWHERE": ({}, _reattached_elsewhere),
    "SESSION_STILL_ATTACHED": ({}, _session_still_attached),
    "SLOW_READER": ({"session_queue_len": 4}, _slow_reader),
    "PAYLOAD_TOO_LARGE": ({}, lambda c: stream(c["stub"], setup(), _media(2 * 1024 * 1024))),
    "C2S_LOG_FULL": ({"c2s_log_max_bytes": 1024 * 1024, "budget_wait_s": 0.5},
                     lambda c: stream(c["stub"], setup(), _media(600 * 1024), _media(600 * 1024))),
    "TOO_MANY_PENDING_CONNECTS": ({"max_pending_connects_per_tenant": 1}, _pending_connects),
    "SETUP_TIMEOUT": ({"setup_timeout_s": 1.0}, lambda c: ended(c["stub"].Connect())),
    "ADMISSION_FULL": ({"admission_json": _CAP1}, _admission_full),
    "RATE_LIMITED": ({"admission_json": _RATE1}, _rate_limited),
    "NO_WORKER": ({"worker_capacity": 0, "setup_timeout_s": 1.0}, lambda c: stream(c["stub"], setup())),
    "UPSTREAM_UNAVAILABLE": ({"upstream_max_attempts": 2}, lambda c: (
        c["emulator"].faults.add({"target": "all", "when": "immediately", "action": "drop"}),
        stream(c["stub"], setup()))[1]),
    "UPSTREAM_QUOTA_EXCEEDED": ({}, lambda c: after_first_turn(c["stub"], c["emulator"], {"close": "quota"})),
    "UPSTREAM_AUTH": ({}, lambda c: after_first_turn(c["stub"], c["emulator"], {"close": "bad_api_key"})),
    "UPSTREAM_LOCATION": ({}, lambda c: after_first_turn(c["stub"], c["emulator"], {"close": "location_unsupported"})),
    "UPSTREAM_UNSUPPORTED": ({}, lambda c: after_first_turn(c["stub"], c["emulator"], {"close": "not_implemented"})),
    "UPSTREAM_INVALID_ARGUMENT": ({}, lambda c: after_first_turn(c["stub"], c["emulator"], {"close": "invalid_argument"})),
    "UPSTREAM_SESSION_LOST": ({}, lambda c: after_first_turn(c["stub"], c["emulator"], {"close": "session_not_found"})),
    "UPSTREAM_MODEL_NOT_FOUND": ({}, lambda c: after_first_turn(c["stub"], c["emulator"], {
        "code": 1008, "reason": "models/gemini-x is not found for API version v1beta, or is not supported for bidiGenerateContent."})),
    "UPSTREAM_CLOSED": ({}, lambda c: after_first_turn(c["stub"], c["emulator"], {"code": 4000, "reason": "custom"})),
    "resumed": ({}, _resumed),
}


def test_every_row_has_a_trigger_and_every_trigger_a_row() -> None:
    assert set(CONTRACT) == set(TRIGGERS)


@pytest.mark.parametrize(("reason", "settings_overrides"), [(r, TRIGGERS[r][0]) for r in CONTRACT], ids=list(CONTRACT))
async def test_contract_row(reason: str, settings_overrides: dict[str, Any], stack: dict[str, Any], client: Any) -> None:
    code_name, retryable = CONTRACT[reason]
    async with grpc.aio.insecure_channel(stack["front"].address) as channel, \
            grpc.aio.insecure_channel(stack["front"].address, options=SLOW_READER_CHANNEL) as slow_channel:
        ctx = {"stub": gateway_pb2_grpc.LiveGatewayStub(channel), "client": client, "redis": stack["redis"],
               "slow_stub": gateway_pb2_grpc.LiveGatewayStub(slow_channel),
               "emulator": stack["emulator"], "front": stack["front"],
               "raw": _RawStub(channel)}
        err = await TRIGGERS[reason][1](ctx)
    if reason == "resumed":
        assert err is None
        return
    assert err.code() == getattr(grpc.StatusCode, code_name), err.details()
    status = rpc_status.from_call(err)
    info = error_details_pb2.ErrorInfo()
    assert status is not None and status.details[0].Unpack(info), "no google.rpc.ErrorInfo"
    assert info.reason == reason and info.domain == "livegate.dev"
    assert info.metadata["retryable"] == ("true" if retryable == "yes" else "false")
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert bool(retry) == (retryable == "yes")
    assert err.details() and len(err.details()) > 20  # a message a person can act on


class _RawStub:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.Connect = channel.stream_stream("/livegate.v1.LiveGateway/Connect", request_serializer=lambda b: b,
                                             response_deserializer=lambda b: b)
