"""Which web pages may make a browser change state here: the rule for HTTP and streams.

A browser sends `text/plain` and form POSTs to any site without asking first (no
CORS preflight), with the page's `Origin`; CORS only stops the page from reading
the answer, after the prediction ran and the log was written. And every body is
read as JSON (`json_bodies.py`). So a state-changing request (POST, PUT, PATCH,
DELETE) whose Origin is neither this server's own nor one of
`TABSERVE_CORS_ORIGINS` is refused (403) before any work. Clients other than
browsers send no Origin and are not affected; WebSocket handshakes follow the same
rule (`stream.py`), as browsers apply no CORS to them at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.responses import Response

from tabserve.service.api.errors import error_response
from tabserve.service.core.errors import Problem

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CODE = "cross_origin_refused"


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """No Origin (not a browser), the server's own origin, or one in `allowed` ("*": any)."""
    if origin is None or origin in allowed or "*" in allowed:
        return True
    return host is not None and urlsplit(origin).netloc == host


def origin_refusal(origin: bytes, host: bytes | None, allowed: Sequence[str]) -> Response | None:
    """The 403 for a state-changing request whose `Origin` is not allowed, else None."""
    shown = origin.decode("latin-1")
    if origin_allowed(shown, None if host is None else host.decode("latin-1"), allowed):
        return None
    shown = shown[:200]
    return error_response(
        403,
        f"requests from pages on {shown!r} may not call this server; "
        "allowed origins are its own and TABSERVE_CORS_ORIGINS",
        CODE,
        [Problem("Origin", "this server's own origin or one in TABSERVE_CORS_ORIGINS", shown)],
    )
