"""KServe V1 protocol: `POST /v1/models/{model}:predict` with `{"instances": [...]}`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from tabserve.service.api.deadlines import predict_for
from tabserve.service.api.deps import DataPlaneDep
from tabserve.service.api.json_bodies import JsonBodyRoute
from tabserve.service.api.limits import enforce_json_limits
from tabserve.service.api.rollout_key import rollout_key
from tabserve.service.api.schemas import error_responses

router = APIRouter(tags=["kserve-v1"], route_class=JsonBodyRoute)


class V1Request(BaseModel):
    """Rows as lists in feature order, or as objects keyed by feature name."""

    instances: list[list[Any] | dict[str, Any]] = Field(
        min_length=1, examples=[[[5.8, 3.0, 4.35, 1.3]]]
    )


class V1Response(BaseModel):
    """One prediction per instance, in order: class labels, or values for regressors."""

    predictions: list[Any]


class V1ModelStatus(BaseModel):
    """Whether the model can serve."""

    name: str
    ready: bool


@router.get(
    "/v1/models/{model}",
    summary="V1 model status",
    response_model=V1ModelStatus,
    responses=error_responses(404),
)
async def status(model: str, dataplane: DataPlaneDep) -> V1ModelStatus:
    """`ready` is true when the default version is loaded and warmed up."""
    found = dataplane.registry.get(model)
    return V1ModelStatus(name=model, ready=found.ready)


@router.post(
    "/v1/models/{model}:predict",
    summary="V1 predict",
    response_model=V1Response,
    responses=error_responses(400, 404, 413, 422, 503, 504),
    dependencies=[Depends(enforce_json_limits)],
)
async def predict(
    model: str, body: V1Request, request: Request, dataplane: DataPlaneDep
) -> V1Response:
    """Predict the default version on `instances`."""
    served = dataplane.route(model, None, rollout_key, request.scope)
    instances = body.instances
    if all(isinstance(i, dict) for i in instances):
        batch = served.schema.from_records([i for i in instances if isinstance(i, dict)])
    else:
        batch = served.schema.from_rows([i if isinstance(i, list) else [i] for i in instances])
    prediction = await predict_for(request, dataplane, served, batch)
    return V1Response(predictions=prediction.predict.tolist())
