"""Client reattach with replay: a caller whose stream breaks comes back (on any front) and receives exactly
the server messages it missed, in order; the session waits for it within a grace period."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc
from tests.e2e.helpers import redis_keys

MODEL = "gemini-live-2.5-flash"


@pytest.fixture
def emulator_config(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from emulator.config import EmulatorConfig

    # audio replies paced in real time: a turn streams for a few seconds
    return EmulatorConfig(port=0, pacing=1.0, audio_chunk_ms=100,
                          cert_dir=str(tmp_path_factory.getbasetemp() / "emulator-cert"))


def setup_msg(grace_s: float | None = None) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.setup.model = MODEL
    m.setup.generation_config.response_modalities.append(3)  # AUDIO
    if grace_s is not None:
        m.options.reattach_grace.CopyFrom(duration_pb2.Duration(seconds=int(grace_s), nanos=int(grace_s % 1 * 1e9)))
    return m


def text_msg(text: str) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.client_content.turns.add(role="user").parts.add(text=text)
    m.client_content.turn_complete = True
    return m


@pytest.fixture
async def stub(stack: dict[str, Any]) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(stack["front"].address) as channel:
        yield gateway_pb2_grpc.LiveGatewayStub(channel)


async def read_until(call: Any, pred: Any, timeout_s: float = 20.0) -> list[gw.ServerMessage]:
    out = []
    async with asyncio.timeout(timeout_s):
        while True:
            m = await call.read()
            assert m is not grpc.aio.EOF, "stream ended"
            out.append(m)
            if pred(m):
                return out


async def test_reattach_replays_exactly_what_was_missed(stub: Any, stack: dict[str, Any]) -> None:
    call = stub.Connect()
    await call.write(setup_msg())
    info = (await call.read()).session
    await call.write(text_msg("Tell me a long story about the sea, the wind and the ships that sail."))
    got = await read_until(call, lambda m: len(m.server_content.model_turn.parts) > 0)
    got += await read_until(call, lambda m: m.seq >= got[-1].seq + 2)
    last_seen = got[-1].seq
    call.cancel()  # the network breaks mid-turn; the model keeps talking into the session's log
    await asyncio.sleep(1.0)  # the caller is away for a second (the turn goes on meanwhile)

    again = stub.Connect()
    await again.write(gw.ClientMessage(reattach=gw.Reattach(
        session_id=info.session_id, reattach_token=info.reattach_token, last_seq=last_seen)))
    first = await again.read()
    assert first.session.session_id == info.session_id
    rest = await read_until(again, lambda m: m.server_content.turn_complete)
    seqs = [m.seq for m in got] + [m.seq for m in rest]
    assert seqs == list(range(1, seqs[-1] + 1)), "missed messages must arrive exactly once, in order"
    # the session is fully alive: another turn works on the reattached stream
    await again.write(text_msg("What was the last question I asked?"))
    await read_until(again, lambda m: m.server_content.turn_complete)
    view = await stub.GetSession(gw.GetSessionRequest(session_id=info.session_id))
    assert view.counters.reattaches == 1 and view.state == gw.Session.ACTIVE
    await again.done_writing()


async def test_reattach_says_how_many_client_messages_were_accepted(stub: Any) -> None:
    """A caller whose stream broke cannot tell which of its last writes reached the gateway: the reattach's
    SessionInfo.client_index says, so it sends again exactly the ones after it."""
    call = stub.Connect()
    await call.write(setup_msg())
    info = (await call.read()).session
    assert info.client_index == 0
    for i in range(3):
        await call.write(text_msg(f"Question {i}?"))
        await read_until(call, lambda m: m.server_content.turn_complete)
    call.cancel()

    again = stub.Connect()
    await again.write(gw.ClientMessage(reattach=gw.Reattach(
        session_id=info.session_id, reattach_token=info.reattach_token, last_seq=0)))
    first = await again.read()
    assert first.session.session_id == info.session_id and first.session.client_index == 3
    await again.done_writing()


async def test_reattach_refused_without_the_right_token(stub: Any) -> None:
    call = stub.Connect()
    await call.write(setup_msg())
    info = (await call.read()).session
    for sid, token in ((info.session_id, "not-the-token"), ("s-does-not-exist", info.reattach_token),
                       (info.session_id, "")):
        bad = stub.Connect()
        await bad.write(gw.ClientMessage(reattach=gw.Reattach(session_id=sid, reattach_token=token)))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await bad.read()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    await call.done_writing()


async def test_session_ends_when_grace_expires(stub: Any, stack: dict[str, Any]) -> None:
    call = stub.Connect()
    await call.write(setup_msg(grace_s=0.5))
    info = (await call.read()).session
    await read_until(call, lambda m: m.HasField("setup_complete"))
    call.cancel()
    redis = stack["redis"]
    async with asyncio.timeout(10):
        while any(k.startswith(f"lg:{{{info.session_id}}}") for k in await redis_keys(redis)):
            await asyncio.sleep(0.05)
    await assert_reattach_refused(stub, info, grpc.StatusCode.NOT_FOUND)


async def assert_reattach_refused(stub: Any, info: gw.SessionInfo, code: grpc.StatusCode) -> None:
    late = stub.Connect()
    await late.write(gw.ClientMessage(reattach=gw.Reattach(session_id=info.session_id,
                                                           reattach_token=info.reattach_token)))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await late.read()
    assert err.value.code() == code


@pytest.mark.parametrize("settings_overrides", [{"s2c_history_len": 3}])
async def test_trimmed_history_is_a_clear_error(stub: Any, settings_overrides: dict[str, Any]) -> None:
    call = stub.Connect()
    await call.write(setup_msg())
    info = (await call.read()).session
    await call.write(text_msg("Tell me a long story about the sea, the wind and the ships that sail."))
    await read_until(call, lambda m: m.server_content.turn_complete, timeout_s=30)
    call.cancel()
    again = stub.Connect()
    await again.write(gw.ClientMessage(reattach=gw.Reattach(
        session_id=info.session_id, reattach_token=info.reattach_token, last_seq=0)))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await again.read()
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "no longer kept" in (err.value.details() or "")


async def test_a_stale_detach_does_not_undo_a_reattach_elsewhere(stub: Any, stack: dict[str, Any], redis: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The front that lost the caller sends the worker a detach; the caller reattaches through another front
    before the worker reads it (that front's attach queued behind it; the worker paused, say). The late
    detach must not mark the session detached again in Redis: found by the soak, where the session then
    ended at the old grace's deadline under a caller that was there."""
    from livegate.redis import keys, records

    call = stub.Connect()
    await call.write(setup_msg())
    info = (await call.read()).session
    sid = info.session_id
    await read_until(call, lambda m: m.WhichOneof("message") == "setup_complete")
    [relay] = [w.sessions[sid] for w in stack["workers"] if sid in w.sessions]
    session = stack["front"].sessions[sid]
    assert await redis.eval(records.REATTACH, 1, keys.session_meta(sid), "front-elsewhere", records.now_ms())
    with caplog.at_level("INFO", logger="workers.presence"):
        await stack["front"].batcher.submit([session._inbox_cmd("k", "detach", "m", stack["front"].id, "i", 500)])
        async with asyncio.timeout(10):
            while "stale detach" not in caplog.text and not relay.detached:
                await asyncio.sleep(0.01)
    assert not relay.detached
    assert (await redis.hget(keys.session_meta(sid), "state")) == b"active"
    call.cancel()


