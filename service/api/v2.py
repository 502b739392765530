"""Open Inference Protocol (KServe V2) REST: metadata, readiness and inference.

The infer routes are the hot path: the body goes straight from bytes to numpy
through `protocol` (JSON or Triton's binary tensor extension), never through
Pydantic. The Pydantic models here only document the wire format in `/docs`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope

from tabserve.service import __version__
from tabserve.service.api.deadlines import TIMEOUT_HEADER, deadline_for, predict_watched
from tabserve.service.api.deps import DataPlaneDep, WebDep
from tabserve.service.api.health import MODEL_READY_RESPONSES, ModelReadyBody, model_ready_answer
from tabserve.service.api.limits import JsonLimits, check_strings, json_limits
from tabserve.service.api.rollout_key import rollout_key
from tabserve.service.api.schemas import error_responses
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.errors import InvalidInputError
from tabserve.service.core.served import ServedModel
from tabserve.service.protocol import (
    V2CodecError,
    decode_request,
    encode_response,
    parse_header_length,
    prediction_outputs,
)
from tabserve.service.protocol.v2_model import (
    SERVER_NAME,
    batch_of,
    chosen_outputs,
    model_info,
)
from tabserve.service.protocol.v2_model import (
    parse_version as parse_version,  # re-exported: records, streams and the lanes use it
)
from tabserve.service.web_config import WebConfig

router = APIRouter(tags=["open-inference-v2"])

HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ["binary_tensor_data"]


class TensorMetadata(BaseModel):
    """A tensor's name, datatype and shape (-1 is any number of rows)."""

    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    """`GET /v2`."""

    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    """`GET /v2/models/{model}`: inputs are one tensor per feature, in manifest order."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferInputDoc(BaseModel):
    """An input tensor: either one `[rows, features]` tensor, or one `[rows]` per feature."""

    name: str = Field(examples=["input-0"])
    shape: list[int] = Field(examples=[[1, 4]])
    datatype: str = Field(examples=["FP64"], description="FP64, FP32, INT64, ... or BYTES.")
    parameters: dict[str, Any] | None = None
    data: list[Any] = Field(examples=[[5.8, 3.0, 4.35, 1.3]], description="Row-major values.")


class RequestedOutputDoc(BaseModel):
    """An output to return: `predict`, or `predict_proba` for classifiers."""

    name: str = Field(examples=["predict"])
    parameters: dict[str, Any] | None = None


class InferenceRequestDoc(BaseModel):
    """The inference request (JSON; Triton's binary extension is accepted too)."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInputDoc]
    outputs: list[RequestedOutputDoc] | None = None


class InferOutputDoc(BaseModel):
    """An output tensor."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponseDoc(BaseModel):
    """The inference response."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[InferOutputDoc]


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with `$defs` references resolved in place."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                return resolve(defs[ref.rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


_INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_schema(InferenceRequestDoc)},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "Triton binary tensor extension: JSON header of "
                "`Inference-Header-Content-Length` bytes, then the raw tensors.",
            },
        },
    }
}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": InferenceResponseDoc, "description": "Outputs, in JSON or binary form."},
    **error_responses(400, 404, 413, 503, 504),
}


