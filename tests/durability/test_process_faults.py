"""Worker crash takeover with real processes: SIGKILL the worker that owns a session in the middle of a
model turn while audio streams in; another worker continues it with its history."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from emulator.transcribe import encode_text_tones
from livegate.client import Client
from livegate.v1 import gateway_pb2 as gw
from tests.durability.procs import ProcStack, emulator_server

MODEL = "gemini-live-2.5-flash"
FRAME = 640  # 20 ms at 16 kHz


@pytest.fixture
async def emulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    async with emulator_server(tmp_path_factory, pacing=1.0) as emu:
        yield emu


@pytest.fixture
async def procs(redis: Any, redis_url: str, emulator: Any) -> AsyncIterator[ProcStack]:
    stack = ProcStack(redis_url, emulator)
    try:
        yield stack
    finally:
        await stack.aclose()


async def stream_audio(session: Any, pcm: bytes, stop: asyncio.Event | None = None) -> int:
    """Send ``pcm`` in 20 ms frames at real-time pace (then silence until ``stop``); return frames sent."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sent = 0
    silence = b"\x00" * FRAME
    i = 0
    while True:
        chunk = pcm[i:i + FRAME] if i < len(pcm) else silence
        if i >= len(pcm) and (stop is None or stop.is_set()):
            return sent
        await session.send_realtime_input(audio={"data": chunk, "mime_type": "audio/pcm;rate=16000"})
        sent += 1
        i += FRAME
        await asyncio.sleep(max(0.0, t0 + sent * 0.02 - loop.time()))


async def test_sigkill_owner_mid_turn(procs: ProcStack, redis_url: str, emulator: Any) -> None:
    workers = [await procs.worker(), await procs.worker()]
    front = await procs.front()
    config = {"response_modalities": ["AUDIO"], "input_audio_transcription": {}, "output_audio_transcription": {}}
    async with Client(front.address) as client, client.aio.live.connect(
            model=MODEL, config=config, options=gw.SessionOptions(upstream_events=True)) as s:
        stub = client.stub()
        # a first turn, so the upstream has given a resumption handle before the crash
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "Hello, is this thing on?"}]})
        async with asyncio.timeout(30):
            async for m in s.receive_raw():
                if m.server_content.turn_complete:
                    break
        stop = asyncio.Event()
        streamer = asyncio.create_task(stream_audio(s, encode_text_tones("what is two plus two") + b"\x00" * 32000, stop))
        killed_at = None
        owner = None
        audio_after_kill = 0
        renewed: list[gw.UpstreamRenewed] = []
        async with asyncio.timeout(60):
            async for m in s.receive_raw():
                if m.HasField("upstream_renewed"):
                    renewed.append(m.upstream_renewed)
                if m.server_content.model_turn.parts and killed_at is None:
                    # the model is talking (paced in real time): kill the worker that relays this session
                    info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
                    owner = next(w for w in workers if w.id == info.worker_id)
                    owner.kill(signal.SIGKILL)
                    killed_at = time.monotonic()
                elif killed_at is not None and m.server_content.model_turn.parts:
                    audio_after_kill += 1
                    if audio_after_kill == 1:
                        gap = time.monotonic() - killed_at
                if m.server_content.turn_complete:
                    break
        stop.set()
        await streamer
        assert owner is not None and await owner.wait(5) == -signal.SIGKILL
        assert audio_after_kill > 0, "the turn did not continue after the takeover"
        print(f"caller-visible gap after SIGKILL: {gap:.2f} s")
        assert [r.reason for r in renewed] == ["takeover"]
        # the conversation goes on, on the other worker, with its history
        info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
        assert info.worker_id != owner.id and info.worker_id in {w.id for w in workers}
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "What was the last question I asked?"}]})
        said = []
        async with asyncio.timeout(30):
            async for m in s.receive_raw():
                if m.server_content.output_transcription.text:
                    said.append(m.server_content.output_transcription.text)
                if m.server_content.turn_complete:
                    break
        assert "".join(said) == 'You asked: "what is two plus two"'
    [conv] = emulator.conversations
    assert conv["connections"] == 2  # resumed from the stored handle on the new worker
    # three turns in the history (user + model each): the spoken one once, nothing lost, nothing doubled
    assert conv["history_turns"] == 6


