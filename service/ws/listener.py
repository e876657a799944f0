"""The front's Live API WebSocket listener (``Settings.ws_listen``), in the front's process and event loop.

Each connection on a Live API path runs ``LiveGatewayServicer.serve`` (the code of a gRPC ``Connect``) through
a :class:`~service.ws.caller.WsCaller`, as a task listed in ``front.calls`` like a gRPC handler. A connection
lost without a close frame cancels that task, as gRPC cancels a broken call's handler: the session is detached
for its grace. Lifecycle: ``bind()``, then ``start()`` accepts; ``aclose(grace_s)`` stops accepting, lets the sessions' callers
leave within the grace (``Front.drain`` sent them a ``goAway``), then cancels the rest (their sessions are
detached, for a resume through another front) and closes their connections with 1001.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from livegate.cleanups import wait_bounded
from service import tls
from service.servicer import LiveGatewayServicer
from service.ws.caller import WsCaller
from service.ws.wire import route_of

if TYPE_CHECKING:
    from service.server import Front

logger = logging.getLogger(__name__)

PING_INTERVAL_S = 30.0  # a caller whose connection died unseen is detected (and detached) within ~60 s
CLOSE_TIMEOUT_S = 2.0


class WebSocketFront:
    def __init__(self, front: Front) -> None:
        self.front = front
        self.servicer = LiveGatewayServicer(front)
        self._server: Server | None = None
        self._tls = False
        self._serving: set[asyncio.Task[None]] = set()
        self.port = 0

    def __repr__(self) -> str:
        return f"<WebSocketFront {self.url or 'off'} connections={len(self._serving)}>"

    @property
    def url(self) -> str:
        """``ws://host:port`` (``wss://`` with TLS); empty when off. SDKs take it as their base URL."""
        if self._server is None:
            return ""
        host = self.front.settings.ws_listen.rpartition(":")[0] or "127.0.0.1"
        if host in ("0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"
        return f"{'wss' if self._tls else 'ws'}://{host}:{self.port}"

    async def bind(self) -> None:
        """Bind ``ws_listen`` (a busy port fails the front's start early); connections wait for :meth:`start`."""
        s = self.front.settings
        if self._server is not None or not s.ws_listen:
            return
        host, _, port = s.ws_listen.rpartition(":")
        ctx = tls.ssl_context(s)
        try:
            self._server = await serve(
                self._handle, host.strip("[]") or "127.0.0.1", int(port), ssl=ctx, process_request=self._route,
                max_size=2 * s.max_message_bytes + (1 << 20),  # JSON and base64 around the message's bytes
                compression=None, ping_interval=PING_INTERVAL_S, ping_timeout=PING_INTERVAL_S,
                close_timeout=CLOSE_TIMEOUT_S, server_header=None, start_serving=False)
        except OSError as exc:
            raise OSError(f"could not listen on {s.ws_listen} (LIVEGATE_WS_LISTEN): {exc.strerror}") from None
        self._tls = ctx is not None
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self._server is not None and not self._server.is_serving():
            await self._server.start_serving()
            logger.info("front %s: Live API WebSocket on %s", self.front.id, self.url)

    async def aclose(self, grace_s: float) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=False)  # no new connections; the open ones go on for now
        if self._serving:
            await asyncio.wait(self._serving, timeout=grace_s)
        for task in self._serving:
            task.cancel()  # detached, for a resume through another front; their handlers close with 1001
        await wait_bounded(self._serving, 5.0, f"front {self.front.id}: WebSocket sessions still running")
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S + 1):
                await server.wait_closed()
        except TimeoutError:
            logger.warning("front %s: WebSocket connections did not close in time", self.front.id)

    async def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        if route_of(request.path) is None:
            return connection.respond(404, "Not a Live API path: use /ws/google.ai.generativelanguage.v1beta."
                                           "GenerativeService.BidiGenerateContent (or the v1, v1alpha, Vertex "
                                           "LlmBidiService forms)\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        route = route_of(ws.request.path)
        assert route is not None
        caller = WsCaller(ws, route, self.front.settings)
        task = asyncio.create_task(self.servicer.serve(caller), name="ws-serve")
        self._serving.add(task)
        self.front.calls.add(task)  # the front's close waits for it, as for a gRPC handler
        closed = asyncio.create_task(ws.wait_closed())
        try:
            await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and caller.cancelled():
                task.cancel()  # lost without a close frame: as gRPC cancels a broken call's handler
            await asyncio.wait({task})
        finally:
            closed.cancel()
            self._serving.discard(task)
            self.front.calls.discard(task)
        if task.cancelled():  # the caller is gone, or this front stops (aclose): the session is detached
            await ws.close(1001, "GOING_AWAY: this front is shutting down; resume the session with its handle")
        elif task.exception() is not None:
            logger.error("WebSocket session of %r failed", caller, exc_info=task.exception())
            await ws.close(1011, "INTERNAL: the gateway failed; retry")
