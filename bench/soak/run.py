"""One soak run (:func:`soak`): the stack, the callers and the faults, then what must be zero."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import time
from typing import Any

from bench import common
from bench.common import Stack
from bench.soak.caller import MODEL, Caller, Counts
from bench.soak.faults import ADMIN_TOKEN, FAULTS, Emulator, Fleet, fault_loop


async def leftovers(redis_url: str, emu: Emulator, timeout_s: float) -> dict[str, int]:
    """What is still there once every session should be gone (polled up to ``timeout_s``)."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(redis_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            keys = [k.decode() async for k in r.scan_iter("lg:{s-*", count=1000)]
            sessions = {k.split("}")[0] for k in keys}
            leases = 0
            async for k in r.scan_iter("lg:{adm:*}:leases", count=1000):
                leases += int(await r.zcard(k))
            upstreams = len((await emu.call("GET", "sessions"))["sessions"])
            out = {"leftover_sessions": len(sessions), "leftover_keys": len(keys), "leftover_leases": leases,
                   "leftover_upstreams": upstreams}
            if not any(out.values()) or time.monotonic() > deadline:
                return out
            await asyncio.sleep(1.0)
    finally:
        await r.aclose()


async def check_conversations(emu: Emulator, callers: list[Caller], counts: Counts, dump_to: str = "") -> None:
    """Turns lost and duplicated, from what the model remembers (a conversation's history, which a resume
    restores from its handle): each text caller's turns, in order, each once."""
    convs = (await emu.call("GET", "conversations", {"include": "messages"}))["conversations"]
    if dump_to:  # for the diagnosis of a failed run: what the model saw, connection by connection
        with open(os.path.join(dump_to, "conversations.json"), "w") as f:
            json.dump(convs, f)
    seen: dict[str, list[str]] = collections.defaultdict(list)
    for conv in convs:
        for entry in conv.get("history", ()):
            if entry["role"] == "user" and entry["text"].startswith("soak c"):
                seen[entry["text"].split(" turn ")[0].split()[1]].append(entry["text"])
    for c in callers:
        if c.audio:
            continue
        got = collections.Counter(seen.get(c.tag, ()))
        for text in c.sent:
            if got[text] == 0 and text in c.refused:
                counts.turns_refused += 1  # its session ended with a typed status: the caller was told
            elif got[text] == 0:
                counts.turns_lost += 1
            elif got[text] > 1:
                counts.turns_duplicated += got[text] - 1


async def soak(sessions: int, duration_s: float, faults_each: int, *, audio_share: float = 0.2,
               silent_s: float = 40.0, grace_s: float = 8.0, ttl_s: float = 4.0, log_level: str = "WARNING",
               log: Any = print) -> dict[str, Any]:
    from emulator.transcribe import encode_text_tones

    stack = Stack()
    counts = Counts()
    t0 = time.monotonic()
    try:
        redis_url = stack.start_redis()
        emu_proc = await stack._spawn("emulator", [
            sys.executable, "-m", "emulator", "--port", "0", "--admin-token", ADMIN_TOKEN, "--pacing", "0",
            "--transcribe-engine", "convention", "--connection-lifetime-s", "20", "--go-away-lead-s", "5",
            "--max-closed-conversations", "100000", "--log-level", "WARNING",
            "--cert-dir", os.path.join(stack.tmp, "cert")], r"listening on ((?P<addr>\S+))")
        cert = os.path.join(stack.tmp, "cert", "emulator-cert.pem")
        stack.emulator = common.Emulator(emu_proc, emu_proc.address, cert, "")
        emu = Emulator(emu_proc.address, cert)
        admission = os.path.join(stack.tmp, "admission.json")
        with open(admission, "w") as f:
            json.dump({"scopes": {f"default/{MODEL}": {"cap": sessions * 3}}}, f)
        env = {"heartbeat_interval_s": ttl_s / 4,
               "heartbeat_ttl_s": ttl_s, "admission_file": admission, "setup_timeout_s": 20,
               "log_level": log_level}
        fleet = Fleet(stack, env, fronts=3, workers=3)
        await fleet.start()
        pcm = b"\x00\x00" * 3200 + encode_text_tones("what is two plus two")
        callers = [Caller(i, fleet, counts, audio=i < sessions * audio_share, silent_s=silent_s, grace_s=grace_s,
                          question_pcm=pcm) for i in range(sessions)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(c.run(stop), name=c.tag) for c in callers]
        log(f"soak: {sessions} sessions on 3 fronts and 3 workers for {duration_s:.0f}s, "
            f"{faults_each} of each of {len(FAULTS)} faults")
        kinds = [k for k in FAULTS for _ in range(faults_each)]
        await fault_loop(kinds, duration_s, fleet, emu, callers, counts, redis_url, ttl_s)
        await asyncio.sleep(max(0.0, t0 + duration_s - time.monotonic()))
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        crashed = [f"{c.tag}: {r!r}" for c, r in zip(callers, results) if isinstance(r, BaseException)]
        log("soak: callers closed; waiting for the last grace")
        await asyncio.sleep(grace_s)
        left = await leftovers(redis_url, emu, timeout_s=grace_s + 30)
        await check_conversations(emu, callers, counts, dump_to=stack.tmp)
        convs = (await emu.call("GET", "conversations"))["conversations"]
        go_aways = sum(c["go_aways"] for c in convs)
    finally:
        await stack.aclose()
    zero = {"turns_lost": counts.turns_lost, "turns_duplicated": counts.turns_duplicated,
            "messages_missing_after_reattach": counts.messages_missing_after_reattach, "silent": counts.silent,
            "wrong_answers": counts.wrong_answers, "callers_crashed": len(crashed), **left}
    return {
        "sessions": sessions, "duration_s": round(time.monotonic() - t0, 1), "zero": zero, "logs": stack.tmp,
        "ok": not any(zero.values()),
        "faults": dict(counts.faults, upstream_go_away=go_aways),
        "turns_sent": counts.turns_sent, "turns_answered": counts.turns_answered,
        "turns_refused_with_status": counts.turns_refused, "answers_repeated": counts.answers_repeated,
        "reattaches": counts.reattaches, "resumes": counts.resumes,
        "resent_after_reattach": counts.resent_after_reattach,
        "ended_with_status": dict(counts.ended_with_status), "crashed": crashed[:20],
        "events": [e for e in counts.events if " sent on " not in e[2]][-3000:],  # all but one line per turn
    }
