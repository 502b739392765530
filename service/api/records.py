"""The named-feature API: records keyed by feature name, one route per served model.

Routes are added by the lifespan once models are loaded (the schemas come from
their manifests), so `/docs` shows each model's features, types and an example.
The generated record models only document the body: it is checked by the model's
`FeatureSchema`, as V1 and V2 check theirs, so every API words a mistake alike.
"""

import inspect
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request
from pydantic import Discriminator, SkipValidation, Tag

from tabserve.service.api.deadlines import predict_for
from tabserve.service.api.deps import DataPlaneDep
from tabserve.service.api.json_bodies import JsonBodyRoute
from tabserve.service.api.limits import enforce_json_limits
from tabserve.service.api.middleware import request_id_of
from tabserve.service.api.record_models import PredictResponse, record_model
from tabserve.service.api.rollout_key import rollout_key
from tabserve.service.api.schemas import error_responses
from tabserve.service.api.v2 import parse_version
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.errors import InvalidInputError, Problem
from tabserve.service.core.registry import ModelRegistry
from tabserve.service.core.served import ServedModel
from tabserve.service.core.validation import RECORD
from tabserve.service.protocol.records import records_document

TAG = "records"


class RecordRoute(JsonBodyRoute):
    """A route this module adds, rebuilt whenever the registry changes (JSON under any
    Content-Type, like every route).

    `serves` is the (model, version) the route predicts with (version None: the
    default); None for the catch-all route of models that have no route of their own.
    """

    serves: tuple[str, int | None] | None = None
    retired: bool = False
    """Set once a rebuild has taken the route out of the router (caches drop it)."""


def install_record_routes(app: FastAPI, registry: ModelRegistry) -> None:
    """(Re)build `/models/{name}/predict` and `/models/{name}/versions/{v}/predict` routes.

    Called at start-up and after every change to the registry, on the event loop and
    without awaiting, so no request is routed while the list is being rebuilt.
    """
    for route in app.router.routes:
        if isinstance(route, RecordRoute):
            route.retired = True
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
    app.router.add_api_route(
        "/models/{model}/versions/{version}/predict",
        predict_unserved_version,
        methods=["POST"],
        include_in_schema=False,
        route_class_override=RecordRoute,
    )
    app.openapi_schema = None


def _add_route(
    app: FastAPI, path: str, name: str, version: int | None, model: ServedModel
) -> RecordRoute:
    record = record_model(model.manifest, model.schema.example)
    # The record models document the body; SkipValidation leaves the checking to
    # the model's FeatureSchema, whose wording is V2's (Pydantic's never reaches a client).
    body_type: Any = Annotated[
        Annotated[
            Annotated[record, Tag("record")] | Annotated[list[record], Tag("records")],  # type: ignore[valid-type]
            Discriminator(_one_or_many),
        ],
        SkipValidation,
        Body(description="One record, or a list of records, keyed by feature name."),
    ]

    async def endpoint(request: Request, body: Any, dataplane: DataPlane) -> PredictResponse:
        return await _predict(dataplane, request, name, version, records_of(body))

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
    # The schema shows one branch per shape, not an anyOf of both.
    return "records" if isinstance(body, list) else "record"


def records_of(body: Any) -> list[Any]:
    """The records a body carries: one record, or a list of them (checked one by one later)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        return [body]
    problem = Problem("body", f"{RECORD}, or a list of such records", body)
    raise InvalidInputError.of("shape", [problem])


async def predict_unserved(model: str, request: Request, dataplane: DataPlaneDep) -> None:
    """Models with no route of their own: unknown (404) or not ready (503)."""
    dataplane.model(model)
    raise RuntimeError(f"model {model!r} is ready but has no record route")


async def predict_unserved_version(
    model: str, version: str, request: Request, dataplane: DataPlaneDep
) -> None:
    """Versions with no route of their own: unknown (404, naming the versions) or not ready."""
    dataplane.model(model, parse_version(model, version))
    raise RuntimeError(f"model {model!r} version {version} is ready but has no record route")


async def _predict(
    dataplane: DataPlane,
    request: Request,
    name: str,
    version: int | None,
    records: list[Any],
) -> PredictResponse:
    request.state.model = name
    model = dataplane.route(name, version, rollout_key, request.scope)
    batch = model.schema.from_records(records)
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
