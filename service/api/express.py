"""The express lanes: one dispatch point that answers the common requests itself.

`POST /v2/models/{m}[/versions/{v}]/infer` and `POST /models/{m}[/versions/{v}]/predict`
are the hot paths. FastAPI's per-request work (dependency solving, the body through
Pydantic, the answer through the response model) cost more than the prediction, so
`ExpressLanes` sits innermost of the app's middleware, inside the request context and
CORS, so they wrap it like any route. It claims exactly the requests a documented route
would take (it asks those routes' own `matches()`), and labels what it answers with that
route (metrics and the access log see `/v2/models/{model}/infer`, `/models/iris/predict`,
...). It reads the body and tries the lane (`v2_express` or `records_express`); a body
the lane does not take (binary tensors, named features, output selection, out-of-range
values, any error at all) goes on down the stack to the documented route with the body
replayed, which answers exactly as it always does.

A router entry (a `BaseRoute` placed first) would do the same inside FastAPI's
exception middleware, exit stack and router, at about 20 µs more CPU per request than
this (`docs/benchmarks.md`, "Express lanes in one module"). Off with
`TABSERVE_FAST_PATH=false`: then the lanes are never added.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from tabserve.service.api import v2
from tabserve.service.api.asgi_io import header, read_body, replay, send_json
from tabserve.service.api.deadlines import TIMEOUT_HEADER, deadline_for, predict_watched
from tabserve.service.api.errors import on_service_error, on_unexpected
from tabserve.service.api.middleware import request_id_of
from tabserve.service.api.records import RecordRoute
from tabserve.service.api.records_express import records_lane
from tabserve.service.api.rollout_key import rollout_key
from tabserve.service.api.v2_express import ExpressV2
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.errors import ServiceError
from tabserve.service.core.runtime import Prediction
from tabserve.service.core.served import LaneKey, ServedModel
from tabserve.service.core.validation import ValidatedBatch
from tabserve.service.web_config import WebConfig

_LENGTH = v2.HEADER_LENGTH.encode()
_TIMEOUT = TIMEOUT_HEADER.lower().encode()
_V2_LANE: LaneKey[ExpressV2 | None] = LaneKey("v2_express")
_KNOWN_INFER_PATHS = 1024
"""How many V2 infer paths' matches are kept (a served model has two or three)."""


class _Taken(NamedTuple):
    """A request a lane took: the version, its rows, and how to write the answer."""

    model: ServedModel
    batch: ValidatedBatch
    encode: Callable[[Prediction], bytes]


def install_express_lanes(app: FastAPI, dataplane: DataPlane, web: WebConfig) -> None:
    """Put the express lanes innermost of `app`'s middleware (call before adding any other)."""
    app.add_middleware(ExpressLanes, router=app.router, dataplane=dataplane, web=web)