async def test_a_turn_sent_before_a_gemini_handle_arrives_survives_an_upstream_drop(stub: Any,
                                                                                   stack: dict[str, Any]) -> None:
    """The Gemini API's resumption updates do not say which client messages their handle covers. The worker
    took every message it had sent as covered, so a turn sent just before the update (queued behind the answer
    in progress) was never sent again after a drop, and was lost: found by the soak. Now only what the model
    has answered counts as covered, and the renewal sends that turn again."""
    emulator = stack["emulator"]
    call = stub.Connect()
    setup = setup_msg()
    setup.setup.session_resumption.SetInParent()
    await call.write(setup)
    await call.read()  # session
    await call.write(text_msg("Is this the first question?"))
    await call.write(text_msg("Tell me a long story about the sea, the wind and the ships that sail."))
    await read_until(call, lambda m: m.server_content.turn_complete)  # the first answer
    await read_until(call, lambda m: m.session_resumption_update.new_handle != "")  # its handle: 1 turn answered
    [conv] = [c for c in emulator.conversations if c["open"]]
    emulator.faults.add({"target": conv["id"], "when": "immediately", "action": "drop"})  # mid second answer
    await read_until(call, lambda m: m.server_content.turn_complete, timeout_s=30)  # answered after the renewal
    [conv] = [c for c in emulator.conversations if c["id"] == conv["id"]]
    said = [e["text"] for e in conv["history"] if e["role"] == "user"]
    assert said == ["Is this the first question?", "Tell me a long story about the sea, the wind and the ships that sail."]
    assert conv["connections"] >= 2
    await call.done_writing()
