"""The OpenAPI document declares what the server sends for errors: the one error shape.

FastAPI declares its own `HTTPValidationError` (`{"detail": [...]}`) for 422 on
every operation with parameters or a body, but `errors.py` answers request
validation with `ErrorBody` like every other error. Generated clients trust the
document, so it is corrected once, when FastAPI builds it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tabserve.service.api.schemas import ErrorBody, error_responses

ERROR_REF = f"#/components/schemas/{ErrorBody.__name__}"
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` declare `ErrorBody` wherever FastAPI declared its own 422."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        document = build()
        if fresh:
            declare_error_shape(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


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
