"""One Live API WebSocket as a :class:`service.caller.Caller`: what a gRPC ``Connect`` call is to the front.

- credentials where Live clients put them: ``x-goog-api-key`` or ``?key=`` (a caller key), ``Authorization:
  Bearer`` or ``?access_token=`` (an OIDC ID token, or a caller key), ``Authorization: Token`` (google-genai's
  form for an ``auth_tokens/`` key: a caller key here), the verified TLS client certificate (mTLS);
- a client's close frame is its half-close (the session ends); a connection lost without one is a broken
  stream (the session is detached for its grace, for a resume with its handle);
- a refusal or an error is a close with the Live API's code (``service.status.to_close``).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import grpc
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from livegate.errors import GatewayError, invalid_argument
from livegate.settings import Settings
from livegate.v1 import gateway_pb2 as gw
from service.auth import presented
from service.caller import REFUSAL_READ_S
from service.status import to_close
from service.ws.wire import Route, client_message, server_frame

if TYPE_CHECKING:
    from service.auth import Authenticator


def credential(path: str, headers: Any) -> tuple[str, str]:
    """(kind, value) of the credential on the upgrade request: ``api_key``, ``bearer`` or ``none``."""
    scheme, _, value = (headers.get("Authorization") or "").strip().partition(" ")
    value = value.strip()
    if value and scheme.lower() == "bearer":
        return "bearer", value
    if value and scheme.lower() == "token":
        return "api_key", value
    query = parse_qs(urlsplit(path).query)
    if query.get("access_token", [""])[0]:
        return "bearer", query["access_token"][0]
    key = (headers.get("x-goog-api-key") or "").strip() or query.get("key", [""])[0]
    return ("api_key", key) if key else ("none", "")


class WsCaller:
    protocol = "websocket"

    def __init__(self, ws: ServerConnection, route: Route, settings: Settings) -> None:
        self.ws = ws
        self.route = route
        self.settings = settings
        self.sid = ""  # the gateway session id, once the session exists (Vertex: setupComplete.sessionId)
        self._read_any = False

    def __repr__(self) -> str:
        return f"<WsCaller {self.route.flavour} session={self.sid or '-'} state={self.ws.state.name}>"

    def tenant(self, auth: Authenticator) -> str:
        assert self.ws.request is not None
        kind, value = credential(self.ws.request.path, self.ws.request.headers)
        cert: dict[str, Any] | None = None
        pem = ""
        tls = self.ws.transport.get_extra_info("ssl_object") if self.ws.transport else None
        if tls is not None and tls.getpeercert():
            cert = tls.getpeercert()
            der = tls.getpeercert(binary_form=True)
            pem = ssl.DER_cert_to_PEM_cert(der) if der else ""
        return auth.tenant(presented(kind, value, cert, pem))  # type: ignore[arg-type]

    async def read(self) -> Any:
        self._read_any = True
        try:
            frame = await self.ws.recv()
        except ConnectionClosed:  # a close frame (the end) or a lost connection (cancelled() tells)
            return grpc.aio.EOF
        msg = client_message(frame)
        raw = msg.SerializeToString()
        limit = self.settings.max_message_bytes
        if len(raw) > limit:
            raise invalid_argument(f"a client message of {len(raw)} bytes (decoded) is larger than the {limit} "
                                   "bytes this gateway takes in one message; send smaller chunks",
                                   "MESSAGE_TOO_LARGE")
        return raw, msg

    async def write(self, message: bytes | gw.ServerMessage) -> None:
        msg = message if isinstance(message, gw.ServerMessage) else gw.ServerMessage.FromString(message)
        if msg.HasField("session"):
            self.sid = msg.session.session_id
        frame = server_frame(msg, self.route.flavour, self.sid, self.settings.front_grace_s)
        if frame is None:
            return
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            pass  # the caller closed (its session ends) or is gone (detached): the handler decides, not a write

    def cancelled(self) -> bool:
        """The connection is gone without the caller's close frame: a broken stream, not an end."""
        return self.ws.state is State.CLOSED and self.ws.protocol.close_rcvd is None

    def time_remaining(self) -> float | None:
        return None

    async def refuse(self, err: GatewayError) -> None:
        if not self._read_any:  # the Live API answers a refused credential after the setup, as here
            try:
                async with asyncio.timeout(REFUSAL_READ_S):
                    await self.ws.recv()
            except Exception:  # nothing in time, or the connection is gone: the close follows anyway
                pass
        await self.abort(err)

    async def abort(self, err: GatewayError) -> None:
        code, reason = to_close(err)
        await self.ws.close(code, reason)
