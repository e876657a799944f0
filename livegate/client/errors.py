"""The client's errors: google-genai's ``APIError`` family, carrying the gRPC status behind them.

google-genai raises ``google.genai.errors.APIError`` for a Live session the server refused or ended, with the
WebSocket close code as ``code`` (1007 invalid argument or credential, 1008 unknown model or policy, 1011
unavailable, quota or internal). livegate's client raises subclasses of that same class, so a ported
``except APIError`` catches them, with the close code the Live API would have used (the upstream's own close
code when the gateway passes one on) and the gRPC status, ``google.rpc.ErrorInfo`` and ``RetryInfo`` as
attributes. Without google-genai installed, a fallback hierarchy with the same names stands in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

try:  # optional: the very classes google-genai raises
    from google.genai.errors import APIError, ClientError, ServerError
except ImportError:  # `pip install livegate` without the `client` extra

    class APIError(Exception):  # type: ignore[no-redef]
        """Stands in for ``google.genai.errors.APIError``: same constructor and attributes."""

        def __init__(self, code: int, response_json: Any, response: Any = None) -> None:
            body = response_json if isinstance(response_json, dict) else {}
            self.response = response
            self.details = response_json
            self.message = body.get("message")
            self.status = body.get("status")
            self.code = code if code else body.get("code")
            super().__init__(f"{self.code} {self.status}. {self.details}")

    class ClientError(APIError):  # type: ignore[no-redef]
        """Stands in for ``google.genai.errors.ClientError``."""

    class ServerError(APIError):  # type: ignore[no-redef]
        """Stands in for ``google.genai.errors.ServerError``."""


DOMAIN = "livegate.dev"
ABNORMAL_CLOSURE = 1006  # what google-genai reports when the connection dropped without a close frame

# gRPC status -> the WebSocket close code the Live API uses for that kind of refusal
_CLOSE_CODES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 1007,
    grpc.StatusCode.UNAUTHENTICATED: 1007,  # "API key not valid. Please pass a valid API key."
    grpc.StatusCode.OUT_OF_RANGE: 1007,
    grpc.StatusCode.NOT_FOUND: 1008,  # "models/X is not found for API version v1beta..."
    grpc.StatusCode.PERMISSION_DENIED: 1008,
    grpc.StatusCode.FAILED_PRECONDITION: 1008,  # "Operation is not implemented, or supported, or enabled."
    grpc.StatusCode.UNIMPLEMENTED: 1008,
    grpc.StatusCode.ALREADY_EXISTS: 1008,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 1011,  # "You exceeded your current quota..."
    grpc.StatusCode.UNAVAILABLE: 1011,  # "The service is currently unavailable."
    grpc.StatusCode.INTERNAL: 1011,
    grpc.StatusCode.UNKNOWN: 1011,
    grpc.StatusCode.DATA_LOSS: 1011,
    grpc.StatusCode.ABORTED: 1011,
    grpc.StatusCode.DEADLINE_EXCEEDED: 1011,  # "Deadline expired before operation could complete."
    grpc.StatusCode.CANCELLED: ABNORMAL_CLOSURE,
}


class LiveAPIError(APIError, grpc.RpcError):
    """A Live session refused or ended by the gateway (or the upstream behind it).

    google-genai's attributes: ``code`` (the Live API's WebSocket close code), ``status`` (the gRPC status name,
    e.g. ``"NOT_FOUND"``), ``message`` (what happened, for a person), ``details`` (all of it as a dict).
    livegate's: ``grpc_status`` (``grpc.StatusCode``), ``reason`` / ``domain`` / ``error_metadata``
    (``google.rpc.ErrorInfo``; empty without one), ``retryable``, ``retry_delay_s`` (``RetryInfo``, or None) and
    ``rpc_error``, the ``grpc.aio.AioRpcError`` itself (also ``__cause__``)."""

    grpc_status: grpc.StatusCode
    reason: str
    domain: str
    error_metadata: dict[str, str]
    retryable: bool
    retry_delay_s: float | None
    rpc_error: grpc.aio.AioRpcError | None

    def __str__(self) -> str:
        why = f" (reason {self.reason})" if self.reason else ""
        return f"{self.code} {self.status}. {self.message}{why}"


class LiveClientError(LiveAPIError, ClientError):
    """The caller's request was refused (close 1007 / 1008: bad argument, credential, model or policy)."""


class LiveServerError(LiveAPIError, ServerError):
    """The service could not serve the session (close 1011 or a dropped connection); retrying may help."""


def from_rpc_error(err: grpc.aio.AioRpcError) -> LiveAPIError:
    """The APIError for a gRPC status that ended a Live stream."""
    status = err.code()
    info = error_details_pb2.ErrorInfo()
    retry_delay_s: float | None = None
    try:
        rich = rpc_status.from_call(err)
    except ValueError:  # a status whose details do not match: treat as plain
        rich = None
    for detail in rich.details if rich is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay_s = retry.retry_delay.ToTimedelta().total_seconds()
    metadata = dict(info.metadata)
    upstream = metadata.get("upstream_close_code", "")
    if upstream.isdigit():
        code = int(upstream)
    elif not info.reason and status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN):
        code = ABNORMAL_CLOSURE  # the connection broke; no one decided a status
    else:
        code = _CLOSE_CODES.get(status, 1011)
    message = err.details() or status.name
    body: dict[str, Any] = {"code": code, "message": message, "status": status.name}
    if info.reason:
        body["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": info.reason,
                            "domain": info.domain, "metadata": metadata}]
    cls = LiveClientError if code in (1007, 1008) else LiveServerError
    out = cls(code, body, None)
    out.grpc_status = status
    out.reason = info.reason
    out.domain = info.domain
    out.error_metadata = metadata
    out.retryable = metadata.get("retryable") == "true" or retry_delay_s is not None
    out.retry_delay_s = retry_delay_s
    out.rpc_error = err
    return out


@contextlib.contextmanager
def api_errors() -> Iterator[None]:
    """Raise a gRPC status ending the stream as the APIError google-genai would raise."""
    try:
        yield
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from err
