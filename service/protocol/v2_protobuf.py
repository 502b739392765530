"""The Open Inference Protocol's protobuf messages (KServe's `grpc_predict_v2.proto`).

`decode_infer_request` turns a `ModelInferRequest` into the same `InferenceRequest` the
JSON and Triton-binary decoders make, so the rest of the path (validation, batching,
outputs) is the HTTP route's. Values come as typed `contents` or as
`raw_input_contents` (little-endian, row-major; BYTES as 4-byte length prefixes, as in
Triton's binary extension). `encode_infer_response` answers in `raw_output_contents`
when the request sent raw inputs (what tritonclient and KServe's server do) or asked
for binary outputs (`binary_data_output`, or `binary_data` on a requested output); the
protocol allows raw contents for every output or none, so one such request is enough.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb
from tabserve.service.protocol.triton_binary import decode_binary, pack_bytes
from tabserve.service.protocol.v2_datatypes import (
    BYTES,
    DATATYPE_NAMES,
    INT,
    MAX_NESTING,
    SPECS,
    Spec,
    show,
)
from tabserve.service.protocol.v2_types import (
    InferenceRequest,
    InputTensor,
    OutputTensor,
    RequestedOutput,
    V2CodecError,
)

_MAX_ELEMENTS: Final = 2**60

CONTENTS_FIELD: Final[dict[str, str]] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The `InferTensorContents` field each datatype's values go in (FP16 has none: raw only)."""
_ALL_FIELDS: Final = tuple(dict.fromkeys(CONTENTS_FIELD.values()))