async def test_sigkill_front_client_reattaches_elsewhere(procs: ProcStack, emulator: Any) -> None:
    await procs.worker()
    fronts = [await procs.front(), await procs.front()]
    # one channel over both fronts (pick_first): what a Kubernetes Service gives a caller
    target = "ipv4:" + ",".join(f.address for f in fronts)
    config = {"response_modalities": ["AUDIO"], "output_audio_transcription": {}}
    async with Client(target) as client, client.aio.live.connect(model=MODEL, config=config) as s:
        stub = client.stub()
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "say: one two three four five six seven eight nine ten"}]})
        seqs = []
        killed = None
        async with asyncio.timeout(60):
            async for m in s.receive_raw():
                seqs.append(m.seq)
                if killed is None and len(seqs) == 5:
                    info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
                    killed = next(f for f in fronts if f.id == info.front_id)
                    killed.kill(signal.SIGKILL)
                if m.server_content.turn_complete:
                    break
        assert killed is not None and await killed.wait(5) == -signal.SIGKILL
        assert s.reattaches == 1
        # exactly the messages missed while the stream was broken, in order: no gap, no duplicate
        assert seqs == list(range(seqs[0], seqs[-1] + 1)) and seqs[0] == 2  # connect() consumed setup_complete
        info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
        assert info.front_id != killed.id and info.counters.reattaches == 1
        # and the conversation goes on through the surviving front
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "what did I just say?"}]})
        async with asyncio.timeout(30):
            async for m in s.receive_raw():
                if m.server_content.turn_complete:
                    break


async def test_sigterm_worker_hands_over_20_live_sessions(procs: ProcStack, emulator: Any) -> None:
    draining = await procs.worker(capacity=30)
    front = await procs.front()
    async with Client(front.address) as client, contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(client.aio.live.connect(
            model=MODEL, config={"response_modalities": ["TEXT"]}, options=gw.SessionOptions(upstream_events=True)))
            for _ in range(20)]
        for i, s in enumerate(sessions):
            await s.send_client_content(turns={"role": "user", "parts": [{"text": f"Is {i} a number?"}]})
            async with asyncio.timeout(20):
                async for m in s.receive_raw():
                    if m.server_content.turn_complete:
                        break
        stub = client.stub()
        owners = {(await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))).worker_id for s in sessions}
        assert owners == {draining.id}
        successor = await procs.worker(capacity=30)
        draining.kill(signal.SIGTERM)
        assert await draining.wait(30) == 0  # drained and exited cleanly within the drain timeout
        # every session goes on, on the successor, with its history, and none saw an error
        for i, s in enumerate(sessions):
            await s.send_client_content(turns={"role": "user", "parts": [{"text": "What was the last question I asked?"}]})
            text, events = [], []
            async with asyncio.timeout(20):
                async for m in s.receive_raw():
                    text += [p.text for p in m.server_content.model_turn.parts]
                    if m.HasField("upstream_renewed"):
                        events.append(m.upstream_renewed.reason)
                    if m.server_content.turn_complete:
                        break
            assert "".join(text) == f'You asked: "Is {i} a number?"'
            assert events == ["migrate"]
            info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
            assert info.worker_id == successor.id


async def test_sigterm_front_callers_move_to_another_front(procs: ProcStack, emulator: Any) -> None:
    await procs.worker()
    fronts = [await procs.front(), await procs.front()]
    target = "ipv4:" + ",".join(f.address for f in fronts)
    async with Client(target) as client, client.aio.live.connect(
            model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        stub = client.stub()
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "Is this the first front?"}]})
        async with asyncio.timeout(20):
            async for m in s.receive_raw():
                if m.server_content.turn_complete:
                    break
        info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
        leaving = next(f for f in fronts if f.id == info.front_id)
        leaving.kill(signal.SIGTERM)
        assert await leaving.wait(20) == 0
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "What was the last question I asked?"}]})
        text = []
        async with asyncio.timeout(20):
            async for m in s.receive_raw():
                text += [p.text for p in m.server_content.model_turn.parts]
                if m.server_content.turn_complete:
                    break
        assert "".join(text) == 'You asked: "Is this the first front?"'
        assert s.reattaches >= 1
        info = await stub.GetSession(gw.GetSessionRequest(session_id=s.session_id))
        assert info.front_id != leaving.id


