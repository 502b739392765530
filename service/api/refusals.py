"""Counting the requests the HTTP protocol answers itself, before any route sees them.

The guarded protocol (`service/http_guard.py`) answers a head that is too large
(431), a request that does not arrive in time (408) and malformed HTTP (400)
without calling the app. They are answers all the same, so they are counted in
`tabserve_http_requests_total`, with the route `<unrouted>`: no route was chosen.
The app's lifespan hands a `RefusalCounter` to the protocol (uvicorn gives each
connection the lifespan state), as `scope_keys.HTTP_REFUSALS`.
"""

from __future__ import annotations

from prometheus_client import Counter

from tabserve.service.core.metrics import HttpMetrics

UNROUTED = "<unrouted>"
"""The route label of a request answered before routing (unknown paths are `<unmatched>`)."""


class RefusalCounter:
    """Called with a method and a status: one more request answered below the app."""

    def __init__(self, http: HttpMetrics) -> None:
        self._http = http
        self._children: dict[tuple[str, int], Counter] = {}

    def __call__(self, method: str, status: int) -> None:
        child = self._children.get((method, status))
        if child is None:
            child = self._http.requests.labels(UNROUTED, method, str(status))
            self._children[(method, status)] = child
        child.inc()
