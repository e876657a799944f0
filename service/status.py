"""GatewayError -> gRPC status with google.rpc details (ErrorInfo, RetryInfo). The only place that does it."""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from livegate.errors import GatewayError

DOMAIN = "livegate.dev"


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
    status = status_pb2.Status(code=err.code.value[0], message=err.message)
    for d in details:
        status.details.add().Pack(d)
    return rpc_status.to_status(status)


def code_from_int(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


__all__ = ["to_status", "code_from_int", "code_pb2"]
