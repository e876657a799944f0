"""``livegate``: front | worker | emulator | dev | chat.

The only place that reads the environment (through Settings) and handles signals. The first SIGINT/SIGTERM
starts a bounded, ordered shutdown; a second one exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# grpc prints a warning on every fork (the emulator spawns espeak-ng); livegate does not fork gRPC state
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from livegate import logs  # noqa: E402
from livegate.settings import Settings  # noqa: E402

logger = logging.getLogger("livegate")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "redis_url", None):
        overrides["redis_url"] = args.redis_url
    return Settings(**overrides)


def tune_gc() -> None:
    """Keep the collector's pauses short on the relay path: what exists at start (modules, settings, generated
    protobuf classes) is moved out of its way (``gc.freeze``), so the occasional full collection scans only what
    the process created since. The first-generation threshold stays CPython's (700): a larger one (tried:
    50,000) saves ~1 % of CPU but makes each young collection a 15-19 ms pause, heard in a voice stream."""
    gc.collect()
    gc.freeze()


def _run(main: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run ``main(stop)`` on uvloop; SIGINT/SIGTERM set ``stop``; a second signal exits immediately."""
    tune_gc()

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(signum: int) -> None:
            if stop.is_set():
                logger.warning("second signal: exiting now")
                os._exit(130)
            logger.info("signal %s: shutting down", signal.Signals(signum).name)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(signal.SIGUSR1, logs.cycle_level)
        return await main(stop)

    try:
        import uvloop

        return uvloop.run(runner())
    except ImportError:  # pragma: no cover
        return asyncio.run(runner())


# -- front / worker ---------------------------------------------------------------------------------------

def cmd_front(args: argparse.Namespace) -> int:
    settings = _settings(args, front_listen=args.listen).with_ids("front")
    logs.configure(settings.log_level, json=settings.log_json, process=settings.front_id)

    async def main(stop: asyncio.Event) -> int:
        from service.server import Front

        from livegate.ops import OpsServer

        front = Front(settings)
        await front.start()
        ops = OpsServer(settings.metrics_listen, ready=lambda: front.serving)
        await ops.start()
        print(f"livegate front {front.id} listening on {front.address}", flush=True)
        await stop.wait()
        await front.drain()  # 1. health NOT_SERVING, callers told to reattach elsewhere
        await front.aclose()  # 2. stop within the grace period, 3. close clients
        await ops.aclose()
        return 0

    return _run(main)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args, worker_capacity=args.capacity).with_ids("worker")
    logs.configure(settings.log_level, json=settings.log_json, process=settings.worker_id)

    async def main(stop: asyncio.Event) -> int:
        from workers.worker import Worker

        from livegate.ops import OpsServer

        worker = Worker(settings)
        await worker.start()
        ops = OpsServer(settings.metrics_listen, ready=worker.ready)
        await ops.start()
        print(f"livegate worker {worker.id} started", flush=True)
        await stop.wait()
        await worker.drain()  # stop taking sessions; live ones move to other workers within the drain timeout
        await worker.aclose()
        await ops.aclose()
        return 0

    return _run(main)


def cmd_emulator(argv: list[str]) -> int:
    from emulator.cli import main

    return main(argv)


# -- dev ----------------------------------------------------------------------------------------------

def cmd_dev(args: argparse.Namespace) -> int:
    # $REDIS_URL / --redis-url if a Redis answers there; otherwise start a private redis-server
    settings = _settings(args, front_listen=args.listen, upstream_api_key="livegate-dev-key",
                         log_level=args.log_level, log_json=False, redis_url=args.redis_url or "")
    logs.configure(settings.log_level, json=False, process="dev")

    async def main(stop: asyncio.Event) -> int:
        from emulator.config import EmulatorConfig
        from livegate.cli.devstack import dev_stack

        emu_config = EmulatorConfig(port=0, pacing=args.pacing)
        async with dev_stack(settings, workers=args.workers, emulator_config=emu_config) as parts:
            front = parts["front"]
            print(f"livegate dev: front on {front.address}, emulator on {parts['emulator'].url}, "
                  f"redis at {parts['redis_url']}, {len(parts['workers'])} workers", flush=True)
            if args.demo:
                from livegate.cli.demo import run_demo

                await run_demo(front.address, Path(args.audio_out))
                return 0
            print("Ctrl-C to stop. Try: livegate chat --target " + front.address, flush=True)
            await stop.wait()
        print("livegate dev stopped", flush=True)
        return 0

    return _run(main)


# -- chat ---------------------------------------------------------------------------------------------

def cmd_chat(args: argparse.Namespace) -> int:
    logs.configure("WARNING", json=False)
    from livegate.cli.chat import chat

    async def main(stop: asyncio.Event) -> int:
        return await chat(args, stop)

    return _run(main)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="livegate", description="gRPC gateway for the Gemini Live API")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("front", help="run the gRPC front (settings: LIVEGATE_* environment variables)")
    f.add_argument("--listen", help="host:port (LIVEGATE_FRONT_LISTEN)")
    f.add_argument("--redis-url")
    f.set_defaults(func=cmd_front)

    w = sub.add_parser("worker", help="run a worker holding upstream Live API sessions")
    w.add_argument("--capacity", type=int, help="max sessions (LIVEGATE_WORKER_CAPACITY)")
    w.add_argument("--redis-url")
    w.set_defaults(func=cmd_worker)

    sub.add_parser("emulator", help="run the Live API emulator (see `livegate emulator --help`)", add_help=False)

    d = sub.add_parser("dev", help="the whole stack in one process: Redis, emulator, two workers, front")
    d.add_argument("--listen", default="127.0.0.1:50051")
    d.add_argument("--redis-url", default=os.environ.get("REDIS_URL"),
                   help="use this Redis if reachable (default $REDIS_URL), else start a redis-server")
    d.add_argument("--workers", type=int, default=2)
    d.add_argument("--pacing", type=float, default=1.0, help="emulator audio pacing (1 = real time, 0 = fast)")
    d.add_argument("--demo", action="store_true", help="run the demo conversation, then stop")
    d.add_argument("--audio-out", default="demo-reply.wav", help="where --demo saves the audio reply")
    d.add_argument("--log-level", default="WARNING")
    d.set_defaults(func=cmd_dev)

    c = sub.add_parser("chat", help="talk to a running gateway")
    c.add_argument("--target", default="127.0.0.1:50051")
    c.add_argument("--model", default="gemini-live-2.5-flash")
    c.add_argument("--audio", action="store_true", help="ask for audio replies (default text)")
    c.add_argument("--voice", default=None)
    c.add_argument("--audio-in", default=None, help="a WAV file streamed as 16 kHz PCM in real time")
    c.add_argument("--audio-out", default=None, help="save the 24 kHz audio reply to this WAV file")
    c.add_argument("--message", action="append", default=None, help="send this text turn (repeatable); "
                   "without it, read turns from stdin")
    c.set_defaults(func=cmd_chat)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "emulator":
        return cmd_emulator(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))