async def test_a_cancelled_stream_is_kept_for_a_reattach_not_closed(procs: ProcStack) -> None:
    """gRPC ends a caller's cancellation with an empty read, like a half-close, and the cancellation's own
    notice can land a moment later: the front must keep the session for a reattach (a half-close closes it).
    Repeated on real processes, because which of the two the front sees first is up to gRPC."""
    await procs.worker()
    front = await procs.front()
    async with Client(front.address) as client:
        async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
            # a worker owns the session before its stream first breaks: a caller lost before any worker took
            # its session has it closed, not kept (connect returns on the `session` message, before the claim)
            await s.send_client_content(turns={"role": "user", "parts": [{"text": "Hello?"}]})
            async with asyncio.timeout(20):
                async for m in s.receive_raw():
                    if m.server_content.turn_complete:
                        break
            for i in range(15):
                s._call.cancel()  # the stream breaks; the caller still has its session id and token
                await s.reattach()
                await s.send_client_content(turns={"role": "user", "parts": [{"text": f"Still there {i}?"}]})
                async with asyncio.timeout(20):
                    async for m in s.receive_raw():
                        if m.server_content.turn_complete:
                            break


RESEND_TURNS = 60


async def test_turns_written_as_the_front_dies_arrive_once_each(procs: ProcStack, emulator: Any) -> None:
    """A caller whose front dies cannot tell which of its last writes the front accepted: the reattach says
    (SessionInfo.client_index) and the Python client sends again exactly the ones after it."""
    await procs.worker()
    fronts = [await procs.front(), await procs.front()]
    target = "ipv4:" + ",".join(f.address for f in fronts)
    async with Client(target) as client, client.aio.live.connect(
            model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        info = await client.stub().GetSession(gw.GetSessionRequest(session_id=s.session_id))
        victim = next(f for f in fronts if f.id == info.front_id)
        for i in range(RESEND_TURNS):
            await s.send_client_content(turns={"role": "user", "parts": [{"text": f"turn {i}"}]})
            if i == RESEND_TURNS // 3:
                victim.kill(signal.SIGKILL)  # the writes just before and after are in flight
        answered = 0
        with contextlib.suppress(TimeoutError):  # a lost turn is never answered: counted below
            async with asyncio.timeout(30):
                async for m in s.receive_raw():
                    if m.server_content.turn_complete:
                        answered += 1
                        if answered == RESEND_TURNS:
                            break
        assert s.reattaches >= 1
        assert answered == RESEND_TURNS, f"{RESEND_TURNS - answered} turns lost with the dead front"
    [conv] = [c for c in emulator.conversations if c["history_turns"]]
    said = [e["text"] for e in conv["history"] if e["role"] == "user"]
    assert said == [f"turn {i}" for i in range(RESEND_TURNS)], "each turn once, in order"


async def test_resume_by_handle_right_after_the_front_crashed(procs: ProcStack, emulator: Any) -> None:
    """The caller's front is SIGKILLed and the caller resumes its conversation with its handle through another
    front at once: the earlier session is still attached through the dead front until the fleet declares it
    dead, and the resume waits for that (a few heartbeats) instead of refusing SESSION_STILL_ATTACHED."""
    import grpc

    from livegate.v1 import gateway_pb2_grpc

    await procs.worker()
    doomed, other = await procs.front(), await procs.front()
    async with Client(doomed.address, auto_reattach=False) as client, client.aio.live.connect(
            model=MODEL, config={"response_modalities": ["TEXT"], "session_resumption": {}}) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "Is the door blue?"}]})
        handle = ""
        async with asyncio.timeout(30):
            async for m in s.receive_raw():
                if m.session_resumption_update.new_handle:
                    handle = m.session_resumption_update.new_handle
                    break
        doomed.kill(signal.SIGKILL)
        await doomed.wait(5)
        async with grpc.aio.insecure_channel(other.address) as channel:
            call = gateway_pb2_grpc.LiveGatewayStub(channel).Connect()
            first = gw.ClientMessage()
            first.setup.model = MODEL
            first.setup.generation_config.response_modalities.append(1)
            first.setup.session_resumption.handle = handle
            await call.write(first)
            async with asyncio.timeout(30):
                assert (await call.read()).WhichOneof("message") == "session"
                assert (await call.read()).WhichOneof("message") == "setup_complete"
                msg = gw.ClientMessage()
                msg.client_content.turns.add(role="user").parts.add(text="What was the last question I asked?")
                msg.client_content.turn_complete = True
                await call.write(msg)
                said = ""
                while not (m := await call.read()).server_content.turn_complete:
                    said += "".join(p.text for p in m.server_content.model_turn.parts)
            assert said == 'You asked: "Is the door blue?"', said  # the conversation went on
            call.cancel()
