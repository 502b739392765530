"""The OpenAPI document declares the error shape the server sends, on every operation."""

from __future__ import annotations

from fastapi.testclient import TestClient

PROBE_BODIES = {"ReadyBody", "ModelReadyBody", "LiveBody"}


def test_every_error_status_declares_the_error_body(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    wrong = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                schema = response["content"]["application/json"]["schema"]
                name = schema["$ref"].rsplit("/", 1)[-1]
                if name != "ErrorBody" and not (status == "400" and name in PROBE_BODIES):
                    wrong[f"{method.upper()} {path} {status}"] = name
    assert wrong == {}
    assert "HTTPValidationError" not in document["components"]["schemas"]
