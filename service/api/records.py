"""The named-feature API: records keyed by feature name, one route per served model.

Routes are added by the lifespan once models are loaded (the schemas come from
their manifests), so `/docs` shows each model's features, types and an example.
"""

import inspect
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request
from pydantic import BaseModel, Discriminator, Tag

from tabserve.service.api.deadlines import predict_for
from tabserve.service.api.deps import DataPlaneDep
from tabserve.service.api.json_bodies import JsonBodyRoute
from tabserve.service.api.limits import enforce_json_limits
from tabserve.service.api.middleware import request_id_of
from tabserve.service.api.record_models import PredictResponse, record_model
from tabserve.service.api.schemas import error_responses
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.registry import ModelRegistry
from tabserve.service.core.served import ServedModel
from tabserve.service.protocol.records import records_document

TAG = "records"


class RecordRoute(JsonBodyRoute):
    """A route this module adds, rebuilt whenever the registry changes (JSON under any
    Content-Type, like every route).

    `serves` is the (model, version) the route predicts with (version None: the
    default); None for the catch-all route of models that have no route of their own.
    """

    serves: tuple[str, int | None] | None = None


def install_record_routes(app: FastAPI, registry: ModelRegistry) -> None:
    """(Re)build `/models/{name}/predict` and `/models/{name}/versions/{v}/predict` routes.

    Called at start-up and after every change to the registry, on the event loop and
    without awaiting, so no request is routed while the list is being rebuilt.
    """
    app.router.routes[:] = [r for r in app.router.routes if not isinstance(r, RecordRoute)]
    for name in registry.names():
        versions = registry.versions(name)
        default = registry.get(name)
        targets = [(f"/models/{name}/predict", None, default)] + [
            (f"/models/{name}/versions/{m.version}/predict", m.version, m) for m in versions
        ]
        for path, version, model in targets:
            if model.served is not None:
                _add_route(app, path, name, version, model.served).serves = (name, version)
    app.router.add_api_route(
        "/models/{model}/predict",
        predict_unserved,
        methods=["POST"],
        include_in_schema=False,
        route_class_override=RecordRoute,
    )
    app.openapi_schema = None


def _add_route(
    app: FastAPI, path: str, name: str, version: int | None, model: ServedModel
) -> RecordRoute:
    record = record_model(model.manifest, model.schema.example)
    body_type: Any = Annotated[
        Annotated[record, Tag("record")] | Annotated[list[record], Tag("records")],  # type: ignore[valid-type]
        Discriminator(_one_or_many),
        Body(description="One record, or a list of records, keyed by feature name."),
    ]

    async def endpoint(request: Request, body: Any, dataplane: DataPlane) -> PredictResponse:
        records = body if isinstance(body, list) else [body]
        return await _predict(dataplane, request, name, version, records)

    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
            inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body_type),
            inspect.Parameter(
                "dataplane",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=DataPlaneDep,
            ),
        ],
        return_annotation=PredictResponse,
    )
    which = f"version {version}" if version is not None else "the default version"
    manifest = model.manifest
    app.router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        response_model=PredictResponse,
        summary=f"Predict with {name} ({which})",
        description=(
            f"{manifest.task.capitalize()} with {manifest.estimator.class_name}, "
            f"trained on {manifest.training.source}. Features: "
            f"{', '.join(manifest.feature_names)}."
        ),
        tags=[TAG],
        responses=error_responses(400, 404, 413, 422, 503, 504),
        operation_id=f"predict_{name}" + (f"_v{version}" if version is not None else ""),
        dependencies=[Depends(enforce_json_limits)],
        route_class_override=RecordRoute,
    )
    route = app.router.routes[-1]
    assert isinstance(route, RecordRoute)
    return route


def _one_or_many(body: Any) -> str:
    # Validate against one branch only, so errors name the fields, not both union arms.
    return "records" if isinstance(body, list) else "record"


async def predict_unserved(model: str, request: Request, dataplane: DataPlaneDep) -> None:
    """Models with no route of their own: unknown (404) or not ready (503)."""
    dataplane.model(model)
    raise RuntimeError(f"model {model!r} is ready but has no record route")


async def _predict(
    dataplane: DataPlane,
    request: Request,
    name: str,
    version: int | None,
    records: list[BaseModel],
) -> PredictResponse:
    request.state.model = name
    model = dataplane.model(name, version)
    width = model.schema.width
    rows = [[getattr(r, f"f{i}") for i in range(width)] for r in records]
    batch = model.schema.from_rows(rows)
    prediction = await predict_for(request, dataplane, model, batch)
    classes = [str(c) for c in model.manifest.target.classes or []]
    answer = records_document(
        name,
        model.version,
        request_id_of(request.scope),
        prediction.predict,
        prediction.proba,
        classes,
    )
    return PredictResponse.model_validate(answer)
