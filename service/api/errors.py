"""The one place domain errors become HTTP statuses and the single JSON error shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from tabserve.service.api.app_state import app_state
from tabserve.service.core.errors import (
    DeadlineExceededError,
    FeatureDisabledError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    Problem,
    ServiceError,
    TooLargeError,
)
from tabserve.service.core.explain.errors import NotExplainableError
from tabserve.service.protocol.error_body import error_body, problems_of, schema_errors
from tabserve.service.scope_keys import UNEXPECTED_ERROR

log = logging.getLogger("tabserve.errors")

STATUS: dict[type[ServiceError], int] = {
    ModelNotFoundError: 404,
    ModelNotReadyError: 503,
    InvalidInputError: 400,
    TooLargeError: 413,
    OverloadedError: 503,
    DeadlineExceededError: 504,
    FeatureDisabledError: 409,
    NotExplainableError: 409,
}
RETRY_AFTER_SECONDS: dict[type[ServiceError], str] = {ModelNotReadyError: "5", OverloadedError: "1"}


def error_response(
    status: int,
    message: str,
    code: str,
    problems: list[Problem] | None = None,
    retry_after: str | None = None,
) -> Response:
    """The error body (`protocol.error_body`) with its status."""
    headers = {"Retry-After": retry_after} if retry_after else None
    return Response(
        error_body(message, code, problems or []),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _count_rejection(request: Request, reason: str) -> None:
    state = app_state(request.app)
    model = request.path_params.get("model")
    if model not in state.registry.names():
        model = ""
    state.metrics.validation.errors.labels(model, reason).inc()


async def on_service_error(request: Request, exc: Exception) -> Response:
    """Domain errors -> their status."""
    assert isinstance(exc, ServiceError)
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
    if isinstance(exc, InvalidInputError):
        _count_rejection(request, exc.reason)
    elif isinstance(exc, TooLargeError):
        _count_rejection(request, "too_large")
    retry = next((s for cls, s in RETRY_AFTER_SECONDS.items() if isinstance(exc, cls)), None)
    return error_response(status, exc.message, exc.code, problems_of(exc), retry)


async def on_request_validation(request: Request, exc: Exception) -> Response:
    """FastAPI's schema validation -> 422 (400 for malformed JSON), naming field and value."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    found = schema_errors(errors)
    if any(err.get("type") == "json_invalid" for err in errors):
        _count_rejection(request, "malformed")
        return error_response(
            400, "request body is not valid JSON", "malformed_json", found.problems
        )
    _count_rejection(request, "schema")
    return error_response(422, found.message, "invalid_request", found.problems)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404/405 and friends, in the same shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, str(exc.detail), code)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: log it with its trace, tell the client nothing internal."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    request.scope[UNEXPECTED_ERROR] = exc  # for tracing, which records it on the request's span
    return internal_error_response()


def internal_error_response() -> Response:
    """The 500 every unexpected failure gets: nothing internal, in the error shape."""
    return error_response(500, "internal error; the server log has the details", "internal")


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler on `app`."""
    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
