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
from urllib.parse import urlsplit, urlunsplit

# grpc prints a warning on every fork (the emulator spawns espeak-ng); livegate does not fork gRPC state
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from pydantic import ValidationError  # noqa: E402
from redis.exceptions import AuthenticationError as RedisAuthError  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402
from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: E402

from livegate import __version__, logs  # noqa: E402
from livegate import settings as settings_mod  # noqa: E402
from livegate.settings import Settings  # noqa: E402

logger = logging.getLogger("livegate")


class StartupError(Exception):
    """Ends a command with one line on stderr (what is wrong and which setting fixes it), no traceback."""


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "redis_url", None):
        overrides["redis_url"] = args.redis_url
    for line in settings_mod.unknown_env(os.environ):
        print(f"livegate: warning: {line}", file=sys.stderr, flush=True)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise StartupError("; ".join(
            f"LIVEGATE_{'_'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}" for e in exc.errors())
        ) from None


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


def explain(exc: BaseException, settings: Settings | None) -> str | None:
    """The one line for an error a person can fix at start (None: a bug, shown with its traceback)."""
    redis_url = _redacted(settings.redis_url) if settings is not None else "the configured Redis"
    if isinstance(exc, StartupError):
        return str(exc)
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return f"cannot reach Redis at {redis_url}: {exc} (set LIVEGATE_REDIS_URL, or --redis-url)"
    if isinstance(exc, RedisAuthError):
        return f"Redis at {redis_url} refused the credentials: {exc} (fix the password in LIVEGATE_REDIS_URL)"
    if isinstance(exc, (OSError, ValueError, FileNotFoundError)):
        return str(exc)
    return None


def tune_gc() -> None:
    """Keep the collector's pauses short on the relay path: what exists at start (modules, settings, generated
    protobuf classes) is moved out of its way (``gc.freeze``), so the occasional full collection scans only what
    the process created since. The first-generation threshold stays CPython's (700): a larger one (tried:
    50,000) saves ~1 % of CPU but makes each young collection a 15-19 ms pause, heard in a voice stream."""
    gc.collect()
    gc.freeze()


def _run(main: Callable[[asyncio.Event], Awaitable[int]], settings: Settings | None = None) -> int:
    """Run ``main(stop)`` on uvloop; SIGINT/SIGTERM set ``stop``; a second signal exits immediately. An
    error a person can fix ends it with one line (:func:`explain`) and exit status 2."""
    try:
        return _run_loop(main)
    except Exception as exc:
        line = explain(exc, settings)
        if line is None:
            raise
        print(f"livegate: {line}", file=sys.stderr, flush=True)
        return 2


def _run_loop(main: Callable[[asyncio.Event], Awaitable[int]]) -> int:
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

        from livegate import metrics
        from livegate.ops import OpsServer

        metrics.export_only("front")
        front = Front(settings)
        await front.start()
        metrics.preinit("front")  # after the front labelled its tenants
        ops = OpsServer(settings.metrics_listen, ready=lambda: front.serving)
        await ops.start()
        print(f"livegate front {front.id} listening on {front.address}", flush=True)
        await stop.wait()
        await front.drain()  # 1. health NOT_SERVING, callers told to reattach elsewhere
        await front.aclose()  # 2. stop within the grace period, 3. close clients
        await ops.aclose()
        return 0

    return _run(main, settings)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args, worker_capacity=args.capacity).with_ids("worker")
    logs.configure(settings.log_level, json=settings.log_json, process=settings.worker_id)

    async def main(stop: asyncio.Event) -> int:
        from workers.worker import Worker

        from livegate import metrics
        from livegate.ops import OpsServer

        metrics.export_only("worker")
        worker = Worker(settings)
        await worker.start()
        metrics.preinit("worker")
        ops = OpsServer(settings.metrics_listen, ready=worker.ready)
        await ops.start()
        print(f"livegate worker {worker.id} started", flush=True)
        await stop.wait()
        await worker.drain()  # stop taking sessions; live ones move to other workers within the drain timeout
        await worker.aclose()
        await ops.aclose()
        return 0

    return _run(main, settings)


def cmd_emulator(argv: list[str]) -> int:
    from emulator.cli import main

    return main(argv, prog="livegate emulator")


# -- dev ----------------------------------------------------------------------------------------------

