"""The one place domain errors become gRPC status codes, as `api/errors.py` does for HTTP.

The details string is the HTTP error body's `error` message, word for word, and the
trailing metadata carry its `code` (`tabserve-error-code: invalid_input`), so a client
of either transport reads the same explanation. Anything else is a bug: logged with its
trace, answered INTERNAL with no detail from inside the server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from tabserve.service.core.errors import (
    DeadlineExceededError,
    FeatureDisabledError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    ServiceError,
    TooLargeError,
)
from tabserve.service.protocol import V2CodecError

log = logging.getLogger("tabserve.errors")

CODE_METADATA = "tabserve-error-code"


class StoppingError(ServiceError):
    """A call that arrived after the server began to stop (UNAVAILABLE, as HTTP's 503)."""

    code = "shutting_down"

    def __init__(self) -> None:
        super().__init__("the server is shutting down; send the call to another replica")


class UnauthenticatedError(ServiceError):
    """A repository call without a bearer token (HTTP's 401)."""

    code = "unauthenticated"


class PermissionDeniedError(ServiceError):
    """A repository call whose bearer token is not the admin token (HTTP's 403)."""

    code = "forbidden"


class LoadFailedError(ServiceError):
    """A version that failed to load; the one serving before, if any, still serves."""

    code = "load_failed"


STATUS: dict[type[ServiceError], grpc.StatusCode] = {
    ModelNotFoundError: grpc.StatusCode.NOT_FOUND,
    ModelNotReadyError: grpc.StatusCode.UNAVAILABLE,
    InvalidInputError: grpc.StatusCode.INVALID_ARGUMENT,
    TooLargeError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    OverloadedError: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceededError: grpc.StatusCode.DEADLINE_EXCEEDED,
    FeatureDisabledError: grpc.StatusCode.FAILED_PRECONDITION,
    StoppingError: grpc.StatusCode.UNAVAILABLE,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    LoadFailedError: grpc.StatusCode.FAILED_PRECONDITION,
}
"""Mirrors HTTP: 404, 503, 400, 413, 503, 504, 409; 503 while stopping, 401, 403."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a failed call answers: its status, the message, the error body's code."""

    status: grpc.StatusCode
    message: str
    code: str
    reason: str | None
    """The `tabserve_validation_errors_total` reason, for input the model cannot take."""


def refusal(exc: Exception, rpc: str) -> Refusal:
    """The answer for `exc` raised while serving `rpc`."""
    if isinstance(exc, V2CodecError):
        exc = InvalidInputError(str(exc), "malformed")
    if isinstance(exc, ServiceError):
        status = next(
            (s for cls, s in STATUS.items() if isinstance(exc, cls)), grpc.StatusCode.INTERNAL
        )
        reason = (
            exc.reason
            if isinstance(exc, InvalidInputError)
            else "too_large"
            if isinstance(exc, TooLargeError)
            else None
        )
        return Refusal(status, exc.message, exc.code, reason)
    log.exception("unhandled error in gRPC %s", rpc, exc_info=exc)
    return Refusal(
        grpc.StatusCode.INTERNAL, "internal error; the server log has the details", "internal", None
    )
