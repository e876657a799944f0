"""GatewayError -> gRPC status with google.rpc details (ErrorInfo, RetryInfo), or -> a Live API WebSocket close.
The only place that does either."""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from livegate.errors import GatewayError

DOMAIN = "livegate.dev"
MAX_MESSAGE_CHARS = 1000


def to_status(err: GatewayError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN)
    if err.upstream_close_code is not None:
        info.metadata["upstream_close_code"] = str(err.upstream_close_code)
    if err.upstream_close_reason:
        info.metadata["upstream_close_reason"] = err.upstream_close_reason
    info.metadata["retryable"] = "true" if err.retryable else "false"
    details = [info]
    if err.retryable and err.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(err.retry_after_s * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    # the message travels twice in the trailers (grpc-message and the details): bounded, so no error can
    # outgrow a caller's metadata limit (8 KiB by default) and arrive as RESOURCE_EXHAUSTED instead
    message = err.message if len(err.message) <= MAX_MESSAGE_CHARS else err.message[:MAX_MESSAGE_CHARS - 1] + "…"
    status = status_pb2.Status(code=err.code.value[0], message=message)
    for d in details:
        status.details.add().Pack(d)
    return rpc_status.to_status(status)


# The Live API's own close codes (what google-genai raises as APIError.code): 1007 for what the caller must fix
# in its request or credential, 1008 for what it is not allowed or what does not exist, 1011 for the rest
# (unavailable, quota, internal: retrying may help).
_CLOSE_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: 1007,
    grpc.StatusCode.UNAUTHENTICATED: 1007,
    grpc.StatusCode.OUT_OF_RANGE: 1007,
    grpc.StatusCode.NOT_FOUND: 1008,
    grpc.StatusCode.PERMISSION_DENIED: 1008,
    grpc.StatusCode.FAILED_PRECONDITION: 1008,
}
MAX_CLOSE_REASON_BYTES = 123  # a close frame's reason (RFC 6455 5.5.1)


def to_close(err: GatewayError) -> tuple[int, str]:
    """GatewayError -> a Live API WebSocket close: (code, "<ErrorInfo reason>: <message>") with the reason cut
    to what a close frame can carry (123 UTF-8 bytes, never mid-character)."""
    code = _CLOSE_CODES.get(err.code, 1011)
    text = f"{err.reason}: {err.message}".encode()[:MAX_CLOSE_REASON_BYTES]
    return code, text.decode("utf-8", errors="ignore")


def code_from_int(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


__all__ = ["to_status", "to_close", "code_from_int", "code_pb2"]
