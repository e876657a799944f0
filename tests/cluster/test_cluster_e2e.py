"""The end-to-end subset through gRPC with Redis Cluster (3 masters) underneath: caller -> front -> Redis
Cluster -> worker -> emulator (TLS) and back."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
import pytest
from google.genai import types
from redis.asyncio.cluster import RedisCluster

from emulator.transcribe import encode_text_tones
from livegate.redis import keys
from tests.cluster.localcluster import RedisClusterProcess
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc
from tests.cluster.conftest import keys_by_master, master_of, node_client, wait_for
from tests.e2e.helpers import audio_of, collect_turn, send_audio, text_of, transcript

MODEL = "gemini-live-2.5-flash"
SILENCE_1S = b"\x00\x00" * 16000


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


@pytest.fixture
async def stub(stack: dict[str, Any]) -> Any:
    async with grpc.aio.insecure_channel(stack["front"].address) as channel:
        yield gateway_pb2_grpc.LiveGatewayStub(channel)


async def session_keys_left(redis_cluster: RedisClusterProcess) -> dict[int, list[str]]:
    """Per-session and per-tenant keys still in Redis, master by master."""
    found = await keys_by_master(redis_cluster.ports)
    return {p: [k for k in ks if k.startswith("lg:{s-") or k.startswith("lg:{t:") or k.startswith("lg:{h:")]
            for p, ks in found.items() if any(k.startswith(("lg:{s-", "lg:{t:")) for k in ks)}


async def assert_no_session_keys(redis_cluster: RedisClusterProcess) -> None:
    async def clean() -> bool:
        left = await session_keys_left(redis_cluster)
        return not any(k.startswith(("lg:{s-", "lg:{t:")) for ks in left.values() for k in ks)

    try:
        await wait_for(clean, timeout_s=10.0)
    except AssertionError:
        raise AssertionError(f"session keys left on the masters: {await session_keys_left(redis_cluster)}") from None


async def test_stack_really_runs_on_the_cluster(stack: dict[str, Any], redis: Any) -> None:
    assert stack["redis_url"].startswith("redis+cluster://")
    for part in (stack["front"], *stack["workers"]):
        assert isinstance(part.redis, RedisCluster)
    assert len(redis.get_primaries()) == 3


async def test_text_turn(client: Any) -> None:
    async with client.aio.live.connect(model=MODEL, config=types.LiveConnectConfig(
            response_modalities=[types.Modality.TEXT])) as session:
        await session.send_client_content(turns=user("Hello? Gemini, are you there?"))
        msgs = await collect_turn(session)
        await session.send_client_content(turns=user("And a second turn?"))
        second = await collect_turn(session)
    assert text_of(msgs) == 'You said: "Hello? Gemini, are you there?"'
    assert msgs[-1].server_content.turn_complete
    assert text_of(second) == 'You said: "And a second turn?"'


async def test_audio_turn(client: Any) -> None:
    config = {"response_modalities": ["AUDIO"], "input_audio_transcription": {}, "output_audio_transcription": {}}
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await send_audio(session, SILENCE_1S[:6400] + encode_text_tones("what is two plus two") + SILENCE_1S)
        msgs = await collect_turn(session)
    assert transcript(msgs, "input_transcription").strip().lower() == "what is two plus two"
    assert "what is two plus two" in transcript(msgs, "output_transcription").lower()
    pcm = audio_of(msgs)
    assert len(pcm) > 24000 and len(pcm) % 2 == 0


async def test_function_call_round_trip(client: Any) -> None:
    tools = [{"function_declarations": [
        {"name": "get_current_weather", "description": "Get the current weather in the given location",
         "parameters": {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}}}]}]
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"], "tools": tools}) as session:
        await session.send_client_content(turns=user("Get the current weather in Santa Clara"))
        calls, texts = [], []
        async with asyncio.timeout(20):
            async for m in session.receive():
                if m.tool_call:
                    calls.extend(m.tool_call.function_calls)
                    await session.send_tool_response(function_responses=[types.FunctionResponse(
                        id=fc.id, name=fc.name, response={"result": {"weather": "sunny", "unit": "C"}})
                        for fc in m.tool_call.function_calls])
                if m.text:
                    texts.append(m.text)
    assert [c.name for c in calls] == ["get_current_weather"]
    assert "santa clara" in str(calls[0].args).lower()
    assert "sunny" in "".join(texts)


async def test_resumption_handle_continues_the_conversation(client: Any, redis: Any) -> None:
    config = {"response_modalities": ["TEXT"], "session_resumption": {}}
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=user("Hello? Gemini are you there?"))
        await collect_turn(session)
        handle = None
        async with asyncio.timeout(10):
            async for m in session.receive_raw():
                if m.HasField("session_resumption_update") and m.session_resumption_update.resumable:
                    handle = m.session_resumption_update.new_handle
                    break
        first_sid = session.session_id
    assert handle and handle.startswith("lgh_")
    # the handle's key and the first session's keys hash to different slots
    assert redis.keyslot(keys.handle(handle)) != redis.keyslot(keys.session_meta(first_sid))
    async with client.aio.live.connect(model=MODEL, config={**config, "session_resumption": {"handle": handle}}) as session:
        await session.send_client_content(turns=user("What was the last question I asked?"))
        assert text_of(await collect_turn(session)) == 'You asked: "Hello? Gemini are you there?"'


async def test_admin_get_and_list(client: Any, stub: Any, stack: dict[str, Any]) -> None:
    async with contextlib.AsyncExitStack() as es:
        sessions = []
        for i in range(3):
            s = await es.enter_async_context(client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}))
            await s.send_client_content(turns=user(f"count me {i}"))
            await collect_turn(s)
            sessions.append(s)
        for s in sessions:
            info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
            assert info.state == gw.Session.ACTIVE and info.model == MODEL and info.tenant == "default"
            assert info.worker_id in {w.id for w in stack["workers"]} and info.front_id == stack["front"].id
            assert info.counters.client_messages == 1 and info.counters.server_messages >= 3
            assert info.counters.upstream_connects == 1
        listed = await stub.ListSessions(gw.ListSessionsRequest())
        assert sorted(x.session_id for x in listed.sessions) == sorted(s.session_id for s in sessions)
        page = await stub.ListSessions(gw.ListSessionsRequest(page_size=2))
        assert len(page.sessions) == 2 and page.next_page_token


async def test_nothing_left_in_redis_after_sessions_end(client: Any, stack: dict[str, Any], redis: Any,
                                                        redis_cluster: RedisClusterProcess) -> None:
    sids = []
    for i in range(4):
        async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"], "session_resumption": {}}) as s:
            await s.send_client_content(turns=user(f"turn {i}"))
            await collect_turn(s)
            sids.append(s.session_id)
    await assert_no_session_keys(redis_cluster)
    found = await keys_by_master(redis_cluster.ports)
    for port, ks in found.items():
        for k in ks:
            async with node_client(port) as node:
                ttl = await node.ttl(k)
            owned = any(tag in k for tag in ("{w:", "{f:", "{alloc}", "{fleet}"))  # deleted by their process at shutdown
            assert owned or ttl > 0, f"{k} on master {port} has neither an owner nor a TTL"
    for w in stack["workers"]:
        assert not w.sessions


async def test_sessions_on_different_masters_side_by_side(client: Any, redis: Any, stub: Any) -> None:
    """Open sessions until their keys live on every master (at least two), then talk in all of them at once."""
    async with contextlib.AsyncExitStack() as es:
        by_master: dict[int, Any] = {}
        opened = 0
        while len(by_master) < 3 and opened < 12:
            s = await es.enter_async_context(client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}))
            opened += 1
            sid_keys = keys.session_keys(s.session_id)
            slots = {redis.keyslot(k) for k in sid_keys}
            assert len(slots) == 1  # the hash tag keeps one session's keys together
            by_master.setdefault(await master_of(redis, sid_keys[0]), s)
        assert len(by_master) >= 2, "12 random session ids all hashed to one master"

        async def talk(port: int, s: Any) -> str:
            await s.send_client_content(turns=user(f"hello from master {port}"))
            return text_of(await collect_turn(s))

        answers = await asyncio.gather(*(talk(p, s) for p, s in by_master.items()))
        assert answers == [f'You said: "hello from master {p}"' for p in by_master]
        for port, s in by_master.items():  # each session's record really is on that master
            async with node_client(port) as node:
                assert await node.exists(*keys.session_keys(s.session_id)) == 3
            info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
            assert info.state == gw.Session.ACTIVE


@pytest.mark.parametrize("kill", [("TYPE", "normal"), ("SKIPME", "yes")], ids=["type-normal", "skipme"])
async def test_client_kill_on_the_sessions_master_is_a_blip(client: Any, redis: Any, stack: dict[str, Any],
                                                            kill: tuple[str, str]) -> None:
    """Mid-conversation, every client connection to the master that owns the session's keys is killed; the
    next turns work and the caller sees no error."""
    config = {"response_modalities": ["TEXT"], "input_audio_transcription": {}}
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=user("before the kill"))
        assert text_of(await collect_turn(session)) == 'You said: "before the kill"'
        port = await master_of(redis, keys.session_meta(session.session_id))
        async with node_client(port) as node:
            killed = await node.execute_command("CLIENT", "KILL", *kill)
        assert killed >= 1  # the front's and the workers' connections to that master
        await session.send_client_content(turns=user("after the kill"))
        assert text_of(await collect_turn(session)) == 'You said: "after the kill"'
        # and again in the middle of an audio turn: no frame may be lost (the transcript would show it)
        pcm = encode_text_tones("say: no frame lost") + SILENCE_1S
        half = (len(pcm) // 2) & ~1
        await send_audio(session, pcm[:half])
        async with node_client(port) as node:
            assert await node.execute_command("CLIENT", "KILL", *kill) >= 1
        await send_audio(session, pcm[half:])
        msgs = await collect_turn(session)
        assert transcript(msgs, "input_transcription").strip().lower() == "say: no frame lost"
        assert text_of(msgs) == "no frame lost"


async def test_client_kill_on_every_master_is_a_blip(client: Any, redis_cluster: RedisClusterProcess) -> None:
    """The blocked XREADs of the front (outbox) and the workers (inbox, allocation) are killed too."""
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as session:
        await session.send_client_content(turns=user("one"))
        await collect_turn(session)
        for port in redis_cluster.ports:
            async with node_client(port) as node:
                await node.execute_command("CLIENT", "KILL", "TYPE", "normal")
        await session.send_client_content(turns=user("two"))
        assert text_of(await collect_turn(session)) == 'You said: "two"'
    # a new session after the kill is allocated and served (the allocation reader survived)
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as session:
        await session.send_client_content(turns=user("three"))
        assert text_of(await collect_turn(session)) == 'You said: "three"'
