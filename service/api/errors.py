"""The one place domain errors become HTTP statuses and the single JSON error shape."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from tabserve.service.core.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    Problem,
    ServiceError,
    TooLargeError,
)

log = logging.getLogger("tabserve.errors")

_UNION_TAGS = frozenset({"record", "records"})
MAX_DETAILS = 20
STATUS: dict[type[ServiceError], int] = {
    ModelNotFoundError: 404,
    ModelNotReadyError: 503,
    InvalidInputError: 400,
    TooLargeError: 413,
    OverloadedError: 503,
    DeadlineExceededError: 504,
}
RETRY_AFTER_SECONDS: dict[type[ServiceError], str] = {ModelNotReadyError: "5", OverloadedError: "1"}


def error_response(
    status: int,
    message: str,
    code: str,
    problems: list[Problem] | None = None,
    retry_after: str | None = None,
) -> Response:
    """A JSON error body: `{"error": ..., "code": ..., "details": [...]}`."""
    body = {
        "error": message,
        "code": code,
        "details": [_problem(p) for p in problems or []],
    }
    headers = {"Retry-After": retry_after} if retry_after else None
    return Response(
        orjson.dumps(body, default=str),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _problem(p: Problem) -> dict[str, Any]:
    return {
        "field": p.field,
        "index": p.index,
        "row": p.row,
        "value": _echo(p.value, 0),
        "expected": p.expected,
    }


_ECHO_ITEMS = 20
_ECHO_CHARS = 200
_ECHO_DEPTH = 4
_INT64 = 2**63


def _echo(value: Any, depth: int) -> Any:
    """The given value as the error body repeats it: bounded in size, always serializable.

    An error must not cost more than the request: a 16 MiB string or list comes back
    as its start; integers JSON can carry but orjson cannot (past 64 bits) as text.
    """
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, str):
        return value if len(value) <= _ECHO_CHARS else value[:_ECHO_CHARS] + "..."
    if depth >= _ECHO_DEPTH:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())
        shown = {str(k)[:_ECHO_CHARS]: _echo(v, depth + 1) for k, v in items[:_ECHO_ITEMS]}
        if len(items) > _ECHO_ITEMS:
            shown["..."] = f"{len(items) - _ECHO_ITEMS} more"
        return shown
    if isinstance(value, list | tuple):
        shown_list = [_echo(v, depth + 1) for v in value[:_ECHO_ITEMS]]
        if len(value) > _ECHO_ITEMS:
            shown_list.append(f"... {len(value) - _ECHO_ITEMS} more")
        return shown_list
    return _echo(str(value), depth)


def _count_rejection(request: Request, reason: str) -> None:
    state = request.app.state.tabserve
    model = request.path_params.get("model")
    if model not in state.registry.names():
        model = ""
    state.metrics.validation_errors.labels(model, reason).inc()


async def on_service_error(request: Request, exc: Exception) -> Response:
    """Domain errors -> their status."""
    assert isinstance(exc, ServiceError)
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
    problems: list[Problem] = []
    if isinstance(exc, InvalidInputError):
        problems = exc.problems
        _count_rejection(request, exc.reason)
    elif isinstance(exc, TooLargeError):
        problems = exc.problems
        _count_rejection(request, "too_large")
    retry = next((s for cls, s in RETRY_AFTER_SECONDS.items() if isinstance(exc, cls)), None)
    return error_response(status, exc.message, exc.code, problems, retry)


async def on_request_validation(request: Request, exc: Exception) -> Response:
    """FastAPI's schema validation -> 422 (400 for malformed JSON), naming field and value."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    # A body of 10 000 wrong rows has 10 000 errors: the answer lists the first few.
    problems = [_schema_problem(err) for err in errors[:MAX_DETAILS]]
    if any(err.get("type") == "json_invalid" for err in errors):
        _count_rejection(request, "malformed")
        return error_response(400, "request body is not valid JSON", "malformed_json", problems)
    _count_rejection(request, "schema")
    message = "; ".join(p.describe() for p in problems[:5])
    if len(errors) > 5:
        message += f" (and {len(errors) - 5} more)"
    return error_response(422, message, "invalid_request", problems)


def _schema_problem(err: Any) -> Problem:
    """`loc` like ("body", "records", 3, "age") -> field "age", row 3."""
    loc = list(err.get("loc", ()))
    names = [p for p in loc[1:] if isinstance(p, str) and p not in _UNION_TAGS]
    rows = [p for p in loc if isinstance(p, int)]
    missing = err.get("type") == "missing"
    return Problem(
        field=names[-1] if names else str(loc[0]) if loc else "body",
        expected="a value (it is required)" if missing else err.get("msg", "valid input"),
        value=None if missing else err.get("input"),
        row=rows[0] if rows else None,
    )


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
    return error_response(500, "internal error; the server log has the details", "internal")


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler on `app`."""
    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
