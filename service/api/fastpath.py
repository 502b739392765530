"""V2 inference without FastAPI's router and dependency machinery.

`POST /v2/models/{m}[/versions/{v}]/infer` is the hot path. Profiling showed
FastAPI's per-request work (routing through included routers, dependency
solving, telemetry middleware) costing more than the prediction itself, so the
app answers these paths here first: same handler (`v2.run_inference`), same
errors, metrics and access log; the FastAPI routes remain for `/docs` and answer
whenever the fast path is turned off (`TABSERVE_FAST_PATH=false`).
`docs/benchmarks.md` has the figures. Requests of the common shape take the express
lane (`v2_express`): same answer, less work.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tabserve.service.api.asgi_io import header, read_body, send_json
from tabserve.service.api.deadlines import TIMEOUT_HEADER, deadline_for, predict_watched
from tabserve.service.api.errors import on_service_error, on_unexpected
from tabserve.service.api.v2 import HEADER_LENGTH, json_limits, parse_version, run_inference
from tabserve.service.api.v2_express import ExpressV2
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.errors import ServiceError
from tabserve.service.core.registry import ModelVersion
from tabserve.service.settings import Settings

PREFIX = "/v2/models/"
SUFFIX = "/infer"
_LENGTH = HEADER_LENGTH.encode()
_TIMEOUT = TIMEOUT_HEADER.lower().encode()
_EXPRESS = "v2_express"
INFER_TARGET = "tabserve.infer_target"
"""Scope key where the app leaves the (model, version) it matched, so it is parsed once."""


@dataclass(frozen=True)
class RouteTemplate:
    """What metrics and logs read from `scope["route"]`."""

    path: str


DEFAULT_ROUTE = RouteTemplate("/v2/models/{model}/infer")
VERSION_ROUTE = RouteTemplate("/v2/models/{model}/versions/{version}/infer")


def infer_target(scope: Scope) -> tuple[str, str | None] | None:
    """(model, version) when `scope` is a V2 infer request, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    parts = path[len(PREFIX) : -len(SUFFIX)].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return parts[0], parts[2]
    return None


class InferEndpoint:
    """ASGI endpoint for V2 infer paths (wrap it in RequestContextMiddleware)."""

    def __init__(self, dataplane: DataPlane, settings: Settings) -> None:
        self.dataplane = dataplane
        self.settings = settings
        self.limits = json_limits(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = scope.get(INFER_TARGET) or infer_target(scope)
        assert target is not None
        name, version = target
        scope["route"] = DEFAULT_ROUTE if version is None else VERSION_ROUTE
        scope["path_params"] = (
            {"model": name}
            if version is None
            else {
                "model": name,
                "version": version,
            }
        )
        response: Response
        try:
            number = None if version is None else parse_version(name, version)
            model = self.dataplane.model(name, number)
            body = await read_body(receive)
            if body is None:
                return  # the client left before sending its body: nobody to answer
            header_length = header(scope, _LENGTH)
            deadline = deadline_for(header(scope, _TIMEOUT), self.settings)
            express = _express(model) if header_length is None else None
            decoded = express.decode(body) if express is not None else None
            if express is not None and decoded is not None:
                prediction = await predict_watched(
                    self.dataplane,
                    model,
                    decoded.batch,
                    deadline=deadline,
                    scope=scope,
                    receive=receive,
                )
                await send_json(send, express.encode(prediction, decoded.request_id))
                return
            response = await run_inference(
                self.dataplane,
                model,
                body,
                header_length,
                deadline=deadline,
                scope=scope,
                receive=receive,
                limits=self.limits,
            )
        except ServiceError as exc:
            response = await on_service_error(Request(scope), exc)
        except Exception as exc:
            response = await on_unexpected(Request(scope), exc)
        await response(scope, receive, send)


def _express(model: ModelVersion) -> ExpressV2 | None:
    """The model version's express lane, built on first use (None: it has none)."""
    return model.cached(_EXPRESS, lambda: ExpressV2.for_model(model))
