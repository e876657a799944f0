"""EmulatorServer: the TLS WebSocket listener, routing, shared state (conversations, handles, quota,
faults, speech) and the admin endpoints on the same port."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from . import admin, auth, routes, tls
from .auth import Credential
from .config import EmulatorConfig
from .conversation import Conversation
from .deflate import SelectiveDeflateFactory
from .faults import FaultBook, parse_rule
from .limits import UNAUTHENTICATED_MAX_BYTES
from .redact import RedactingLogger
from .resumption import HandleStore
from .session import Session
from .speaking import ChunkCache
from .speech import Synthesizer
from .tools import MemoryCorpora
from .transcribe import Transcriber

logger = logging.getLogger(__name__)


class EmulatorServer:
    """A local Gemini Live API. `await start()`, use `.url` / `.cert_path`, `await aclose()`."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.faults = FaultBook()
        self.handles = HandleStore(self.config.handle_ttl_gemini_s, self.config.handle_ttl_vertex_s)
        self.memory = MemoryCorpora()
        self.cert_path: str | None = None
        self.key_path: str | None = None
        self._conversations: dict[str, Conversation] = {}
        self._sessions: set[Session] = set()
        self._quota: dict[str, int] = {}
        self._server: Server | None = None
        self._closed = False
        self.synthesizer: Synthesizer | None = None
        self.transcriber: Transcriber = None  # type: ignore[assignment]
        self.chunks: ChunkCache = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EmulatorServer({self.url if self._server else 'not started'}, sessions={len(self._sessions)})"

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Binds the port (idempotent). Creates the self-signed certificate on first use."""
        if self._server is not None:
            return
        cfg = self.config
        ssl_ctx = None
        if cfg.tls:
            if cfg.cert_path and cfg.key_path:
                cert, key = cfg.cert_path, cfg.key_path
            else:
                cert, key = await asyncio.to_thread(tls.ensure_self_signed, cfg.cert_dir)
            self.cert_path, self.key_path = cert, key
            ssl_ctx = tls.server_context(cert, key)
        self.synthesizer = Synthesizer(cfg.speech_engine)
        self.transcriber = Transcriber(cfg.transcribe_engine)
        self.chunks = ChunkCache(self.synthesizer)
        if cfg.faults_file:
            for spec in admin.load_scenario(cfg.faults_file):
                self.faults.add(parse_rule(spec))
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            ssl=ssl_ctx,
            process_request=self._process_request,
            max_size=cfg.max_message_bytes * 2 + (1 << 20),  # beyond that websockets closes 1009
            compression=None,
            extensions=[SelectiveDeflateFactory()] if cfg.deflate else None,
            ping_interval=None,  # the real service does not ping; clients do
            close_timeout=2,
            logger=RedactingLogger(logging.getLogger("websockets.server")),  # DEBUG logs every header
        )
        logger.info("Live API emulator listening on %s", self.url)

    async def aclose(self) -> None:
        """Closes every session (1001 going away) and the listener (idempotent)."""
        if self._server is None or self._closed:
            return
        self._closed = True
        self._server.close(close_connections=True)
        try:
            await asyncio.wait_for(self._server.wait_closed(), timeout=5)
        except TimeoutError:
            logger.warning("emulator: sessions did not close within 5 s")
        if self.chunks is not None:
            await self.chunks.aclose()

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL for SDK http_options (https:// with TLS, http:// without)."""
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"{'https' if self.config.tls else 'http'}://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("https://", "wss://").replace("http://", "ws://")

    def gemini_url(self, version: str = "v1beta", constrained: bool = False) -> str:
        return self.ws_url + routes.gemini_path(version, constrained)

    def vertex_url(self, version: str = "v1beta1") -> str:
        return self.ws_url + routes.vertex_path(version)

    # --- observability --------------------------------------------------------------------------

    @property
    def conversations(self) -> list[dict[str, Any]]:
        """Every conversation (a session and its resumptions), as GET /emulator/v1/conversations."""
        return self.list_conversations()

    def list_conversations(self, include_messages: bool = True) -> list[dict[str, Any]]:
        return [c.snapshot(include_messages) for c in self._conversations.values()]

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        conv = self._conversations.get(conversation_id)
        return conv.snapshot() if conv else None

    def clear_conversations(self) -> int:
        """Forgets closed conversations (open ones stay); returns how many were dropped."""
        dropped = [k for k, c in self._conversations.items() if not c.is_open]
        for k in dropped:
            del self._conversations[k]
        return len(dropped)

    @property
    def sessions(self) -> list[dict[str, Any]]:
        return [
            {"session_id": s.id, "conversation_id": s.conv.id if s.conv else None, "flavour": s.flavour,
             "index": s.index}
            for s in self._sessions
        ]

    def register(self, conv: Conversation) -> None:
        self._conversations[conv.id] = conv
        closed = [k for k, c in self._conversations.items() if not c.is_open and c is not conv]
        for k in closed[: max(0, len(closed) - self.config.max_closed_conversations)]:
            del self._conversations[k]  # oldest closed ones first (dicts keep insertion order)

    def forget(self, session: Session) -> None:
        self._sessions.discard(session)

    # --- credentials and quota ------------------------------------------------------------------

    def check_credential(self, credential: Credential) -> tuple[int, str] | None:
        return auth.check(self.config, credential)

    def quota_acquire(self, credential: Credential) -> bool:
        cap = self.config.max_sessions_per_credential
        key = credential.quota_key
        if cap and self._quota.get(key, 0) >= cap:
            return False
        self._quota[key] = self._quota.get(key, 0) + 1
        return True

    def quota_release(self, credential: Credential) -> None:
        key = credential.quota_key
        self._quota[key] = max(0, self._quota.get(key, 0) - 1)

    # --- connections ----------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path
        if path.startswith(routes.ADMIN_PREFIX) or path.rstrip("/") == routes.ADMIN_PREFIX.rstrip("/"):
            return admin.authorize(self.config, connection, request) or admin.handle(self, connection, request)
        route = routes.match(path)
        if route is None:
            return connection.respond(404, "Not Found\n")
        credential = auth.extract(path, request.headers)
        if self.check_credential(credential) is not None:
            # the session still reads its setup to close with the credential error, like the real service;
            # websockets refuses a bigger frame from its header, so this peer never makes us buffer one
            connection.protocol.max_message_size = UNAUTHENTICATED_MAX_BYTES
        connection.livegate_route = route  # type: ignore[attr-defined]
        connection.livegate_credential = credential  # type: ignore[attr-defined]
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        session = Session(self, ws, ws.livegate_route, ws.livegate_credential)  # type: ignore[attr-defined]
        self._sessions.add(session)
        await session.run()
