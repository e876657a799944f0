"""The operations port of a front or worker: ``/metrics`` (Prometheus), ``/healthz`` (the process loop
answers), ``/readyz`` (the process can take work: a worker's heartbeat is fresh and it is not draining; a
front is SERVING). A few lines of asyncio HTTP, no threads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

logger = logging.getLogger(__name__)


class OpsServer:
    def __init__(self, listen: str, ready: Callable[[], bool]) -> None:
        self.listen = listen
        self._ready = ready
        self._server: asyncio.Server | None = None
        self.port = 0

    def __repr__(self) -> str:
        return f"<OpsServer {self.listen} port={self.port}>"

    async def start(self) -> None:
        if self._server is not None or not self.listen:
            return
        host, _, port = self.listen.rpartition(":")
        self._server = await asyncio.start_server(self._handle, host or "0.0.0.0", int(port))
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("ops endpoints on %s:%d (/metrics /healthz /readyz)", host, self.port)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
            path = request.split(b" ", 2)[1].split(b"?")[0] if request.count(b" ") >= 2 else b"/"
            if path == b"/metrics":
                status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
            elif path == b"/healthz":
                status, ctype, body = 200, "text/plain", b"ok\n"
            elif path == b"/readyz":
                ready = self._ready()
                status, ctype, body = (200 if ready else 503), "text/plain", (b"ready\n" if ready else b"not ready\n")
            else:
                status, ctype, body = 404, "text/plain", b"not found\n"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
