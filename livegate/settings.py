"""The one Settings object: built once at the edge (CLI/env), frozen, passed down.

Nothing below the entrypoint reads the environment. Every field can be set as ``LIVEGATE_<NAME>``
(e.g. ``LIVEGATE_REDIS_URL``) or by the CLI. Durations carry their unit in the name.
"""

from __future__ import annotations

import difflib
import os
import secrets
import socket
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Flavour = Literal["gemini", "vertex"]


def default_instance_id(role: str) -> str:
    """A process id readable by an operator: role, host and pid, plus a random suffix because a
    container's pid is often 1 and a restarted pod may keep its host name."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVEGATE_", frozen=True, extra="forbid")

    # --- Redis: the allocation, state and message bus between fronts and workers -----------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis://host:port/db, rediss://..., or redis+cluster://host:port[,host:port...]",
    )

    # --- front -------------------------------------------------------------------------------------
    front_listen: str = Field("127.0.0.1:50051", description="host:port the gRPC front binds")
    ws_listen: str = Field("", description="host:port the front serves the Live API WebSocket protocol on "
                           "(service/ws/; empty: off); TLS with the front's certificate settings")
    front_id: str = ""
    max_message_bytes: int = Field(4 * 1024 * 1024, description="largest gRPC message accepted from a caller")
    setup_timeout_s: float = Field(30.0, description="time for a caller's first message (setup or reattach) after its "
                                   "stream starts, and for a worker to take a session and the upstream to answer setup")
    close_timeout_s: float = Field(20.0, description="time a front waits for the worker to confirm a close")
    close_turn_s: float = Field(15.0, description="on a caller's half-close, time the worker lets the turn in flight finish")
    front_grace_s: float = Field(10.0, description="bounded shutdown of the front")
    grpc_max_connection_age_s: float = Field(0.0, ge=0, description="send callers' connections a GOAWAY at this age "
                                             "(± 10 %), so new calls open new connections and reach new fronts "
                                             "(0: never)")
    grpc_max_connection_age_grace_s: float = Field(0.0, ge=0, description="then close the connection this long after "
                                                   "its GOAWAY, cutting the streams still on it (callers reattach); "
                                                   "0: never, streams end on their own")
    session_queue_len: int = Field(1024, description="server messages buffered per session at the front")
    audio_rate_factor: float = Field(4.0, description="callers may send audio at most this many times real time")
    audio_burst_s: float = Field(5.0, description="seconds of audio a caller may send at once above that rate")
    max_audio_chunk_ms: int = Field(2000, description="longest audio chunk in one message")
    max_messages_per_s: float = Field(200.0, description="client messages per second per session (burst: 2 s worth)")

    # --- caller authentication and front TLS (service/auth.py, service/tls.py) ----------------------
    auth_modes: tuple[str, ...] = Field(("open",), description="open | api_key | mtls | mtls:san | oidc, tried in "
                                        "order (env: a JSON list, '[\"api_key\", \"oidc\"]')")
    open_tenant: str = Field("default", description="the tenant of every caller in auth mode 'open'")
    caller_keys_file: str = Field("", description="caller API keys (hashed), reloaded when it changes")
    oidc_audience: str = Field("", description="required `aud` of caller ID tokens")
    oidc_jwks: str = Field("", description="JWKS / PEM certs for ID tokens: an https URL or a file path")
    oidc_issuers: tuple[str, ...] = Field(("https://accounts.google.com", "accounts.google.com"))
    oidc_tenant_claim: str = Field("email", description="ID-token claim that names the tenant")
    oidc_tenants: tuple[str, ...] = Field((), description="the tenants OIDC callers may be: exact names, globs "
                                          "('*@acme.iam.gserviceaccount.com') or 're:<regex>'; any other identity is "
                                          "PERMISSION_DENIED. Empty: every verified identity (each its own tenant)")
    front_tls_cert_file: str = Field("", description="serve gRPC over TLS with this certificate (PEM)")
    front_tls_key_file: str = Field("", repr=False)
    front_client_ca_file: str = Field("", description="require client certificates signed by this CA (mTLS)")
    admission_file: str = Field("", description="admission caps, tenant shares and rate limits (JSON)")
    admission_json: str = Field("", description="the same document inline (e.g. from a Helm value)")

    # --- worker ------------------------------------------------------------------------------------
    worker_id: str = ""
    worker_capacity: int = Field(100, description="upstream sessions one worker holds at most")
    heartbeat_interval_s: float = Field(0.5, gt=0, description="how often workers and fronts beat (and renew leases)")
    heartbeat_ttl_s: float = Field(4.0, gt=0, description="a worker or front silent this long is dead: its sessions "
                                   "are taken over (worker) or detached (front). Bounds the pause after a crash; "
                                   "must outlast event-loop stalls (docs/durability.md, Pauses)")
    drain_timeout_s: float = 30.0

    # --- sessions and Redis retention ------------------------------------------------------------
    session_key_ttl_s: int = Field(900, description="TTL of per-session keys, refreshed while the session lives")
    s2c_history_len: int = Field(2000, description="server messages kept per session for reattach replay")
    c2s_log_len: int = Field(3000, description="client messages kept per session for upstream replay")
    write_window: int = Field(8, ge=1, description="a session's Redis writes in flight per direction before it waits "
                              "for the oldest reply (1: wait for each)")
    inbox_len: int = Field(10000, description="approximate cap of a worker inbox / front outbox stream")
    reattach_grace_s: float = Field(30.0, description="a session whose caller is gone waits this long for a reattach")
    max_reattach_grace_s: float = Field(600.0, description="upper bound of SessionOptions.reattach_grace")
    handle_ttl_s: int = Field(7200, description="lifetime of a gateway resumption handle given to callers")

    # --- upstream (the Live API, or the emulator) ------------------------------------------------
    upstream_url: str = Field("https://127.0.0.1:8443", description="base URL of the Live API (https, wss)")
    upstream_flavour: Flavour = "gemini"
    upstream_api_version: str = Field("", description="empty: v1beta (Gemini) / v1beta1 (Vertex)")
    upstream_api_key: SecretStr | None = Field(None, repr=False)
    upstream_ca_file: str = Field("", description="extra CA bundle to trust (the emulator's certificate)")
    upstream_connect_timeout_s: float = 10.0
    upstream_max_attempts: int = Field(8, description="connect attempts (capped, jittered backoff) before a session ends")
    upstream_ping_interval_s: float = Field(30.0, description="keepalive; Google's pongs take 8-30 s")
    upstream_ping_timeout_s: float = 60.0
    upstream_max_frame_bytes: int = 16 * 1024 * 1024
    upstream_stall_s: float = Field(15.0, description="renew the upstream after this long without a frame during a turn")
    compression_default: bool = Field(True, description="turn on context-window compression upstream when the caller "
                                      "did not configure it (sessions are otherwise capped at 15 min audio / 2 min video)")
    go_away_margin_s: float = Field(5.0, description="renew the upstream at least this long before go_away's deadline")
    vertex_project: str = ""
    vertex_location: str = "us-central1"
    google_credentials_file: str = Field("", description="service-account JSON; empty: application default")
    upstreams_file: str = Field("", description="named upstream routes and tenant policies (JSON, livegate/routes.py)")
    upstreams_json: str = Field("", description="the same document inline (e.g. from a Helm value)")
    allowed_models: tuple[str, ...] = Field(
        (),
        description="model ids callers may use (short form); empty: the built-in list of Live models",
    )

    # --- operations ------------------------------------------------------------------------------------
    metrics_listen: str = Field("", description="host:port of /metrics /healthz /readyz (empty: off), e.g. 0.0.0.0:9090")

    # --- logging -----------------------------------------------------------------------------------
    log_level: str = "INFO"
    log_json: bool = True

    # --- budgets: what one caller may make the gateway hold (service/budget.py, docs/redis.md) -------
    max_setup_bytes: int = Field(256 * 1024, ge=1024, description="largest `setup` message")
    max_client_content_bytes: int = Field(1024 * 1024, ge=1024, description="largest client_content message "
                                          "(text and inline data of its turns)")
    max_audio_bytes: int = Field(256 * 1024, ge=1024, description="largest audio blob in one realtime_input "
                                 "(audio, or an audio media chunk)")
    max_video_bytes: int = Field(1024 * 1024, ge=1024, description="largest image frame in one realtime_input.video")
    max_media_chunks_bytes: int = Field(1024 * 1024, ge=1024, description="largest sum of realtime_input.media_chunks "
                                        "in one message")
    max_text_bytes: int = Field(1024 * 1024, ge=1024, description="largest realtime_input.text (UTF-8 bytes)")
    max_tool_response_bytes: int = Field(1024 * 1024, ge=1024, description="largest tool_response message")
    session_bytes_per_s: float = Field(1024 * 1024, gt=0, description="client bytes per second per session; a "
                                       "session above it is not read (backpressure)")
    session_burst_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="client bytes a session may send at once "
                                     "above session_bytes_per_s")
    tenant_bytes_per_s: float = Field(8 * 1024 * 1024, gt=0, description="client bytes per second of all a tenant's "
                                      "sessions on one front; above it they are not read (backpressure)")
    tenant_burst_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="burst above tenant_bytes_per_s")
    c2s_log_max_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024, description="client bytes a session's c2s log "
                                   "holds before the upstream's resumption handle covers them; a session at the bound "
                                   "is not read, and refused after budget_wait_s")
    s2c_log_max_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024, description="server bytes a session's s2c log (the "
                                   "reattach history) keeps; older messages are trimmed")
    stream_inline_max_bytes: int = Field(16 * 1024, ge=1024, description="a message larger than this travels through "
                                         "a worker inbox / front outbox as a reference to its session log entry")
    budget_wait_s: float = Field(10.0, gt=0, description="how long a session may stay throttled by a full c2s log "
                                 "before its message is refused (RESOURCE_EXHAUSTED C2S_LOG_FULL)")
    max_pending_connects: int = Field(1000, ge=1, description="Connects on one front that have not sent their first "
                                      "message yet (they wait at most setup_timeout_s)")
    max_pending_connects_per_tenant: int = Field(50, ge=1, description="the same, per tenant, per front")

    @field_validator("upstream_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @model_validator(mode="after")
    def _heartbeat_fits_ttl(self) -> Settings:
        if self.heartbeat_ttl_s < 2 * self.heartbeat_interval_s:
            raise ValueError(f"heartbeat_ttl_s ({self.heartbeat_ttl_s}) must be at least twice heartbeat_interval_s "
                             f"({self.heartbeat_interval_s}): one late beat would declare a live process dead")
        return self

    @model_validator(mode="after")
    def _messages_fit_the_log(self) -> Settings:
        largest = max(self.max_client_content_bytes, self.max_audio_bytes, self.max_video_bytes,
                      self.max_media_chunks_bytes, self.max_text_bytes, self.max_tool_response_bytes)
        if largest > self.c2s_log_max_bytes:
            raise ValueError(f"c2s_log_max_bytes ({self.c2s_log_max_bytes}) must hold the largest client message "
                             f"allowed ({largest} bytes, the max_*_bytes settings)")
        return self

    def with_ids(self, role: str) -> Settings:
        """Fill in the process ids (front_id / worker_id) if they were not configured."""
        updates: dict[str, str] = {}
        if role == "front" and not self.front_id:
            updates["front_id"] = default_instance_id("front")
        if role == "worker" and not self.worker_id:
            updates["worker_id"] = default_instance_id("worker")
        return self.model_copy(update=updates) if updates else self


# LIVEGATE_* names that are not Settings fields: the emulator's own settings, and the example callers'
OTHER_ENV_PREFIXES = ("LIVEGATE_EMULATOR_",)
OTHER_ENV_NAMES = frozenset({"LIVEGATE_TARGET", "LIVEGATE_MODEL", "LIVEGATE_DEADLINE_S"})


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """One line per ``LIVEGATE_*`` variable that configures nothing (a typo is otherwise silently ignored),
    naming the closest setting."""
    known = {"LIVEGATE_" + name.upper() for name in Settings.model_fields}
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if (not upper.startswith("LIVEGATE_") or upper in known or upper in OTHER_ENV_NAMES
                or upper.startswith(OTHER_ENV_PREFIXES)):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else " (the settings are the fields of livegate/settings.py)"
        lines.append(f"{name} is not a livegate setting and is ignored{hint}")
    return lines