@router.get("/v2", summary="Server metadata", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    """Name, version and protocol extensions of this server."""
    return ServerMetadata(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)


@router.get(
    "/v2/models/{model}",
    summary="Model metadata (default version)",
    response_model=ModelMetadata,
    responses=error_responses(404, 503),
)
async def model_metadata(model: str, dataplane: DataPlaneDep) -> ModelMetadata:
    """Inputs, outputs and versions of a model's default version."""
    return _metadata(dataplane, dataplane.model(model))


@router.get(
    "/v2/models/{model}/versions/{version}",
    summary="Model metadata (one version)",
    response_model=ModelMetadata,
    responses=error_responses(404, 503),
)
async def version_metadata(model: str, version: str, dataplane: DataPlaneDep) -> ModelMetadata:
    """Inputs, outputs and versions, for one version."""
    return _metadata(dataplane, dataplane.model(model, parse_version(model, version)))


@router.get(
    "/v2/models/{model}/ready",
    summary="Model readiness (default version)",
    response_model=ModelReadyBody,
    responses=MODEL_READY_RESPONSES,
)
async def model_ready(model: str, dataplane: DataPlaneDep) -> JSONResponse:
    """200 when the default version can serve, 400 when it cannot, 404 when unknown."""
    return model_ready_answer(dataplane.registry.get(model))


@router.get(
    "/v2/models/{model}/versions/{version}/ready",
    summary="Model readiness (one version)",
    response_model=ModelReadyBody,
    responses=MODEL_READY_RESPONSES,
)
async def version_ready(model: str, version: str, dataplane: DataPlaneDep) -> JSONResponse:
    """200 when this version can serve, 400 when it cannot, 404 when unknown."""
    return model_ready_answer(dataplane.registry.get(model, parse_version(model, version)))


@router.post(
    "/v2/models/{model}/infer",
    summary="Inference (default version)",
    response_class=Response,
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_DOC,
)
async def infer(model: str, request: Request, dataplane: DataPlaneDep, web: WebDep) -> Response:
    """Predict on one `[rows, features]` tensor or one tensor per feature."""
    served = dataplane.route(model, None, rollout_key, request.scope)
    return await _infer_route(dataplane, served, request, web)


@router.post(
    "/v2/models/{model}/versions/{version}/infer",
    summary="Inference (one version)",
    response_class=Response,
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_DOC,
)
async def infer_version(
    model: str, version: str, request: Request, dataplane: DataPlaneDep, web: WebDep
) -> Response:
    """Predict with one version."""
    served = dataplane.model(model, parse_version(model, version))
    return await _infer_route(dataplane, served, request, web)


async def _infer_route(
    dataplane: DataPlane, model: ServedModel, request: Request, web: WebConfig
) -> Response:
    return await run_inference(
        dataplane,
        model,
        await request.body(),
        request.headers.get(HEADER_LENGTH),
        deadline=deadline_for(request.headers.get(TIMEOUT_HEADER), web.deadlines),
        scope=request.scope,
        receive=request.receive,
        limits=json_limits(web),
    )


def _metadata(dataplane: DataPlane, model: ServedModel) -> ModelMetadata:
    versions = [str(m.version) for m in dataplane.registry.versions(model.name)]
    info = model_info(model, versions)
    return ModelMetadata(
        name=info.name,
        versions=info.versions,
        platform=info.platform,
        inputs=[
            TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape) for t in info.inputs
        ],
        outputs=[
            TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape) for t in info.outputs
        ],
        parameters=info.parameters,
    )


async def run_inference(
    dataplane: DataPlane,
    model: ServedModel,
    body: bytes,
    header_length: str | None,
    *,
    deadline: float,
    scope: Scope,
    receive: Receive,
    limits: JsonLimits | None = None,
) -> Response:
    """Decode a V2 body, validate, predict, encode: the whole infer route, minus routing.

    `header_length` is the raw `Inference-Header-Content-Length` request header;
    `scope` and `receive` are the request's (see `predict_watched`: its id, and
    dropping its work if its client leaves while queued); `limits` bounds the
    length of BYTES elements.
    """
    try:
        parsed = decode_request(body, parse_header_length(header_length))
    except V2CodecError as exc:
        raise InvalidInputError(str(exc), "malformed") from exc
    if limits is not None:
        for tensor in parsed.inputs:
            if tensor.datatype == "BYTES":
                check_strings(tensor.name, tensor.data, limits)
    batch = batch_of(model.schema, parsed.inputs)
    wanted = chosen_outputs(parsed, model)
    prediction = await predict_watched(
        dataplane, model, batch, deadline=deadline, scope=scope, receive=receive
    )
    tensors = prediction_outputs(prediction, [name for name, _ in wanted])
    payload, json_length = encode_response(
        model_name=model.name,
        model_version=str(model.version),
        request_id=parsed.id,
        outputs=tensors,
        binary=[binary for _, binary in wanted],
    )
    if json_length is None:
        return Response(payload, media_type="application/json")
    return Response(
        payload,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(json_length)},
    )
