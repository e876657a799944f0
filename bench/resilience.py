"""Scenario 3, resilience timings, each on its own stack (real ``livegate`` processes):

* go_away: the emulator's connections live a few seconds (pacing 0); conversations go on with audio in and
  TEXT turns back to back (no speech synthesis, so the first response is a few ms and a hold shows), so the renewal the worker makes at the end of a turn holds up the next turn (the worst
  case for the caller); per turn, time from the turn's send to its first audio, for turns held up by a
  renewal vs the others, plus the gap the gateway itself reports (``UpstreamRenewed.gap``). Target: gap <=
  direct connect + setup + 20 ms.
* SIGKILL: the worker that owns a session is killed while the model speaks (real-time pacing); time from
  the kill to the next audio chunk on the caller's stream (heartbeat TTL 1 s, as tests/durability use).
* reattach: the caller's stream is cancelled mid-turn; 0.5 s later it reattaches on another front with its
  last seq; time to the `session` answer, to the first replayed message and to the last missed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

import grpc

from bench.common import Stack, pct, settle, summary_ms
from bench.load import new_key
from bench.script import Direct, Gateway, converse, turn_text
from livegate.redis import keys
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc


async def go_away(*, duration_s: float, sessions: int, lifetime_s: float, lead_s: float) -> dict[str, Any]:
    st = Stack()
    try:
        st.start_redis()
        emu = await st.start_emulator(pacing=0.0, audio_chunk_ms=20, lifetime_s=lifetime_s, go_away_lead_s=lead_s)
        await st.worker(go_away_margin_s=0.3)
        front = await st.front()
        ctx = emu.ssl_context()
        direct = []
        for _ in range(5):  # what a renewal must at least cost: a new TLS WebSocket + setup
            d = Direct(emu.gemini_ws, ctx)
            t0 = time.time()
            await d.open()
            direct.append(time.time() - t0)
            await d.close()
        async with grpc.aio.insecure_channel(front.address) as ch:
            stub = gateway_pb2_grpc.LiveGatewayStub(ch)
            results = await asyncio.gather(*(
                converse(Gateway(stub, upstream_events=True, modality="TEXT"), new_key(), duration_s=duration_s,
                         turn_pause_s=0.0)
                for _ in range(sessions)))
        await emu.dump()
    finally:
        await st.aclose()
    normal, held, gaps = [], [], []
    for r in results:
        gaps += [x["gap_s"] for x in r.renewals]
        for t in r.turns[1:]:  # turn 1 waits for a tool call round trip
            if t["first_audio"] is None:
                continue
            (held if t["renewed"] else normal).append(t["first_audio"] - t["sent"])
    base = pct(normal, 50) or 0.0
    excess = [h - base for h in held]
    connect_setup = pct(direct, 50) or 0.0
    return {"sessions": sessions, "duration_s": duration_s, "connection_lifetime_s": lifetime_s,
            "renewals": len(gaps), "errors": [r.error for r in results if r.error],
            "direct_connect_setup_ms": summary_ms(direct),
            "gateway_reported_gap_ms": summary_ms(gaps),
            "first_response_normal_turns_ms": summary_ms(normal),
            "first_response_turns_held_by_renewal_ms": summary_ms(held),
            "caller_visible_gap_ms": summary_ms(excess),
            "target_ms": round((connect_setup + 0.020) * 1e3, 3)}


async def _owner(stub: Any, sid: str) -> str:
    info = await stub.GetSession(gw.GetSessionRequest(session_id=sid))
    return str(info.worker_id)


async def sigkill(*, trials: int) -> dict[str, Any]:
    st = Stack()
    from livegate.settings import Settings

    d = Settings()  # the shipped defaults: the number measured is the one users get
    hb = {"heartbeat_interval_s": d.heartbeat_interval_s, "heartbeat_ttl_s": d.heartbeat_ttl_s}
    gaps: list[float] = []
    errors: list[str] = []
    try:
        st.start_redis()
        await st.start_emulator(pacing=1.0, audio_chunk_ms=20)
        workers = list(await asyncio.gather(st.worker(**hb), st.worker(**hb)))
        front = await st.front(**hb)
        async with grpc.aio.insecure_channel(front.address) as ch:
            stub = gateway_pb2_grpc.LiveGatewayStub(ch)
            for i in range(trials):
                try:
                    gaps.append(await _one_kill(stub, workers))
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{type(exc).__name__}: {exc}")
                workers = [w for w in workers if w.popen.poll() is None]
                if i == trials - 1:
                    break
                while len(workers) < 2:
                    workers.append(await st.worker(**hb))
                await asyncio.sleep(d.heartbeat_ttl_s + 0.5)  # the replacement's heartbeat is seen, the dead one reaped
    finally:
        await st.aclose()
    return {"trials": trials, **hb,
            "kill_to_next_audio_ms": summary_ms(gaps), "errors": errors}


async def _one_kill(stub: Any, workers: list[Any]) -> float:
    t = Gateway(stub, upstream_events=True, grace_s=30)
    await t.open()
    key = new_key()
    lock = asyncio.Lock()
    stop = asyncio.Event()

    async def audio() -> None:
        while not stop.is_set():
            async with lock:
                await t.send_audio()
            await asyncio.sleep(0.02)

    writer = asyncio.create_task(audio())
    try:
        async with asyncio.timeout(60):
            async with lock:
                await t.send_turn(f"say: {key} hello there")
            events = t.events()
            async for kind, _, _ in events:
                if kind == "turn_complete":
                    break
            async with lock:
                await t.send_turn(turn_text(key, 2))
            killed_at = None
            renewed = False
            async for kind, at, _ in events:
                if kind == "renewed" and killed_at is not None:
                    renewed = True  # the takeover: audio from now on comes from the new worker
                if kind != "audio":
                    continue
                if killed_at is None:
                    owner = await _owner(stub, t.session_id)
                    victim = next(w for w in workers if w.ident == owner)
                    victim.kill(signal.SIGKILL)
                    killed_at = time.time()
                elif renewed:
                    return at - killed_at
            raise RuntimeError("the turn did not continue after the kill")
    finally:
        stop.set()
        writer.cancel()
        with contextlib.suppress(BaseException):
            await writer
        await t.close()


async def reattach(*, trials: int, away_s: float = 0.5) -> dict[str, Any]:
    import redis.asyncio as aioredis

    st = Stack()
    rows: list[dict[str, float]] = []
    errors: list[str] = []
    try:
        url = st.start_redis()
        await st.start_emulator(pacing=1.0, audio_chunk_ms=20)
        await st.worker()
        f1, f2 = await asyncio.gather(st.front(), st.front())
        r = aioredis.from_url(url)
        async with grpc.aio.insecure_channel(f1.address) as c1, grpc.aio.insecure_channel(f2.address) as c2:
            s1, s2 = gateway_pb2_grpc.LiveGatewayStub(c1), gateway_pb2_grpc.LiveGatewayStub(c2)
            for _ in range(trials):
                try:
                    rows.append(await _one_reattach(s1, s2, r, away_s))
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{type(exc).__name__}: {exc}")
        await r.aclose()
    finally:
        await st.aclose()
    out: dict[str, Any] = {"trials": trials, "away_s": away_s, "errors": errors}
    for k in ("to_session_ms", "to_first_replayed_ms", "to_caught_up_ms"):
        out[k] = summary_ms([row[k] for row in rows])
    out["replayed_messages"] = [row["replayed"] for row in rows]
    return out


async def _one_reattach(s1: Any, s2: Any, r: Any, away_s: float) -> dict[str, float]:
    t = Gateway(s1, grace_s=30)
    await t.open()
    key = new_key()
    await t.send_turn(turn_text(key, 2))
    chunks = 0
    async with asyncio.timeout(30):
        async for kind, _, _ in t.events():
            chunks += kind == "audio"
            if chunks >= 10:
                break
    t.call.cancel()  # the caller's network breaks mid-turn
    await asyncio.sleep(away_s)
    newest = await r.xrevrange(keys.session_s2c(t.session_id), count=1)
    target = keys.stream_seq(newest[0][0]) if newest else t.last_seq
    call = s2.Connect()
    t0 = time.time()
    try:
        await call.write(gw.ClientMessage(reattach=gw.Reattach(session_id=t.session_id, reattach_token=t.token,
                                                                last_seq=t.last_seq)))
        row: dict[str, float] = {"replayed": float(target - t.last_seq)}
        async with asyncio.timeout(30):
            while True:
                m = await call.read()
                now = time.time()
                if m is grpc.aio.EOF:
                    raise RuntimeError("stream ended during the replay")
                if m.WhichOneof("message") == "session":
                    row["to_session_s"] = now - t0
                    continue
                row.setdefault("to_first_replayed_s", now - t0)
                if m.seq >= target:
                    row["to_caught_up_s"] = now - t0
                    break
        return {"replayed": row["replayed"], "to_session_ms": row["to_session_s"],
                "to_first_replayed_ms": row["to_first_replayed_s"], "to_caught_up_ms": row["to_caught_up_s"]}
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(call.done_writing(), 1)
        call.cancel()


async def run(*, quick: bool) -> dict[str, Any]:
    parts = {"go_away": go_away(duration_s=2.5 if quick else 20, sessions=1,
                                lifetime_s=1.5 if quick else 2.5, lead_s=1.0 if quick else 1.5),
             "sigkill": sigkill(trials=1 if quick else 12),
             "reattach": reattach(trials=1 if quick else 6)}

    async def guarded(coro: Any) -> dict[str, Any]:
        busy = await settle(timeout_s=3.0 if quick else 20.0)  # the previous stack's processes have wound down
        try:
            return {**await coro, "busy_cores_before": busy}
        except Exception as exc:  # noqa: BLE001 - a failed part is reported, the others still run
            return {"error": f"{type(exc).__name__}: {exc}", "busy_cores_before": busy}

    # one after the other: run at once, the three stacks starve each other's heartbeats on 2 cores
    return {name: await guarded(c) for name, c in parts.items()}