def decode_infer_request(request: pb.ModelInferRequest) -> tuple[InferenceRequest, bool]:
    """The decoded request, and whether it sent raw input contents (then outputs are raw)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise V2CodecError(
            f"raw_input_contents has {len(raw)} entries but the request has "
            f"{len(request.inputs)} inputs; expected one entry per input, in order"
        )
    if not request.inputs:
        raise V2CodecError("the request has no 'inputs'; expected at least one input tensor")
    inputs: list[InputTensor] = []
    seen: set[str] = set()
    for index, tensor in enumerate(request.inputs):
        inputs.append(_decode_input(index, tensor, raw[index] if raw else None, seen))
    binary_default = _bool_parameter(request.parameters, "binary_data_output", "parameters")
    outputs = _decode_outputs(request.outputs)
    parsed = InferenceRequest(
        id=request.id or None,
        inputs=inputs,
        outputs=outputs,
        binary_output_default=binary_default or False,
        parameters={},
    )
    return parsed, bool(raw)


def _decode_input(
    index: int, tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, seen: set[str]
) -> InputTensor:
    name = tensor.name
    if not name:
        raise V2CodecError(f"inputs[{index}] has no 'name'; expected a non-empty string")
    if name in seen:
        raise V2CodecError(f"duplicate input name {name!r} (inputs[{index}]); names must be unique")
    seen.add(name)
    spec = SPECS.get(tensor.datatype)
    if spec is None:
        raise V2CodecError(
            f"input {name!r} has unknown datatype {show(tensor.datatype)}; "
            f"expected one of {DATATYPE_NAMES}"
        )
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise V2CodecError(
            f"input {name!r}: 'shape' must be non-negative integers, got {list(shape)}"
        )
    if len(shape) > MAX_NESTING:
        raise V2CodecError(
            f"input {name!r}: 'shape' has {len(shape)} dimensions; at most {MAX_NESTING} "
            "are supported"
        )
    count = math.prod(shape)
    if count > _MAX_ELEMENTS or (count == 0 and math.prod(d for d in shape if d) > _MAX_ELEMENTS):
        raise V2CodecError(
            f"input {name!r}: shape {list(shape)} is too large (over 2**60 elements, counting "
            "only non-zero dimensions)"
        )
    if "shared_memory_region" in tensor.parameters:
        raise V2CodecError(
            f"input {name!r}: the shared-memory extension is not supported; send the data "
            "in 'contents' or 'raw_input_contents'"
        )
    if raw is not None:
        if tensor.HasField("contents"):
            raise V2CodecError(
                f"input {name!r} has 'contents' but the request uses raw_input_contents; "
                "send every input one way"
            )
        return InputTensor(name, spec.name, shape, _decode_raw(name, spec, shape, count, raw))
    return InputTensor(name, spec.name, shape, _decode_contents(name, spec, shape, count, tensor))


def _decode_raw(
    name: str, spec: Spec, shape: tuple[int, ...], count: int, raw: bytes
) -> NDArray[Any]:
    if spec.family != BYTES and len(raw) != count * spec.wire.itemsize:
        size = spec.wire.itemsize
        raise V2CodecError(
            f"input {name!r}: its raw_input_contents entry is {len(raw)} bytes but shape "
            f"{list(shape)} of {spec.name} needs {count * size} bytes ({count} elements of "
            f"{size} byte{'s' if size > 1 else ''})"
        )
    return decode_binary(name, spec, shape, count, raw, 0, len(raw))


def _decode_contents(
    name: str,
    spec: Spec,
    shape: tuple[int, ...],
    count: int,
    tensor: pb.ModelInferRequest.InferInputTensor,
) -> NDArray[Any]:
    field = CONTENTS_FIELD.get(spec.name)
    if field is None:
        raise V2CodecError(
            f"input {name!r}: {spec.name} has no typed contents field; send it in "
            "raw_input_contents"
        )
    contents = tensor.contents
    values = getattr(contents, field)
    others = [f for f in _ALL_FIELDS if f != field and len(getattr(contents, f))]
    if others:
        raise V2CodecError(
            f"input {name!r}: a {spec.name} tensor carries its values in contents.{field}, "
            f"got contents.{others[0]}"
        )
    if len(values) != count:
        raise V2CodecError(
            f"input {name!r}: contents.{field} has {len(values)} values but shape "
            f"{list(shape)} needs {count}"
        )
    if spec.family == BYTES:
        return _texts(name, values).reshape(shape)
    if spec.family == INT:
        array = np.asarray(values, dtype=np.int64 if spec.low < 0 else np.uint64)
        bad = np.flatnonzero((array < spec.low) | (array > spec.high))
        if bad.size:
            raise V2CodecError(
                f"input {name!r}: element {int(bad[0])} is {int(array[bad[0]])}, outside "
                f"{spec.name}'s range [{int(spec.low)}, {int(spec.high)}]"
            )
    return np.asarray(values, dtype=spec.dtype).reshape(shape)


def _texts(name: str, values: Any) -> NDArray[Any]:
    """BYTES elements as an object array of str (UTF-8), as the JSON decoder makes them."""
    texts = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        try:
            texts[index] = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise V2CodecError(
                f"input {name!r}: BYTES element {index} is not valid UTF-8; expected text"
            ) from exc
    return texts


def _bool_parameter(parameters: Any, key: str, where: str) -> bool | None:
    """A boolean parameter, None when absent; any other kind of value is refused."""
    if key not in parameters:
        return None
    value = parameters[key]
    if value.WhichOneof("parameter_choice") != "bool_param":
        raise V2CodecError(f"{where}.{key} must be a bool_param (true or false)")
    flag: bool = value.bool_param
    return flag


def _decode_outputs(
    raw: Any,
) -> list[RequestedOutput] | None:
    if not raw:
        return None
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        name = item.name
        if not name:
            raise V2CodecError(f"outputs[{index}] has no 'name'; expected a non-empty string")
        if name in seen:
            raise V2CodecError(
                f"duplicate output name {name!r} (outputs[{index}]); names must be unique"
            )
        seen.add(name)
        if "shared_memory_region" in item.parameters:
            raise V2CodecError(f"output {name!r}: the shared-memory extension is not supported")
        if "classification" in item.parameters:
            raise V2CodecError(f"output {name!r}: the classification extension is not supported")
        binary = _bool_parameter(item.parameters, "binary_data", f"output {name!r}: parameters")
        outputs.append(RequestedOutput(name, binary))
    return outputs


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[OutputTensor],
    raw: bool,
) -> pb.ModelInferResponse:
    """The response message: every output in `raw_output_contents` when `raw`, else typed."""
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request_id or ""
    )
    # A datatype without a typed field (FP16) can only go raw, and raw is all or none.
    raw = raw or any(o.datatype not in CONTENTS_FIELD for o in outputs)
    for output in outputs:
        spec = SPECS[output.datatype]
        tensor = response.outputs.add(
            name=output.name, datatype=spec.name, shape=[int(d) for d in output.shape]
        )
        data = output.data
        if spec.family == BYTES:
            texts = [_text(output.name, t) for t in data.reshape(-1).tolist()]
            if raw:
                response.raw_output_contents.append(pack_bytes(texts))
            else:
                tensor.contents.bytes_contents.extend(t.encode("utf-8") for t in texts)
            continue
        flat = np.ascontiguousarray(data, dtype=spec.wire if raw else spec.dtype).reshape(-1)
        if raw:
            response.raw_output_contents.append(flat.tobytes())
        else:
            getattr(tensor.contents, CONTENTS_FIELD[spec.name]).extend(flat.tolist())
    return response


def _text(name: str, item: object) -> str:
    """A BYTES output element as text, as the JSON encoder writes it (bytes as UTF-8)."""
    if isinstance(item, str):
        return item
    if isinstance(item, bytes):
        return item.decode("utf-8")
    raise ValueError(f"output {name!r}: BYTES element is {type(item).__name__}; expected str")
