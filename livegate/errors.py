"""Typed errors, classified once.

Every failure livegate reports is a :class:`GatewayError` carrying a gRPC status code, a stable machine
reason (``ErrorInfo.reason``), whether retrying helps, and the upstream WebSocket close that caused it.
The servicer translates it to a gRPC status at the boundary; nothing else decides codes.

Upstream closes (the Live API's close codes and reason texts, docs/errors.md) are classified by :func:`classify_close` into "resume the upstream
transparently" or "end the session with this error".
"""

from __future__ import annotations

import dataclasses

import grpc


@dataclasses.dataclass(frozen=True)
class GatewayError(Exception):
    code: grpc.StatusCode
    reason: str  # stable, UPPER_SNAKE, e.g. "UPSTREAM_QUOTA_EXCEEDED"
    message: str  # for a person: what happened and what to do
    retryable: bool = False
    retry_after_s: float | None = None
    upstream_close_code: int | None = None
    upstream_close_reason: str | None = None

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"


ECHO_CHARS = 64


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """Caller input quoted in an error message, bounded: ``repr`` of its first ``limit`` characters, with an
    ellipsis and the full length when cut. Every message that echoes what a caller sent goes through here, so
    no input can make an error larger than the status it travels in (gRPC metadata is bounded)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


def invalid_argument(message: str, reason: str) -> GatewayError:
    return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, reason, message)


def not_found(message: str, reason: str) -> GatewayError:
    return GatewayError(grpc.StatusCode.NOT_FOUND, reason, message)


def unavailable(message: str, reason: str, retry_after_s: float = 1.0) -> GatewayError:
    return GatewayError(grpc.StatusCode.UNAVAILABLE, reason, message, retryable=True, retry_after_s=retry_after_s)


@dataclasses.dataclass(frozen=True)
class CloseDecision:
    """What a worker does about an upstream close: resume transparently, or end with ``error``."""

    resume: bool
    error: GatewayError | None = None


# (code, substring of the reason) -> classification. First match wins; order matters.
_END_RULES: list[tuple[int, str, grpc.StatusCode, str, str, bool]] = [
    (1011, "exceeded your current quota", grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_QUOTA_EXCEEDED",
     "the upstream project's Live API quota is exhausted; retry later or raise the quota", True),
    (1007, "api key not valid", grpc.StatusCode.INTERNAL, "UPSTREAM_AUTH",
     "the gateway's upstream credentials were rejected; an operator must fix them", False),
    (1008, "invalid authentication credentials", grpc.StatusCode.INTERNAL, "UPSTREAM_AUTH",
     "the gateway's upstream credentials were rejected; an operator must fix them", False),
    (1007, "user location is not supported", grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_LOCATION",
     "the upstream refuses requests from this location", False),
    (1007, "invalid session handle", grpc.StatusCode.ABORTED, "UPSTREAM_SESSION_LOST",
     "the upstream no longer knows this session; start a new one", False),
    (1008, "session not found", grpc.StatusCode.ABORTED, "UPSTREAM_SESSION_LOST",
     "the upstream no longer knows this session; start a new one", False),
    (1008, "requested entity was not found", grpc.StatusCode.ABORTED, "UPSTREAM_SESSION_LOST",
     "the upstream no longer knows this session; start a new one", False),
    (1008, "is not found", grpc.StatusCode.NOT_FOUND, "UPSTREAM_MODEL_NOT_FOUND",
     "the upstream does not serve this model for the Live API", False),
    (1008, "publisher model", grpc.StatusCode.NOT_FOUND, "UPSTREAM_MODEL_NOT_FOUND",
     "the upstream does not serve this model for the Live API", False),
    (1008, "operation is not implemented", grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_UNSUPPORTED",
     "the upstream does not support this message in the session's current state or configuration", False),
    (1007, "", grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_INVALID_ARGUMENT",
     "the upstream rejected a message of this session as invalid", False),
]
# Closes after which the conversation continues on a new upstream connection (resumption).
_RESUME_RULES: list[tuple[int, str]] = [
    (1011, ""),          # internal error, service unavailable, deadline expired, keepalive timeout
    (1006, ""),          # abrupt drop
    (1001, ""),          # going away
    (1008, "goaway"),    # we overstayed a go_away (should not happen: we reconnect on go_away)
    (1000, ""),          # the upstream ended a connection we did not ask to end
]


def close_classes() -> list[tuple[int, str]]:
    """Every (close code, classification) :func:`classify_close` names in advance: an error's reason, or
    ``resume`` (any other code is ``UPSTREAM_CLOSED``). ``livegate_upstream_closes_total`` starts at 0 for each."""
    pairs = [(code, reason) for code, _, _, reason, _, _ in _END_RULES]
    pairs += [(code, "resume") for code, _ in _RESUME_RULES]
    return list(dict.fromkeys(pairs))


def classify_close(code: int | None, reason: str | None) -> CloseDecision:
    c = code if code is not None else 1006
    r = (reason or "").lower()
    for rule_code, needle, status, err_reason, message, retryable in _END_RULES:
        if c == rule_code and needle in r:
            return CloseDecision(False, GatewayError(
                status, err_reason, message, retryable=retryable, retry_after_s=30.0 if retryable else None,
                upstream_close_code=c, upstream_close_reason=(reason or "")[:123]))
    for rule_code, needle in _RESUME_RULES:
        if c == rule_code and needle.replace(" ", "") in r.replace(" ", ""):
            return CloseDecision(True)
    return CloseDecision(False, GatewayError(
        grpc.StatusCode.UNAVAILABLE, "UPSTREAM_CLOSED", f"the upstream closed the session ({c})",
        retryable=True, retry_after_s=1.0, upstream_close_code=c, upstream_close_reason=(reason or "")[:123]))
