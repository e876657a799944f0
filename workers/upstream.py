"""The upstream Live API connection: URL per flavour, credentials, TLS, and the WebSocket itself."""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
import time
from typing import Protocol

import google.auth.exceptions
import grpc
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from livegate import metrics
from livegate.errors import GatewayError
from livegate.routes import UpstreamRoute
from livegate.settings import Settings
from workers.events import UpstreamClosed

logger = logging.getLogger(__name__)

GEMINI_PATH = "/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"
VERTEX_PATH = "/ws/google.cloud.aiplatform.{version}.LlmBidiService/BidiGenerateContent"


def upstream_url(route: UpstreamRoute) -> str:
    base = route.url
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    if route.flavour == "gemini":
        return base + GEMINI_PATH.format(version=route.api_version or "v1beta")
    return base + VERTEX_PATH.format(version=route.api_version or "v1beta1")


def ssl_context(route: UpstreamRoute) -> ssl.SSLContext | None:
    if not route.url.startswith(("https://", "wss://")):
        return None
    ctx = ssl.create_default_context()
    if route.ca_file:
        try:
            ctx.load_verify_locations(route.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"upstream route {route.name!r}: cannot load the CA file {route.ca_file!r} ({exc}); "
                             "fix LIVEGATE_UPSTREAM_CA_FILE or the route's ca_file") from None
    return ctx


class Credentials(Protocol):
    """Produces the auth headers of one upstream connection (refreshing tokens as needed)."""

    async def headers(self) -> dict[str, str]: ...


class ApiKeyCredentials:
    def __init__(self, key: str) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "<ApiKeyCredentials>"

    async def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._key}


class GoogleCredentials:
    """Vertex AI via google-auth: a service-account file or application-default credentials; the token is
    refreshed (in a thread, off the event loop) before it expires."""

    SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)

    def __init__(self, credentials_file: str = "", refresh_margin_s: float = 300.0) -> None:
        self._file = credentials_file
        self._margin = refresh_margin_s
        self._creds: object | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<GoogleCredentials file={self._file or 'ADC'}>"

    def _load(self) -> object:
        import google.auth
        from google.oauth2 import service_account

        if self._file:
            return service_account.Credentials.from_service_account_file(self._file, scopes=self.SCOPES)
        creds, _ = google.auth.default(scopes=self.SCOPES)
        return creds

    def _needs_refresh(self) -> bool:
        creds = self._creds
        token = getattr(creds, "token", None)
        expiry = getattr(creds, "expiry", None)
        if not token:
            return True
        if expiry is None:
            return False
        # google-auth keeps expiry as a naive UTC datetime
        return expiry.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time() < self._margin

    async def headers(self) -> dict[str, str]:
        async with self._lock:
            if self._creds is None:
                self._creds = await asyncio.to_thread(self._load)
            if self._needs_refresh():
                import google.auth.transport.requests

                await asyncio.to_thread(self._creds.refresh, google.auth.transport.requests.Request())  # type: ignore[attr-defined]
        headers = {"Authorization": f"Bearer {self._creds.token}"}  # type: ignore[attr-defined]
        quota_project = getattr(self._creds, "quota_project_id", None)
        if quota_project:
            headers["x-goog-user-project"] = quota_project
        return headers


def credentials_for(route: UpstreamRoute) -> Credentials:
    """An API key (Gemini API, Vertex express mode, the emulator), else google-auth (Vertex)."""
    if route.flavour == "gemini" or route.api_key:
        return ApiKeyCredentials(route.api_key)
    return GoogleCredentials(route.google_credentials_file)


class Upstreams:
    """A worker's way to its upstreams: per route, its credentials and TLS context (the trust store, a CA
    file), made once. ``prepare`` them at start, so the first session does not wait and a bad CA file stops
    the worker there."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._parts: dict[str, tuple[Credentials, ssl.SSLContext | None]] = {}

    def prepare(self, route: UpstreamRoute) -> tuple[Credentials, ssl.SSLContext | None]:
        parts = self._parts.get(route.name)
        if parts is None:
            parts = self._parts[route.name] = (credentials_for(route), ssl_context(route))
        return parts

    async def open(self, route: UpstreamRoute) -> ClientConnection:
        """A new WebSocket to ``route`` (counted in ``livegate_upstream_connects_total``). Refused credentials
        end the session (``UPSTREAM_AUTH``); an unreachable token endpoint is retried like a failed connect
        (``UpstreamClosed``); a failed connect raises OSError or a websockets error."""
        credentials, ctx = self.prepare(route)
        connects = metrics.UPSTREAM_CONNECTS
        try:
            ws = await open_upstream(self._settings, route, credentials, ssl_ctx=ctx)
        except google.auth.exceptions.RefreshError as exc:  # the credentials were refused: not transient
            connects.labels(route.flavour, "error").inc()
            raise GatewayError(grpc.StatusCode.INTERNAL, "UPSTREAM_AUTH",
                               f"the gateway could not obtain upstream credentials ({type(exc).__name__}); "
                               "an operator must fix them") from None
        except google.auth.exceptions.TransportError:  # the token endpoint is unreachable: retried like a connect
            connects.labels(route.flavour, "error").inc()
            raise UpstreamClosed(None, "token endpoint unreachable") from None
        except Exception:
            connects.labels(route.flavour, "error").inc()
            raise
        connects.labels(route.flavour, "ok").inc()
        return ws


async def close_bounded(ws: ClientConnection, code: int) -> None:
    """Close ``ws`` with ``code``, bounded: a stalled peer that does not answer the close handshake is aborted,
    so a resume that follows is not refused as 'still open'."""
    try:
        async with asyncio.timeout(2.0):  # not wait_for: on 3.11 it can swallow the caller's cancellation
            await ws.close(code)
    except (TimeoutError, OSError, ConnectionClosed):
        pass
    if ws.transport is not None and not ws.transport.is_closing():
        ws.transport.abort()


async def open_upstream(settings: Settings, route: UpstreamRoute, credentials: Credentials, *,
                        ssl_ctx: ssl.SSLContext | None = None) -> ClientConnection:
    """Open the WebSocket to ``route`` (no setup sent yet). Raises OSError / websockets errors on failure."""
    headers = await credentials.headers()
    headers["Content-Type"] = "application/json"
    target = upstream_url(route)
    return await websockets.connect(
        target,
        additional_headers=headers,
        ssl=ssl_ctx if target.startswith("wss://") else None,
        open_timeout=settings.upstream_connect_timeout_s,
        ping_interval=settings.upstream_ping_interval_s,
        ping_timeout=settings.upstream_ping_timeout_s,
        max_size=settings.upstream_max_frame_bytes,
        compression=None,
        close_timeout=1.0,
        proxy=None,
    )
