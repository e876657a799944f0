"""Issue 19, parts 2-3, measured on an in-process stack (Redis, the emulator over TLS, two workers, a front):

- ``leaks``: N Connects, the front's handler cancelled after k event-loop steps (k = 0..N-1); after ten times
  the reattach grace, what is left: session records (and how many ACTIVE), admission leases, front entries,
  relays. Every number should be 0 (a lease may show while a worker's heartbeat that renewed it as its
  session ended has put it back: workers/heartbeat.py; it lapses after lease_ttl_s, 60 s here).
- ``resume``: a session (30 s reattach grace) with one turn and a resumption handle, its stream cancelled, then
  at once a new Connect with the handle: the time to its ``setup_complete`` (or the status it ended with). The
  emulator refuses a resume while the earlier upstream socket is open (1011), as the Live API does.

    python -m bench.takeovers                  # both, 80 cancelled Connects, 10 resumes
    python -m bench.takeovers --connects 200 --resumes 20

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

import grpc  # noqa: E402

from livegate.v1 import gateway_pb2 as gw  # noqa: E402
from livegate.v1 import gateway_pb2_grpc  # noqa: E402

MODEL = "gemini-live-2.5-flash"
SCOPE = f"default/{MODEL}"
GRACE_S = 0.3


def setup(handle: str | None = None, grace_s: int = 0) -> gw.ClientMessage:
    m = gw.ClientMessage()
    if grace_s:
        m.options.reattach_grace.seconds = grace_s
    m.setup.model = MODEL
    m.setup.generation_config.response_modalities.append(1)  # TEXT
    m.setup.session_resumption.SetInParent()
    if handle:
        m.setup.session_resumption.handle = handle
    return m


def text(t: str) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.client_content.turns.add(role="user").parts.add(text=t)
    m.client_content.turn_complete = True
    return m


async def leaks(parts: dict[str, Any], stub: Any, n: int) -> dict[str, int]:
    from livegate.redis import keys

    front = parts["front"]
    for k in range(n):
        before = set(front.calls)
        call = stub.Connect()
        await call.write(setup())
        while not set(front.calls) - before:
            await asyncio.sleep(0)
        (handler,) = set(front.calls) - before
        for _ in range(k):
            await asyncio.sleep(0)
        handler.cancel()
        call.cancel()
        while handler in front.calls:
            await asyncio.sleep(0.001)
    await asyncio.sleep(10 * GRACE_S)
    redis = parts["redis"]
    metas = await redis.keys("lg:{s-*}:meta")
    states = [await redis.hget(m, "state") for m in metas]
    return {"cancelled_connects": n, "records_left": len(metas), "active_left": states.count(b"active"),
            "leases_held": int(await redis.zcard(keys.admission_keys(SCOPE)[0])),
            "front_entries": len(front.sessions), "relays": sum(len(w.sessions) for w in parts["workers"])}


async def resumes(stub: Any, n: int) -> dict[str, Any]:
    took, failed = [], []
    for _ in range(n):
        call = stub.Connect()
        await call.write(setup(grace_s=30))  # the default grace: the earlier session is still alive at the resume
        await call.read()
        await call.write(text("Hello? Gemini are you there?"))
        handle = ""
        while not handle:
            u = (await call.read()).session_resumption_update
            handle = u.new_handle if u.resumable else ""
        call.cancel()  # an abnormal end of the first stream, then the resume at once
        t0 = time.monotonic()
        again = stub.Connect()
        await again.write(setup(handle))
        try:
            while not (await again.read()).HasField("setup_complete"):
                pass
            took.append(time.monotonic() - t0)
        except grpc.aio.AioRpcError as err:
            failed.append(f"{err.code().name} after {time.monotonic() - t0:.1f}s")
        await again.done_writing()
    took.sort()
    return {"resumes": n, "ok": len(took), "failed": failed,
            "setup_ms_median": round(1000 * took[len(took) // 2]) if took else None,
            "setup_ms_max": round(1000 * took[-1]) if took else None}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connects", type=int, default=80)
    ap.add_argument("--resumes", type=int, default=10)
    args = ap.parse_args()
    from emulator.config import EmulatorConfig
    from livegate.cli.devstack import RedisProcess, dev_stack
    from livegate.redis.connect import connect
    from livegate.settings import Settings

    proc = RedisProcess().start()
    try:
        settings = Settings(redis_url=proc.url, front_listen="127.0.0.1:0", worker_capacity=500, setup_timeout_s=30.0,
                            log_json=False, upstream_api_key="bench-key", reattach_grace_s=GRACE_S,
                            admission_json=json.dumps({"scopes": {SCOPE: {"cap": 1000}}, "lease_ttl_s": 60}))
        with tempfile.TemporaryDirectory() as certs:
            emu = EmulatorConfig(port=0, pacing=0.0, cert_dir=certs)
            async with dev_stack(settings, workers=2, emulator_config=emu, start_redis=False) as parts, \
                    grpc.aio.insecure_channel(parts["front"].address) as channel:
                parts["redis"] = redis = connect(proc.url)
                try:
                    stub = gateway_pb2_grpc.LiveGatewayStub(channel)
                    out = {"leaks": await leaks(parts, stub, args.connects),
                           "resume": await resumes(stub, args.resumes)}
                finally:
                    await redis.aclose()
    finally:
        proc.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