def cmd_dev(args: argparse.Namespace) -> int:
    # $REDIS_URL / --redis-url if a Redis answers there; otherwise start a private redis-server
    # --redis-url, else LIVEGATE_REDIS_URL (the one Settings reads), else $REDIS_URL: that Redis must answer;
    # with none of them a private redis-server is started
    explicit = args.redis_url or os.environ.get("LIVEGATE_REDIS_URL") or os.environ.get("REDIS_URL") or ""
    settings = _settings(args, front_listen=args.listen, upstream_api_key="livegate-dev-key",
                         log_level=args.log_level, log_json=False, redis_url=explicit,
                         **({"ws_listen": args.ws_listen} if args.ws_listen else {}),
                         **({"metrics_listen": args.metrics_listen} if args.metrics_listen else {}))
    logs.configure(settings.log_level, json=False, process="dev")

    async def main(stop: asyncio.Event) -> int:
        from emulator.config import EmulatorConfig
        from livegate import metrics
        from livegate.cli.devstack import dev_stack
        from livegate.ops import OpsServer

        # the emulator listens on 127.0.0.1, where its admin API (/emulator/v1/*) may go without a token
        emu_config = EmulatorConfig(port=0, pacing=args.pacing, admin=True)
        async with dev_stack(settings, workers=args.workers, emulator_config=emu_config) as parts, \
                contextlib.AsyncExitStack() as stack:
            front = parts["front"]
            for role in ("front", "worker"):  # every role in one process: it exports them all
                metrics.preinit(role)
            ops = OpsServer(settings.metrics_listen, ready=lambda: front.serving)
            await ops.start()
            stack.push_async_callback(ops.aclose)
            served = f", metrics on http://{settings.metrics_listen.rpartition(':')[0]}:{ops.port}/metrics" \
                if ops.port else ""
            print(f"livegate dev: front on {front.address}, emulator on {parts['emulator'].url}, "
                  f"redis at {parts['redis_url']}, {len(parts['workers'])} workers{served}", flush=True)
            if front.websocket.url:
                print(live_api_hint(front.websocket.url), flush=True)
            if args.demo:
                from livegate.cli.demo import run_demo

                await run_demo(front.address, Path(args.audio_out))
                return 0
            print("Ctrl-C to stop. Try: livegate chat --target " + front.address, flush=True)
            await stop.wait()
        print("livegate dev stopped", flush=True)
        return 0

    return _run(main, settings)


def live_api_hint(url: str) -> str:
    """What ``livegate dev --ws-listen`` prints: the endpoint and how an SDK uses it (docs/websocket.md)."""
    base = url.replace("wss://", "https://").replace("ws://", "http://")
    lines = [f"Live API WebSocket on {url}: point an SDK's base URL at {base}",
             f"  google-genai: genai.Client(api_key=..., http_options={{\"base_url\": \"{base}\"}})",
             f"  @google/genai: new GoogleGenAI({{apiKey: ..., httpOptions: {{baseUrl: \"{base}\"}}}})"]
    if url.startswith("ws://"):
        lines.append("  (google-genai for Python only speaks wss://: give the front a certificate with "
                     "LIVEGATE_FRONT_TLS_CERT_FILE and LIVEGATE_FRONT_TLS_KEY_FILE)")
    return "\n".join(lines)


# -- chat ---------------------------------------------------------------------------------------------

def cmd_chat(args: argparse.Namespace) -> int:
    logs.configure("WARNING", json=False)
    from livegate.cli.chat import chat

    async def main(stop: asyncio.Event) -> int:
        return await chat(args, stop)

    return _run(main)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="livegate", description="gRPC gateway for the Gemini Live API")
    p.add_argument("--version", action="version", version=f"livegate {__version__}")
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
    d.add_argument("--redis-url", help="use this Redis (default LIVEGATE_REDIS_URL, then $REDIS_URL); with none "
                   "of them a private redis-server is started")
    d.add_argument("--workers", type=int, default=2)
    d.add_argument("--ws-listen", default="", metavar="HOST:PORT",
                   help="also serve the Live API WebSocket protocol here (LIVEGATE_WS_LISTEN): point an SDK's base URL at it")
    d.add_argument("--metrics-listen", default="", metavar="HOST:PORT",
                   help="serve /metrics, /healthz and /readyz here (LIVEGATE_METRICS_LISTEN)")
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
    try:
        return int(args.func(args))
    except StartupError as exc:
        print(f"livegate: {exc}", file=sys.stderr, flush=True)
        return 2

