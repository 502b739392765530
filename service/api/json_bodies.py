"""JSON request bodies are read as JSON whatever Content-Type the client sent.

curl's `-d` sends `application/x-www-form-urlencoded`, and many clients send no
Content-Type or `text/plain`. FastAPI reads a body as JSON only under a JSON
media type, so the same request was 200 on V2 and the records express lane (which
read bytes as JSON) and 422 "Input should be a valid dictionary" on V1, the
record route and the repository API. Routes made with `JsonBodyRoute` read every
body as JSON: one that is not JSON is refused as always (400 `malformed_json`).

Reading `text/plain` and forms as JSON would let any web page make a browser
send such requests without a CORS preflight; `origins.py` refuses those before
any work.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

_JSON = b"application/json"


class JsonBodyRoute(APIRoute):
    """An APIRoute whose body, if it takes one, is parsed as JSON under any Content-Type."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, told the body is JSON when the route has a body parameter."""
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def read_as_json(request: Request) -> Response:
            request.scope["headers"] = json_content_type(request.scope["headers"])
            return await handler(request)

        return read_as_json


def json_content_type(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with Content-Type saying JSON (kept as sent when it says so already)."""
    kept = [(k, v) for k, v in headers if k != b"content-type"]
    sent = [v for k, v in headers if k == b"content-type"]
    if len(sent) == 1 and _is_json(sent[0]):
        return headers
    return [*kept, (b"content-type", _JSON)]


def _is_json(value: bytes) -> bool:
    media = value.split(b";", 1)[0].strip().lower()
    return media == _JSON or (media.startswith(b"application/") and media.endswith(b"+json"))
