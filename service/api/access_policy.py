"""Which scope each HTTP route and WebSocket needs: the one table, checked against the app.

The access middleware runs before routing (it must cover the express lanes, which answer
before FastAPI's router), so it matches the request against this table of route
templates as the router would: the first rule whose path and method both match, else
the first whose path matches (the router's 405). A path no rule matches needs `admin`:
a route added without a rule is closed, not open, and
`tests/service/test_access_control.py` fails until the table lists it.
"""

from __future__ import annotations

from dataclasses import dataclass
from re import Pattern

from starlette.routing import compile_path
from starlette.types import Scope as AsgiScope

from tabserve.service.api.asgi_io import route_path
from tabserve.service.auth.scopes import Scope

WEBSOCKET = "WEBSOCKET"
"""The method a WebSocket handshake matches rules with."""
OPEN = None
"""A rule's scope for a route that needs no key."""
_CACHED_PATHS = 4096
"""How many (method, path) pairs keep their rule (a served model has a handful)."""

_GET, _POST, _PUT = frozenset({"GET"}), frozenset({"POST"}), frozenset({"PUT"})
_ANY: frozenset[str] = frozenset()
_DOCS, _METRICS = "docs", "metrics"
"""Placeholders the settings resolve: open, or `read`."""

TABLE: tuple[tuple[str, frozenset[str], Scope | str | None], ...] = (
    # Probes stay open: the kubelet sends no key.
    ("/v2/health/live", _GET, OPEN),
    ("/v2/health/ready", _GET, OPEN),
    ("/metrics", _GET, _METRICS),
    ("/openapi.json", frozenset({"GET", "HEAD"}), _DOCS),
    ("/docs", _GET, _DOCS),
    ("/redoc", _GET, _DOCS),
    ("/static-offline-docs/{path:path}", _ANY, _DOCS),
    ("/v2", _GET, Scope.READ),
    ("/v2/models/{model}", _GET, Scope.READ),
    ("/v2/models/{model}/versions/{version}", _GET, Scope.READ),
    ("/v2/models/{model}/ready", _GET, Scope.READ),
    ("/v2/models/{model}/versions/{version}/ready", _GET, Scope.READ),
    ("/v2/models/{model}/infer", _POST, Scope.PREDICT),
    ("/v2/models/{model}/versions/{version}/infer", _POST, Scope.PREDICT),
    ("/v1/models/{model}", _GET, Scope.READ),
    ("/v1/models/{model}:predict", _POST, Scope.PREDICT),
    ("/models", _GET, Scope.READ),
    ("/models/{model}", _GET, Scope.READ),
    ("/models/{model}/stream", frozenset({WEBSOCKET}), Scope.PREDICT),
    ("/models/{model}/versions/{version}/stream", frozenset({WEBSOCKET}), Scope.PREDICT),
    ("/v2/repository/index", _POST, Scope.ADMIN),
    ("/v2/repository/models/{model}/load", _POST, Scope.ADMIN),
    ("/v2/repository/models/{model}/unload", _POST, Scope.ADMIN),
    ("/v2/repository/models/{model}/default", _PUT, Scope.ADMIN),
    # Ground truth comes from whoever asked for the predictions, by request id.
    ("/models/{model}/feedback", _POST, Scope.PREDICT),
    ("/models/{model}/quality", _GET, Scope.READ),
    ("/models/{model}/predictions", _GET, Scope.READ),
    ("/models/{model}/drift", _GET, Scope.READ),
    ("/models/{model}/explain", _POST, Scope.PREDICT),
    ("/models/{model}/versions/{version}/explain", _POST, Scope.PREDICT),
    # Champion/challenger rollouts: behind the admin token, as the repository API.
    ("/models/{model}/rollout", frozenset({"GET", "PUT", "DELETE"}), Scope.ADMIN),
    ("/models/{model}/rollout/promote", _POST, Scope.ADMIN),
    # Record routes: one per served model (`/models/iris/predict`) and the catch-alls.
    ("/models/{model}/predict", _POST, Scope.PREDICT),
    ("/models/{model}/versions/{version}/predict", _POST, Scope.PREDICT),
)
"""(route template, methods (empty: any), scope) in the router's order."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One route template and the scope it needs (None: open)."""

    template: str
    methods: frozenset[str]
    scope: Scope | None
    pattern: Pattern[str]


UNLISTED = Rule("<unlisted>", _ANY, Scope.ADMIN, compile_path("/")[0])
"""What a path no rule matches needs: closed to all but `admin` keys (the router's 404)."""


class AccessPolicy:
    """The table with the settings' choices for /metrics and the docs, and a cache."""

    def __init__(self, metrics_open: bool, docs_open: bool) -> None:
        placeholders: dict[str, Scope | None] = {
            _METRICS: OPEN if metrics_open else Scope.READ,
            _DOCS: OPEN if docs_open else Scope.READ,
        }
        self.rules = tuple(
            Rule(
                template,
                methods,
                scope if scope is None or isinstance(scope, Scope) else placeholders[scope],
                compile_path(template)[0],
            )
            for template, methods, scope in TABLE
        )
        self._known: dict[tuple[str, str], Rule] = {}

    def rule_for(self, scope: AsgiScope) -> Rule:
        """The rule of the route an HTTP request or WebSocket handshake is for."""
        method = scope["method"] if scope["type"] == "http" else WEBSOCKET
        path = route_path(scope)
        key = (method, path)
        rule = self._known.get(key)
        if rule is None:
            rule = self.match(method, path)
            if len(self._known) < _CACHED_PATHS:
                self._known[key] = rule
        return rule

    def match(self, method: str, path: str) -> Rule:
        """As the router matches: the first full match, else the first path match."""
        partial: Rule | None = None
        for rule in self.rules:
            if rule.pattern.match(path):
                if not rule.methods or method in rule.methods:
                    return rule
                if partial is None and WEBSOCKET not in rule.methods and method != WEBSOCKET:
                    partial = rule
        return partial or UNLISTED
