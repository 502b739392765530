"""Building and encoding V2 inference responses: the one home of V2 outputs.

`prediction_outputs` turns a prediction into output tensors for every transport (the
HTTP routes, the express lane, the sinks); `encode_response` writes them as JSON, or with
Triton's binary extension (a binary output carries ``parameters.binary_data_size`` and the
answer gets an ``Inference-Header-Content-Length`` header). Invalid arguments are server
bugs and raise `ValueError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from tabserve.service.core.runtime import Prediction
from tabserve.service.protocol.triton_binary import pack_bytes
from tabserve.service.protocol.v2_datatypes import (
    BYTES,
    DATATYPE_NAMES,
    SPECS,
    STR_TYPES,
    datatype_of,
)
from tabserve.service.protocol.v2_types import OutputTensor


def output_tensor(name: str, data: NDArray[Any]) -> OutputTensor:
    """One output tensor of `data`, its datatype read from its dtype (numpy strings as BYTES)."""
    if data.dtype.kind in "US":
        data = data.astype(object)
    return OutputTensor(name, datatype_of(data), data.shape, data)


def prediction_outputs(prediction: Prediction, names: Iterable[str]) -> list[OutputTensor]:
    """The outputs `names` ("predict", "predict_proba") of `prediction`, in that order.

    Raises ValueError for "predict_proba" when the prediction has no probabilities.
    """
    outputs = []
    for name in names:
        data = prediction.proba if name == "predict_proba" else prediction.predict
        if data is None:
            raise ValueError(f"output {name!r}: the prediction has no probabilities")
        outputs.append(output_tensor(name, data))
    return outputs


def default_answer(
    model_name: str, model_version: str, request_id: str | None, prediction: Prediction
) -> bytes:
    """The JSON answer with the default outputs: predict, and predict_proba when there is one.

    The bytes `encode_response` writes for `prediction_outputs` of the same prediction,
    in one `orjson.dumps` call for the common dtypes (this is every express answer).
    """
    labels, proba = prediction.predict, prediction.proba
    common = labels.dtype.kind in "biufU" and labels.dtype.isnative
    if not common or (proba is not None and not (proba.dtype.kind == "f" and proba.dtype.isnative)):
        names = ("predict",) if proba is None else ("predict", "predict_proba")
        body, _ = encode_response(
            model_name=model_name,
            model_version=model_version,
            request_id=request_id,
            outputs=prediction_outputs(prediction, names),
            binary=[False] * len(names),
        )
        return body
    rows = labels.shape[0]
    label_data: Any = labels.tolist() if labels.dtype.kind == "U" else _flat(labels)
    outputs: list[dict[str, object]] = [
        {"name": "predict", "datatype": datatype_of(labels), "shape": [rows], "data": label_data}
    ]
    if proba is not None:
        outputs.append(
            {
                "name": "predict_proba",
                "datatype": datatype_of(proba),
                "shape": [rows, proba.shape[1]],
                "data": _flat(proba),
            }
        )
    document: dict[str, object] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        document["id"] = request_id
    document["outputs"] = outputs
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def _flat(array: NDArray[Any]) -> NDArray[Any]:
    """Row-major and contiguous, as orjson serialises numpy arrays."""
    return (array if array.flags.c_contiguous else np.ascontiguousarray(array)).reshape(-1)


def encode_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: list[OutputTensor],
    binary: list[bool],
    parameters: dict[str, object] | None = None,
) -> tuple[bytes, int | None]:
    """Encode a V2 inference response.

    ``binary[i]`` says whether ``outputs[i]`` goes as binary data after the JSON header. Returns
    ``(body, header_length)``: header_length is None when every output is JSON (the body is pure
    JSON), else the JSON header's byte length for the ``Inference-Header-Content-Length``
    response header. Each output's data is converted to its declared datatype (same-kind casts
    only, e.g. FP64 -> FP32); JSON data is the flat row-major list, BYTES as strings. NaN and
    infinities are not JSON: in JSON outputs they are written as null.
    """
    if len(binary) != len(outputs):
        raise ValueError(f"got {len(outputs)} outputs but {len(binary)} binary flags")
    entries: list[dict[str, object]] = []
    chunks: list[bytes] = []
    for output, as_binary in zip(outputs, binary, strict=True):
        entry, chunk = _encode_output(output, as_binary)
        entries.append(entry)
        if chunk is not None:
            chunks.append(chunk)

    document: dict[str, object] = {"model_name": model_name}
    if model_version is not None:
        document["model_version"] = model_version
    if request_id is not None:
        document["id"] = request_id
    if parameters:
        document["parameters"] = parameters
    document["outputs"] = entries
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not any(binary):
        return header, None
    return b"".join((header, *chunks)), len(header)


def _encode_output(output: OutputTensor, as_binary: bool) -> tuple[dict[str, object], bytes | None]:
    spec = SPECS.get(output.datatype)
    if spec is None:
        raise ValueError(
            f"output {output.name!r} has unknown datatype {output.datatype!r}; "
            f"expected one of {DATATYPE_NAMES}"
        )
    shape = [int(d) for d in output.shape]
    data = output.data
    if data.size != math.prod(shape):
        raise ValueError(
            f"output {output.name!r} has {data.size} elements but shape {shape} needs "
            f"{math.prod(shape)}"
        )
    entry: dict[str, object] = {"name": output.name, "datatype": spec.name, "shape": shape}

    if spec.family == BYTES:
        texts = _texts(output)
        if not as_binary:
            entry["data"] = texts
            return entry, None
        chunk = pack_bytes(texts)
        entry["parameters"] = {"binary_data_size": len(chunk)}
        return entry, chunk

    if not as_binary and data.dtype == spec.dtype and data.flags.c_contiguous:
        entry["data"] = data.reshape(-1)  # already what orjson writes: no cast, no copy
        return entry, None
    if data.dtype.kind in "OUS" or not np.can_cast(data.dtype, spec.dtype, casting="same_kind"):
        raise ValueError(f"output {output.name!r}: cannot send a {data.dtype} array as {spec.name}")
    # Binary data is little-endian by definition; orjson wants native byte order.
    flat = np.ascontiguousarray(data, dtype=spec.wire if as_binary else spec.dtype).reshape(-1)
    if not as_binary:
        entry["data"] = flat
        return entry, None
    chunk = flat.tobytes()
    entry["parameters"] = {"binary_data_size": len(chunk)}
    return entry, chunk


def _texts(output: OutputTensor) -> list[str]:
    """A BYTES output's elements as str, row-major (bytes are decoded as UTF-8)."""
    data = output.data
    kind = data.dtype.kind
    if kind not in "OUS":
        raise ValueError(
            f"output {output.name!r}: cannot send a {data.dtype} array as BYTES; "
            "expected str, bytes or object"
        )
    items: list[Any] = data.reshape(-1).tolist()
    if kind == "U" or set(map(type, items)) <= STR_TYPES:
        return items
    texts: list[str] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, bytes):
            try:
                texts.append(item.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"output {output.name!r}: BYTES element {index} is not valid UTF-8"
                ) from exc
        else:
            raise ValueError(
                f"output {output.name!r}: BYTES element {index} is {type(item).__name__}; "
                "expected str or bytes"
            )
    return texts
