"""The OpenAPI document declares access control when it is on: the bearer scheme
(Swagger UI's Authorize button), and on each operation its scope and 401/403 answers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tabserve.service.api.access_policy import AccessPolicy
from tabserve.service.api.openapi import ERROR_REF

SCHEME = "apiKey"
_SCHEME_DOC = {
    "type": "http",
    "scheme": "bearer",
    "description": (
        "An API key from `tabserve keys add` (docs/access-control.md), sent as "
        "`Authorization: Bearer <key>`. Each operation names the scope it needs."
    ),
}


def install_security(app: FastAPI, policy: AccessPolicy) -> None:
    """Make `app.openapi()` declare the bearer scheme and each operation's scope."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        document = build()
        if fresh:
            declare_security(document, policy)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def declare_security(document: dict[str, Any], policy: AccessPolicy) -> None:
    """Add the scheme, and each operation's `security`, scope and refusals, in place."""
    document.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = _SCHEME_DOC
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            # A template is a path the rules match: `{model}` is a segment like any.
            rule = policy.match(method.upper(), path)
            if rule.scope is None:
                operation["security"] = []
                continue
            operation["security"] = [{SCHEME: []}]
            operation["x-tabserve-scope"] = rule.scope.value
            note = f"Needs an API key with the `{rule.scope.value}` scope."
            operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
            responses = operation.setdefault("responses", {})
            responses["401"] = _refusal("`unauthenticated`: no API key, or not a valid one.")
            declared = responses.get("403", {}).get("description", "").rstrip()
            forbidden = f"`forbidden`: the key lacks the `{rule.scope.value}` scope."
            responses["403"] = _refusal(f"{declared} Or {forbidden}" if declared else forbidden)


def _refusal(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }
