"""The seam between a caller's transport and the front's session machinery.

``LiveGatewayServicer.serve`` (service/servicer.py) and the ``FrontSession`` pumps (service/session.py) drive one
caller's stream through a :class:`Caller`, whatever its protocol: a gRPC ``Connect`` call (:class:`GrpcCaller`,
here) or a Live API WebSocket (``service/ws/caller.py``). So admission, takeover, reattach and resumption,
backpressure, metrics and logs are one implementation for both.

A caller reads ``(raw, parsed)`` client messages (``raw``: the serialized ``livegate.v1.ClientMessage`` that goes
to the session's log; ``parsed``: None if it did not parse) and ``grpc.aio.EOF`` when the caller has no more to
send; it writes ``livegate.v1.ServerMessage`` objects or their serialized bytes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from livegate.errors import GatewayError
from livegate.v1 import gateway_pb2 as gw
from service.status import to_status

if TYPE_CHECKING:
    from service.auth import Authenticator

# How long a refused call waits for the caller's first message before sending the refusal.
REFUSAL_READ_S = 1.0


class Caller(Protocol):
    protocol: str  # the `protocol` label of the session metrics: grpc | websocket

    def tenant(self, auth: Authenticator) -> str:
        """The caller's tenant from the credentials it presented, or raise GatewayError(UNAUTHENTICATED)."""
        ...

    async def read(self) -> Any:
        """The next ``(raw, parsed)`` client message, or ``grpc.aio.EOF``."""
        ...

    async def write(self, message: bytes | gw.ServerMessage) -> None:
        ...

    def cancelled(self) -> bool:
        """The caller is gone without ending its stream (its session is kept for a reattach or a resume)."""
        ...

    def time_remaining(self) -> float | None:
        ...

    async def refuse(self, err: GatewayError) -> None:
        """End a stream that has no session, with ``err``. Takes the caller's first message first if it has
        not been read (bounded): a caller whose first write races the refusal would otherwise see a transport
        error instead of the refusal."""
        ...

    async def abort(self, err: GatewayError) -> None:
        """End the stream of a session with ``err``."""
        ...


class GrpcCaller:
    """A ``LiveGateway.Connect`` call."""

    protocol = "grpc"

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.context = context
        self._read_any = False

    def __repr__(self) -> str:
        return f"<GrpcCaller read={self._read_any} cancelled={self.context.cancelled()}>"

    def tenant(self, auth: Authenticator) -> str:
        return auth.tenant(self.context)

    async def read(self) -> Any:
        self._read_any = True
        return await self.context.read()

    async def write(self, message: bytes | gw.ServerMessage) -> None:
        await self.context.write(message)

    def cancelled(self) -> bool:
        return bool(self.context.cancelled())

    def time_remaining(self) -> float | None:
        remaining = self.context.time_remaining()
        return None if remaining is None else float(remaining)

    async def refuse(self, err: GatewayError) -> None:
        if not self._read_any:
            await self._take_first_message()
        # gRPC core ends a call aborted before its initial metadata with INTERNAL if the caller is still
        # streaming requests: send the (empty) initial metadata first so the caller gets this status
        await self.context.send_initial_metadata(())
        await self.context.abort_with_status(to_status(err))

    async def abort(self, err: GatewayError) -> None:
        await self.context.abort_with_status(to_status(err))

    async def _take_first_message(self) -> None:
        """A grpc-python caller whose first write races the refusal otherwise reports INTERNAL ("Internal error
        from Core": its failed send overrides the status it has not read yet) instead of the refusal: about 1
        refusal in 1,000 under load. Best effort: whatever the read does, the refusal follows."""
        try:
            async with asyncio.timeout(REFUSAL_READ_S):
                await self.context.read()
        except Exception:  # the caller sent nothing in time, or the call is already gone
            pass
