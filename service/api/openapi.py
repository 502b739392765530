"""The OpenAPI document declares what the server sends for errors: the one error shape.

FastAPI declares its own `HTTPValidationError` (`{"detail": [...]}`) for 422 on
every operation with parameters or a body, but `errors.py` answers request
validation with `ErrorBody` like every other error. And the request middleware
refuses a state-changing request from a browser page of another origin with 403
before any route sees it (`origins.py`), so no route declares that answer itself.
Generated clients trust the document, so it is corrected once, when FastAPI
builds it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tabserve.service.api.origins import CODE as CROSS_ORIGIN_CODE
from tabserve.service.api.origins import STATE_CHANGING
from tabserve.service.api.schemas import ErrorBody, error_responses

ERROR_REF = f"#/components/schemas/{ErrorBody.__name__}"
CROSS_ORIGIN = (
    f"`{CROSS_ORIGIN_CODE}`: the request carries the `Origin` of a web page that is "
    "neither this server's own nor one of TABSERVE_CORS_ORIGINS (clients other than "
    "browsers send no Origin and never get this)."
)
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` declare `ErrorBody` wherever FastAPI declared its own 422."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        document = build()
        if fresh:
            declare_errors(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def declare_errors(document: dict[str, Any]) -> None:
    """Every correction this module makes to a freshly built document, in place."""
    declare_error_shape(document)
    declare_cross_origin_refusal(document)


def declare_error_shape(document: dict[str, Any]) -> None:
    """Point every 422 response at `ErrorBody` and drop FastAPI's unused schemas, in place."""
    description = error_responses(422)[422]["description"]
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            if response is not None and ERROR_REF not in str(response):
                operation["responses"]["422"] = {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
                }
    schemas = document.get("components", {}).get("schemas", {})
    if ErrorBody.__name__ not in schemas:
        raise RuntimeError("ErrorBody is missing from the OpenAPI components")
    for name in _FASTAPI_ONLY:
        schemas.pop(name, None)


def declare_cross_origin_refusal(document: dict[str, Any]) -> None:
    """Declare the middleware's 403 on every state-changing operation, in place.

    Where an operation already declares 403 (the admin API's wrong token), both
    causes share the status and the error shape: the description names both.
    """
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            if method.upper() not in STATE_CHANGING:
                continue
            responses = operation.setdefault("responses", {})
            declared = responses.get("403")
            description = CROSS_ORIGIN
            if declared is not None:
                description = f"{declared.get('description', '').rstrip()} Or {CROSS_ORIGIN}"
            responses["403"] = {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
            }
