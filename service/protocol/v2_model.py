"""What the Open Inference Protocol says about a served model, whatever the transport.

The HTTP routes (`api/v2.py`) and the gRPC service (`service/grpc/`) both call these,
so a version path, the tensors a request may send, the outputs it may ask for and the
model's metadata are decided (and their errors worded) in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tabserve.service.core.digits import parse_digits
from tabserve.service.core.errors import InvalidInputError, ModelNotFoundError, Problem
from tabserve.service.core.served import ServedModel
from tabserve.service.core.validation import (
    MAX_PROBLEMS,
    FeatureSchema,
    ValidatedBatch,
    did_you_mean,
)
from tabserve.service.protocol.v2_types import InferenceRequest, InputTensor

SERVER_NAME = "tabserve"


def parse_version(model: str, version: str) -> int:
    """A version path segment as an int, or ModelNotFoundError (ASCII digits only)."""
    number = parse_digits(version)
    if number is None:
        shown = version if len(version) <= 40 else version[:40] + "..."
        raise ModelNotFoundError(
            f"model {model!r} has no version {shown!r}; versions are positive integers "
            "written in ASCII digits"
        )
    return number


def batch_of(schema: FeatureSchema, inputs: list[InputTensor]) -> ValidatedBatch:
    """One `[rows, features]` tensor, or one tensor per feature (named as the features)."""
    named = {t.name for t in inputs}
    if len(inputs) == 1 and inputs[0].name not in schema.index:
        return schema.from_matrix(inputs[0].data)
    unknown = sorted(named - set(schema.index))
    if unknown:
        raise InvalidInputError.of(
            "unknown_feature",
            [
                Problem(
                    f"input {name!r}",
                    f"one [rows, {schema.width}] tensor, or one tensor per feature named "
                    f"as the features: {', '.join(schema.names)}"
                    f"{did_you_mean(name, schema.names)}",
                    name,
                )
                for name in unknown[:MAX_PROBLEMS]  # a suggestion each: the first few only
            ],
        )
    columns = {}
    for tensor in inputs:
        data = tensor.data
        if data.ndim == 2 and data.shape[1] == 1:
            data = data[:, 0]
        if data.ndim != 1:
            raise InvalidInputError.of(
                "shape",
                [Problem(f"input {tensor.name!r}", "shape [rows] or [rows, 1]", list(data.shape))],
            )
        columns[tensor.name] = data
    return schema.from_columns(columns)


def chosen_outputs(parsed: InferenceRequest, model: ServedModel) -> list[tuple[str, bool]]:
    """The outputs to answer with, in order, each with whether it is wanted in binary."""
    available = ["predict"] + (["predict_proba"] if model.manifest.task == "classification" else [])
    if parsed.outputs is None:
        return [(name, parsed.binary_output_default) for name in available]
    chosen = []
    for output in parsed.outputs:
        if output.name not in available:
            raise InvalidInputError.of(
                "unknown_output",
                [Problem("output name", f"one of {available}", output.name)],
            )
        chosen.append((output.name, parsed.binary_for(output.name)))
    return chosen


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A tensor's name, datatype and shape (-1 is any number of rows)."""

    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A served version's metadata: inputs are one tensor per feature, in manifest order."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    parameters: dict[str, Any] = field(default_factory=dict)


def model_info(model: ServedModel, versions: list[str]) -> ModelInfo:
    """The metadata of `model`; `versions` are every loaded version of its name."""
    manifest = model.manifest
    inputs = [
        TensorInfo(name=f.name, datatype="FP64" if f.type == "number" else "BYTES", shape=[-1])
        for f in manifest.features
    ]
    outputs = [TensorInfo(name="predict", datatype=_label_datatype(model), shape=[-1])]
    classes = manifest.target.classes
    if classes:
        outputs.append(TensorInfo(name="predict_proba", datatype="FP64", shape=[-1, len(classes)]))
    return ModelInfo(
        name=model.name,
        versions=versions,
        platform=f"scikit-learn_{manifest.environment.scikit_learn}",
        inputs=inputs,
        outputs=outputs,
        parameters={
            "version": str(model.version),
            "task": manifest.task,
            "engine": model.runtime.engine,
            "classes": classes,
            "single_tensor_shape": [-1, len(manifest.features)],
        },
    )


def _label_datatype(model: ServedModel) -> str:
    classes = model.manifest.target.classes
    if classes is None:
        return "FP64"
    return "INT64" if all(isinstance(c, int) for c in classes) else "BYTES"
