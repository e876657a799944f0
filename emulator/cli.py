"""`python -m emulator`: run the Live API emulator until SIGINT/SIGTERM. Every EmulatorConfig field is an option."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from typing import Any

from .config import EmulatorConfig, EmulatorConfigError
from .server import EmulatorServer

ADMIN_TOKEN_ENV = "LIVEGATE_EMULATOR_ADMIN_TOKEN"  # the admin token's one environment variable (a Secret in k8s)


def build_parser(prog: str = "python -m emulator") -> argparse.ArgumentParser:
    """The emulator's command line; ``prog`` is the command its caller runs it as (e.g. ``livegate emulator``)."""
    d = EmulatorConfig()
    p = argparse.ArgumentParser(prog=prog, description="Local Gemini Live API emulator")
    a = p.add_argument
    a("--host", default=d.host, help="listen address (default %(default)s)")
    a("--port", type=int, default=8443, help="listen port; 0 = any free port (default %(default)s)")
    a("--plain", action="store_true", help="serve plain ws:// instead of TLS (the Python SDK needs TLS)")
    a("--cert", help="PEM certificate (default: self-signed, created in --cert-dir)")
    a("--key", help="PEM private key for --cert")
    a("--cert-dir", default=d.cert_dir, help="where the self-signed pair lives (default %(default)s)")
    a("--api-key", action="append", default=[], help="valid API key (repeatable; none = accept any)")
    a("--bearer-token", action="append", default=[], help="valid OAuth bearer token (repeatable; none = any)")
    a("--ephemeral-token", action="append", default=[], help="valid auth_tokens/... token (repeatable)")
    a("--allow-anonymous", action="store_true", help="accept requests carrying no credential at all")
    a("--frames", choices=["auto", "binary", "text"], default=d.frames, help="server frame type (auto: binary Gemini, text Vertex)")
    a("--pretty", action="store_true", help="pretty-print server JSON like the real service")
    a("--max-message-bytes", type=int, default=d.max_message_bytes, help="largest client frame (default %(default)s)")
    a("--setup-timeout-s", type=float, default=d.setup_timeout_s, help="close if no setup arrives in time")
    a("--no-deflate", action="store_true", help="refuse permessage-deflate")
    a("--pacing", type=float, default=d.pacing, help="audio output speed: 1 real time, 0 as fast as possible")
    a("--audio-chunk-ms", type=int, default=d.audio_chunk_ms, help="audio per modelTurn chunk")
    a("--text-chunk-chars", type=int, default=d.text_chunk_chars, help="text per modelTurn chunk")
    a("--speech-engine", default=d.speech_engine, choices=["auto", "espeak", "synthetic"])
    a("--transcribe-engine", default=d.transcribe_engine, choices=["auto", "pocketsphinx", "convention"])
    a("--system-role", choices=["update", "reject"], default=d.system_role, help="clientContent role 'system'")
    a("--activity-under-vad", choices=["reject", "ignore"], default=d.activity_under_vad,
      help="activityStart/End while automatic VAD is on: 1008 or ignore")
    a("--any-model", action="store_true", help="accept any well-formed model id")
    a("--connection-lifetime-s", type=float, default=d.connection_lifetime_s)
    a("--go-away-lead-s", type=float, default=d.go_away_lead_s)
    a("--audio-session-cap-s", type=float, default=d.audio_session_cap_s)
    a("--video-session-cap-s", type=float, default=d.video_session_cap_s)
    a("--context-window-tokens", type=int, default=d.context_window_tokens)
    a("--native-audio-context-window-tokens", type=int, default=d.native_audio_context_window_tokens)
    a("--max-sessions-per-credential", type=int, default=d.max_sessions_per_credential, help="0 = unlimited")
    a("--handle-ttl-gemini-s", type=float, default=d.handle_ttl_gemini_s)
    a("--handle-ttl-vertex-s", type=float, default=d.handle_ttl_vertex_s)
    a("--allow-resume-while-open", action="store_true", help="take over instead of 1011 on a resume while open")
    a("--resumption-update-interval-s", type=float, default=d.resumption_update_interval_s,
      help=">0: resumable:false updates during long generations")
    a("--conversation-log-limit", type=int, default=d.conversation_log_limit, help="message records per conversation")
    a("--max-closed-conversations", type=int, default=d.max_closed_conversations)
    a("--faults", dest="faults_file", help="JSON scenario file of fault rules")
    a("--admin-token", default=os.environ.get(ADMIN_TOKEN_ENV, ""),
      help=f"serve /emulator/v1/* to requests with 'Authorization: Bearer TOKEN' (default: ${ADMIN_TOKEN_ENV})")
    a("--admin", action="store_true", help="serve /emulator/v1/* without a token (local development: loopback --host only)")
    a("--no-admin", action="store_true", help=argparse.SUPPRESS)  # the default since the admin API needs a token
    a("--loop", choices=["auto", "asyncio", "uvloop"], default="auto", help="event loop (auto: uvloop if installed)")
    a("--log-level", default="INFO")
    return p


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        tls=not args.plain,
        cert_path=args.cert,
        key_path=args.key,
        cert_dir=args.cert_dir,
        api_keys=frozenset(args.api_key),
        bearer_tokens=frozenset(args.bearer_token),
        ephemeral_tokens=frozenset(args.ephemeral_token),
        require_credentials=not args.allow_anonymous,
        frames=args.frames,
        pretty=args.pretty,
        max_message_bytes=args.max_message_bytes,
        setup_timeout_s=args.setup_timeout_s,
        deflate=not args.no_deflate,
        pacing=args.pacing,
        audio_chunk_ms=args.audio_chunk_ms,
        text_chunk_chars=args.text_chunk_chars,
        speech_engine=args.speech_engine,
        transcribe_engine=args.transcribe_engine,
        system_role=args.system_role,
        activity_under_vad=args.activity_under_vad,
        strict_models=not args.any_model,
        connection_lifetime_s=args.connection_lifetime_s,
        go_away_lead_s=args.go_away_lead_s,
        audio_session_cap_s=args.audio_session_cap_s,
        video_session_cap_s=args.video_session_cap_s,
        context_window_tokens=args.context_window_tokens,
        native_audio_context_window_tokens=args.native_audio_context_window_tokens,
        max_sessions_per_credential=args.max_sessions_per_credential,
        handle_ttl_gemini_s=args.handle_ttl_gemini_s,
        handle_ttl_vertex_s=args.handle_ttl_vertex_s,
        reject_resume_while_open=not args.allow_resume_while_open,
        resumption_update_interval_s=args.resumption_update_interval_s,
        conversation_log_limit=args.conversation_log_limit,
        max_closed_conversations=args.max_closed_conversations,
        faults_file=args.faults_file,
        admin_token=args.admin_token,
        admin=args.admin and not args.no_admin,
    )


async def serve(config: EmulatorConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # installed before the URL is printed
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    server = EmulatorServer(config)
    await server.start()
    gc.collect()
    gc.freeze()  # start-up objects (numpy, models, voices) stay out of later collections: shorter pauses
    print(f"Live API emulator listening on {server.url}", flush=True)
    print(f"  Gemini: {server.gemini_url('v1beta')}", flush=True)
    print(f"  Vertex: {server.vertex_url('v1beta1')}", flush=True)
    if config.admin_enabled:
        how = "Authorization: Bearer <admin token>" if config.admin_token else "no token, loopback only"
        print(f"  admin: {server.url}/emulator/v1/conversations ({how})", flush=True)
    if server.cert_path:
        print(f"  certificate: {server.cert_path}", flush=True)
        print(f"  trust it with: export SSL_CERT_FILE={server.cert_path}", flush=True)
    try:
        await stop.wait()
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal forces exit
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
    finally:
        await server.aclose()
        print("emulator stopped", flush=True)
    return 0


def _run(coro: Any, loop: str) -> int:
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            return int(uvloop.run(coro))
    return int(asyncio.run(coro))


def main(argv: list[str] | None = None, prog: str = "python -m emulator") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except EmulatorConfigError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(serve(config), args.loop)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 1
