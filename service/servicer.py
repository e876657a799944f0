"""The LiveGateway service: Connect and the admin RPCs. GatewayError becomes a gRPC status here, only here.

``Connect`` is registered through a generic handler so that (1) each request arrives as
``(raw_bytes, parsed_or_None)``: the front validates the parsed message and forwards the caller's own bytes,
and garbage becomes a clear INVALID_ARGUMENT instead of a transport error; (2) responses may be
pre-serialized bytes (the worker serializes every server message once; the front forwards it untouched).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from livegate import logs, metrics
from livegate.errors import GatewayError, invalid_argument
from livegate.v1 import gateway_pb2 as gw
from service.caller import Caller, GrpcCaller
from service.session import reattached_elsewhere
from service.status import to_status

if TYPE_CHECKING:
    from service.server import Front

logger = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE_NAME = gw.DESCRIPTOR.services_by_name["LiveGateway"].full_name

# gRPC ends both a caller's half-close and its cancellation with an empty read; a cancellation's own notice
# (the handler task cancelled) can land a completion or two later. Before a half-close closes the session, it
# gets this long for that notice, so a broken stream is kept for a reattach instead of being closed.
HALF_CLOSE_SETTLE_S = 0.05


def _deserialize_client(raw: bytes) -> tuple[bytes, gw.ClientMessage | None]:
    try:
        return raw, gw.ClientMessage.FromString(raw)
    except DecodeError:
        return raw, None


def _serialize_server(msg: bytes | gw.ServerMessage) -> bytes:
    return msg if isinstance(msg, bytes) else msg.SerializeToString()


class LiveGatewayServicer:
    def __init__(self, front: Front) -> None:
        self.front = front

    def handler(self) -> grpc.GenericRpcHandler:
        unary = grpc.unary_unary_rpc_method_handler
        owned = self._owned
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            "Connect": grpc.stream_stream_rpc_method_handler(
                owned(self.Connect), request_deserializer=_deserialize_client, response_serializer=_serialize_server),
            "GetSession": unary(owned(self.GetSession), request_deserializer=gw.GetSessionRequest.FromString,
                                response_serializer=gw.Session.SerializeToString),
            "ListSessions": unary(owned(self.ListSessions), request_deserializer=gw.ListSessionsRequest.FromString,
                                  response_serializer=gw.ListSessionsResponse.SerializeToString),
            "CloseSession": unary(owned(self.CloseSession), request_deserializer=gw.CloseSessionRequest.FromString,
                                  response_serializer=gw.CloseSessionResponse.SerializeToString),
        })

    def _owned(self, method: Callable[[Any, grpc.aio.ServicerContext], Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        """The call's task is listed in ``front.calls``: grpc's ``Server.stop`` cancels the handlers but does not
        wait for them to unwind, and their ``finally`` blocks still write to Redis (a session's close or
        detach), so the front's close waits for them before it closes its connections."""
        calls = self.front.calls

        @functools.wraps(method)
        async def call(request: Any, context: grpc.aio.ServicerContext) -> T:
            task = asyncio.current_task()
            assert task is not None
            calls.add(task)
            try:
                return await method(request, context)
            finally:
                calls.discard(task)

        return call

    # -- Connect -----------------------------------------------------------------------------------

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await self.serve(GrpcCaller(context))

    async def serve(self, caller: Caller) -> None:
        """One caller's stream, whatever its protocol (gRPC ``Connect``, or the Live API WebSocket of
        service/ws/): authenticate, open or reattach the session, relay until it ends, end the stream."""
        front = self.front
        try:
            tenant = caller.tenant(front.auth)  # a refusal first takes the unread first message (Caller.refuse)
            logs.bind(tenant=tenant)  # this call's lines (and its tasks') carry the tenant, then the session
            first = await front.budgets.first_message(caller, tenant)  # within setup_timeout_s; pending capped
            if first is grpc.aio.EOF:
                return
            raw, msg = first
            if msg is None:
                raise invalid_argument("could not parse the first message as livegate.v1.ClientMessage",
                                       "MALFORMED_MESSAGE")
            kind = msg.WhichOneof("message")
            reattach = kind == "reattach"
            if reattach:
                session, token = await front.reattach_session(tenant, msg.reattach)
            elif kind == "setup":
                session, token = await front.open_session(tenant, msg, caller.time_remaining())
                metrics.session_started(session.model, tenant, caller.protocol)  # its ended rows at 0 too
            else:
                raise invalid_argument(f"the first message must be `setup` (or `reattach`), got `{kind or 'nothing'}`",
                                       "SETUP_REQUIRED")
        except GatewayError as err:
            await caller.refuse(err)
            return
        active = metrics.SESSIONS_ACTIVE.labels("front", "attached", session.model, metrics.tenant_label(tenant),
                                                caller.protocol)
        active.inc()
        outcome = "caller_lost"
        try:
            await caller.write(gw.ServerMessage(session=gw.SessionInfo(
                session_id=session.sid, reattach_token=token, client_index=session.index)))
            error = await self._relay(session, caller, reattach=reattach)
            outcome = "ok" if error is None else error.reason.lower()
        finally:
            active.dec()
            metrics.SESSIONS_ENDED.labels(session.model, metrics.tenant_label(tenant), outcome, caller.protocol).inc()
            if front.sessions.get(session.sid) is session:
                front.sessions.pop(session.sid, None)
            if not session.closed:  # the caller went away (broken stream): keep the session for a reattach
                front.caller_lost(session)
        if error is not None:
            await caller.abort(error)

    async def _relay(self, session: Any, context: Caller, *, reattach: bool) -> GatewayError | None:
        s = self.front.settings
        server_task = asyncio.create_task(session.pump_server(
            context, first_timeout_s=None if reattach and session.worker else s.setup_timeout_s, replay=reattach))
        client_task = asyncio.create_task(session.pump_client(context))
        try:
            done, _ = await asyncio.wait({server_task, client_task}, return_when=asyncio.FIRST_COMPLETED)
            if session.superseded:  # another stream took the session over: this one ends, the session goes on
                return reattached_elsewhere()
            if server_task in done:
                error = server_task.result()
                if error is not None and error.reason == "NO_WORKER":
                    session.closed = True
                    await self.front.cleanups.shielded(session.request_close(), f"close {session.sid}")
                # SLOW_READER: the caller is cut but the session is kept (detached) for a reattach
                return error
            exc = client_task.exception()
            if exc is None:  # an empty read: a half-close, or a cancellation whose notice is still on its way
                await asyncio.sleep(HALF_CLOSE_SETTLE_S)  # cancelled here: the caller is lost (finally: detach)
                if context.cancelled():
                    raise asyncio.CancelledError()  # the caller is lost (finally: detach)
            session.closed = True
            await self.front.cleanups.shielded(session.request_close(), f"close {session.sid}")
            if exc is not None:
                if isinstance(exc, GatewayError):
                    return exc
                raise exc
            # caller half-closed: wait (bounded) for the worker to end the upstream and confirm
            try:
                async with asyncio.timeout(s.close_timeout_s):  # not wait_for: on 3.11 it can swallow a cancel
                    return await asyncio.shield(server_task)
            except TimeoutError:
                return None
        finally:
            for t in (server_task, client_task):
                t.cancel()
            await asyncio.gather(server_task, client_task, return_exceptions=True)

    # -- admin -------------------------------------------------------------------------------------

    async def GetSession(self, request: gw.GetSessionRequest, context: grpc.aio.ServicerContext) -> gw.Session:
        try:
            return await self.front.session_view(self.front.auth.tenant(context), request.session_id)
        except GatewayError as err:
            await context.abort_with_status(to_status(err))
            raise  # unreachable: abort raises

    async def ListSessions(self, request: gw.ListSessionsRequest, context: grpc.aio.ServicerContext) -> gw.ListSessionsResponse:
        try:
            return await self.front.list_sessions(self.front.auth.tenant(context), request.page_size,
                                                  request.page_token)
        except GatewayError as err:
            await context.abort_with_status(to_status(err))
            raise

    async def CloseSession(self, request: gw.CloseSessionRequest, context: grpc.aio.ServicerContext) -> gw.CloseSessionResponse:
        try:
            view = await self.front.close_session(self.front.auth.tenant(context), request.session_id)
            return gw.CloseSessionResponse(session=view)
        except GatewayError as err:
            await context.abort_with_status(to_status(err))
            raise
