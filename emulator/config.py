"""The one frozen configuration object of the Live API emulator.

Built at the edge (CLI or test fixture) and passed down; nothing below reads the environment.
Durations carry their unit in the name. Every limit is shortenable for tests.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Literal

FrameMode = Literal["auto", "binary", "text"]
SystemRoleMode = Literal["update", "reject"]
ActivityUnderVadMode = Literal["reject", "ignore"]


class EmulatorConfigError(ValueError):
    """A combination of settings the emulator refuses to start with."""


def is_loopback(host: str) -> bool:
    """True only for an address that no other machine can reach (an empty host means every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class EmulatorConfig:
    # --- listening socket -------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port; read EmulatorServer.port after start()
    tls: bool = True  # the google-genai SDK always speaks wss://
    cert_path: str | None = None  # PEM certificate; None = self-signed in cert_dir
    key_path: str | None = None
    cert_dir: str = "~/.cache/livegate-emulator"  # where the self-signed pair is created/reused

    # --- credentials (empty = accept any non-empty credential) ---------------------------------
    api_keys: frozenset[str] = field(default=frozenset(), repr=False)
    bearer_tokens: frozenset[str] = field(default=frozenset(), repr=False)
    ephemeral_tokens: frozenset[str] = field(default=frozenset(), repr=False)  # "auth_tokens/..."
    require_credentials: bool = True  # False: also accept a request that carries none

    # --- wire format ----------------------------------------------------------------------------
    frames: FrameMode = "auto"  # auto = binary for Gemini, text for Vertex
    pretty: bool = False  # pretty-print server JSON like the real service (slower)
    max_message_bytes: int = 16 * 1024 * 1024  # bigger client frames close 1007 (2x + 1 MiB: 1009)
    setup_timeout_s: float = 30.0  # no setup message within this -> 1011 "Deadline expired..."
    deflate: bool = True  # accept permessage-deflate

    # --- the deterministic model ----------------------------------------------------------------
    pacing: float = 1.0  # audio output speed factor: 1 = real time, 0 = as fast as possible
    audio_chunk_ms: int = 200  # audio per modelTurn chunk
    text_chunk_chars: int = 40  # text per modelTurn chunk
    speech_engine: str = "auto"  # emulator.speech.Synthesizer engine
    transcribe_engine: str = "auto"  # emulator.transcribe.Transcriber engine
    system_role: SystemRoleMode = "update"  # clientContent role "system": update instruction | 1007
    activity_under_vad: ActivityUnderVadMode = "reject"  # activityStart/End while VAD is on
    strict_models: bool = True  # unknown model id -> 1008

    # --- connection / session limits ------------------------------------------------------------
    connection_lifetime_s: float = 600.0  # goAway then 1011 "Deadline expired..."
    go_away_lead_s: float = 50.0  # goAway.timeLeft ahead of the deadline
    audio_session_cap_s: float = 15 * 60.0  # without contextWindowCompression
    video_session_cap_s: float = 2 * 60.0
    context_window_tokens: int = 32_768  # 131_072 for native-audio models
    native_audio_context_window_tokens: int = 131_072
    max_sessions_per_credential: int = 0  # 0 = unlimited; excess -> 1011 quota close

    # --- session resumption ---------------------------------------------------------------------
    handle_ttl_gemini_s: float = 2 * 3600.0
    handle_ttl_vertex_s: float = 24 * 3600.0
    reject_resume_while_open: bool = True  # 1011 "The service is currently unavailable."
    resumption_update_interval_s: float = 0.0  # >0: also send resumable:false updates mid-generation

    # --- observability (bounded, so long load tests do not grow memory without limit) -------------
    conversation_log_limit: int = 10_000  # client-message records kept per conversation (oldest dropped)
    max_closed_conversations: int = 1_000  # closed conversations kept for GET /emulator/v1/conversations

    # --- faults and the admin API (/emulator/v1/*: conversation logs, fault injection) -------------
    faults_file: str | None = None  # JSON scenario file loaded at start()
    admin_token: str = field(default="", repr=False)  # serve the admin API to `Authorization: Bearer <token>`
    admin: bool = False  # serve the admin API without a token: local development, loopback hosts only

    def __post_init__(self) -> None:
        if self.admin and not self.admin_token and not is_loopback(self.host):
            raise EmulatorConfigError(
                f"admin without a token is for a loopback host only, not {self.host!r}: set an admin token"
            )

    @property
    def admin_enabled(self) -> bool:
        return self.admin or bool(self.admin_token)

    def replace(self, **changes: object) -> EmulatorConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
