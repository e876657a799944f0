"""What flows into and out of a session relay: inbox items, the outcomes that end or move a relay, and the
helpers that read an upstream close or count its token usage."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import orjson
import websockets.exceptions
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from livegate import logs, metrics
from livegate.errors import GatewayError
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import live_pb2 as live

logger = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class InboxItem:
    kind: str  # msg | sync | close | admin_close | detach | attach | grace_expired
    index: int
    payload: bytes = b""
    t_ns: int = 0


class SessionLost(Exception):
    """Another worker owns this session now (fenced write refused)."""


class SessionHandedOver(Exception):
    """The session continues on another worker (drain)."""


class ClientClosed(Exception):
    """The caller (or an admin) asked to close the session."""


class UpstreamClosed(Exception):
    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"upstream closed {code} {reason!r}")
        self.code = code
        self.reason = reason


class GoAwayReceived(Exception):
    pass


class Migrate(Exception):
    """This worker is draining: hand the session to another worker (planned, not a crash)."""


def live_modality_name(value: int) -> str:
    try:
        return live.ModalityTokenCount.DESCRIPTOR.fields_by_name["modality"].enum_type.values_by_number[value].name
    except KeyError:
        return "MODALITY_UNSPECIFIED"


def count_tokens(model: str, tenant_label: str, usage: live.UsageMetadata) -> None:
    """An upstream ``usage_metadata``, per direction and modality, into ``livegate_tokens_total``."""
    for direction, field in (("prompt", "prompt_tokens_details"), ("response", "response_tokens_details")):
        for d in getattr(usage, field):
            metrics.TOKENS.labels(model, tenant_label, direction,
                                  live_modality_name(d.modality).lower()).inc(d.token_count)


def starts_turn(msg: gw.ClientMessage) -> bool:
    """A client message after which the upstream owes a reply (so its silence is a stall)."""
    kind = msg.WhichOneof("message")
    if kind == "client_content":
        return msg.client_content.turn_complete
    if kind == "tool_response":
        return True
    if kind == "realtime_input":
        ri = msg.realtime_input
        return bool(ri.text) or ri.HasField("activity_end") or ri.audio_stream_end
    return False


async def stop_tasks(tasks: list[asyncio.Task[None]], ws: ClientConnection, sid: str) -> None:
    """Cancel the relay tasks, bounded: a task that does not stop within a second (a library swallowed the
    cancellation) is unblocked by aborting the upstream socket."""
    for t in tasks:
        t.cancel()
    _, pending = await asyncio.wait(tasks, timeout=1.0)
    if pending:
        logger.error("session %s: relay tasks ignored cancellation; aborting the upstream socket", sid,
                     extra=logs.fields(session=sid))
        if ws.transport is not None:
            ws.transport.abort()
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=1.0)


def close_info(exc: BaseException) -> tuple[int | None, str | None]:
    """(close code, reason) the upstream sent, from any connect/recv failure (None: no close frame)."""
    if isinstance(exc, UpstreamClosed):
        return exc.code, exc.reason
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        return exc.rcvd.code, exc.rcvd.reason
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        status = exc.response.status_code
        return (1008 if status in (401, 403, 404) else 1011), f"HTTP {status} at upgrade"
    return None, None


def end_fields(error: GatewayError | None) -> dict[str, bytes | str | int]:
    """The outbox entry that tells the front how the session ended."""
    if error is None:
        return {"k": "end", "c": 0}
    return {"k": "end", "c": error.code.value[0], "e": orjson.dumps({
        "reason": error.reason, "message": error.message, "retryable": error.retryable,
        "retry_after_s": error.retry_after_s, "upstream_close_code": error.upstream_close_code,
        "upstream_close_reason": error.upstream_close_reason})}
