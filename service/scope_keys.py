"""Keys tabserve adds to ASGI scopes: shared by the server protocol and the web layer.

A neutral module (it imports nothing), so the HTTP protocol (`service/http_protocol.py`)
and the routes (`service/api/`) agree on the names without importing each other.
"""

from __future__ import annotations

CLIENT_LEFT = "tabserve.client_left"
"""Scope key: a callable telling, at no cost, whether the request's client has left."""

HTTP_REFUSALS = "tabserve.http_refusals"
"""Lifespan-state key: a callable `(method, status)` counting a request the HTTP
protocol answered itself before the app saw it (431, 408, 400 for malformed HTTP)."""

GUARD_STATUS = "tabserve.guard_status"
"""Scope key: the status the HTTP protocol answered this request with itself, after
the app had started on it (408: its body did not arrive in time); the app's own
answer, if any, never reached the client."""

HEADERS = "tabserve.headers"
"""Scope key: the request's headers as a dict, first of a repeated name winning
(`service/api/asgi_io.py` `request_headers`), built once per request."""

UNEXPECTED_ERROR = "tabserve.unexpected_error"
"""Scope key: the exception an error handler answered with the JSON 500 (a bug), kept
so that tracing can record it on the request's span; absent otherwise."""