class ExpressLanes:
    """The express lanes of V2 infer and record predict, in front of their documented routes."""

    def __init__(self, app: ASGIApp, router: Router, dataplane: DataPlane, web: WebConfig) -> None:
        self.app = app
        self.router = router
        self.dataplane = dataplane
        self.deadlines = web.deadlines
        self.max_string_length = web.max_string_length
        endpoints = (v2.infer, v2.infer_version)
        self._infer_routes = [
            r for r in v2.router.routes if isinstance(r, APIRoute) and r.endpoint in endpoints
        ]
        self._record_routes: dict[str, tuple[RecordRoute, Scope]] = {}
        self._infer_matches: dict[tuple[str, str], Scope] = {}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """FULL, with the documented route's own scope, for a POST a lane may take.

        The V2 routes come from `v2.router` itself, and their match is kept per path:
        their regex and converters cost more than the rest of the lane's dispatch, and
        a path always matches the same. Record routes change with the registry, so
        each path's route is looked up again when it leaves the router. Each request
        gets its own copy of a kept match (handlers may write to `path_params`).
        """
        if scope["type"] != "http" or scope["method"] != "POST":
            return Match.NONE, {}
        path: str = scope["path"]
        if path.endswith("/infer"):
            key = (scope.get("root_path", ""), path)
            child = self._infer_matches.get(key) or self._infer_match(scope, key)
        elif path.endswith("/predict"):
            known = self._record_route(scope)
            child = None if known is None else known[1]
        else:
            return Match.NONE, {}
        if child is None:
            return Match.NONE, {}
        return Match.FULL, {**child, "path_params": dict(child["path_params"])}

    def _infer_match(self, scope: Scope, key: tuple[str, str]) -> Scope | None:
        """The V2 routes' own match for a path not seen yet (kept: at most 1024 paths)."""
        for route in self._infer_routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                if len(self._infer_matches) < _KNOWN_INFER_PATHS:
                    self._infer_matches[key] = child
                return child
        return None

    def _record_route(self, scope: Scope) -> tuple[RecordRoute, Scope] | None:
        """The record route of a served version for this exact path, with its match
        (routes change on reloads; a kept one is dropped once retired)."""
        path: str = scope["path"]
        known = self._record_routes.get(path)
        # `retired`, not `known in self.router.routes`: Starlette routes compare by
        # value, so that test cost a dozen __eq__ calls per request.
        if known is not None and not known[0].retired:
            return known
        self._record_routes.pop(path, None)
        for route in self.router.routes:
            if not isinstance(route, RecordRoute) or route.serves is None:
                continue
            match, child = route.matches(scope)
            if match is Match.FULL:
                self._record_routes[path] = (route, child)
                return route, child
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer in the lane, or hand the request (body replayed) to the documented route."""
        match, child = self.matches(scope)
        if match is not Match.FULL:
            await self.app(scope, receive, send)
            return
        scope.update(child)  # labelled with its route whoever answers, the lane or not
        try:
            body = await read_body(receive)
        except ServiceError as exc:  # a chunked body past the limit
            await _refuse(scope, receive, send, exc)
            return
        if body is None:
            return  # the client left before sending its body: nobody to answer
        route = child["route"]
        if isinstance(route, RecordRoute):
            taken = self._records(scope, route, body)
        else:
            taken = self._infer(scope, child["path_params"], body)
        if taken is None:
            await self.app(scope, replay(body, receive), send)
            return
        try:
            prediction = await predict_watched(
                self.dataplane,
                taken.model,
                taken.batch,
                deadline=deadline_for(header(scope, _TIMEOUT), self.deadlines),
                scope=scope,
                receive=receive,
            )
        except Exception as exc:
            await _refuse(scope, receive, send, exc)
            return
        await send_json(send, taken.encode(prediction))

    def _infer(self, scope: Scope, params: dict[str, str], body: bytes) -> _Taken | None:
        """A V2 body of the express shape, for a ready version with an express lane
        (None: the documented route answers, and says why when it is an error)."""
        if header(scope, _LENGTH) is not None:
            return None  # binary tensors: the general codec
        version = params.get("version")
        try:
            number = None if version is None else v2.parse_version(params["model"], version)
            model = self.dataplane.route(params["model"], number, rollout_key, scope)
        except ServiceError:
            return None
        lane = _v2_lane(model)
        decoded = lane.decode(body) if lane is not None else None
        if lane is None or decoded is None:
            return None
        return _Taken(model, decoded.batch, partial(lane.encode, request_id=decoded.request_id))

    def _records(self, scope: Scope, route: RecordRoute, body: bytes) -> _Taken | None:
        """Records of the express shape, for a ready version with a records lane."""
        if route.serves is None:
            return None
        name, version = route.serves
        try:
            model = self.dataplane.route(name, version, rollout_key, scope)
        except ServiceError:
            return None  # the documented route gives the 404 or 503
        lane = records_lane(model, self.max_string_length)
        batch = lane.decode(body) if lane is not None else None
        if lane is None or batch is None:
            return None
        scope.setdefault("state", {})["model"] = name
        return _Taken(model, batch, partial(lane.encode, request_id=request_id_of(scope)))


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """What the app's exception handlers answer for `exc` (the lanes run outside them)."""
    request = Request(scope)
    if isinstance(exc, ServiceError):
        response = await on_service_error(request, exc)
    else:
        response = await on_unexpected(request, exc)
    await response(scope, receive, send)


def _v2_lane(model: ServedModel) -> ExpressV2 | None:
    """The version's V2 express lane, built on first use (None: it has none)."""
    return model.lanes.get(_V2_LANE, lambda: ExpressV2.for_model(model))
