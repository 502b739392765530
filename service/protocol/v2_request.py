"""Decoding a V2 inference request: the JSON document, its inputs and requested outputs.

Requests are parsed with orjson straight into numpy arrays (no Pydantic on the tensor path).
Tensor ``data`` is a JSON array (`v2_json`), or binary data after the JSON header with Triton's
extension (`triton_binary`). Outputs are requested in binary with ``parameters.binary_data`` on
a requested output, or for all outputs with the request-level ``parameters.binary_data_output``;
the per-output setting wins.
"""

from __future__ import annotations

import math
from typing import Final

import orjson

from tabserve.service.protocol.triton_binary import HEADER_NAME, decode_binary
from tabserve.service.protocol.v2_datatypes import (
    DATATYPE_NAMES,
    MAX_NESTING,
    SPECS,
    json_kind,
    show,
)
from tabserve.service.protocol.v2_json import decode_json
from tabserve.service.protocol.v2_types import (
    InferenceRequest,
    InputTensor,
    RequestedOutput,
    V2CodecError,
)

_MAX_ELEMENTS: Final = 2**60  # numpy refuses shapes whose byte size overflows int64, even if empty


def decode_request(body: bytes, header_length: int | None) -> InferenceRequest:
    """Decode a V2 inference request body.

    `header_length` is the ``Inference-Header-Content-Length`` header (None when absent): with it
    ``body[:header_length]`` is the JSON object and the rest holds the binary input tensors;
    without it the whole body is JSON.
    """
    size = len(body)
    header: bytes | memoryview
    if header_length is None:
        header, where = body, "the request body"
    else:
        if type(header_length) is not int or header_length < 0:
            raise V2CodecError(
                f"the {HEADER_NAME} header must be a non-negative integer, got {header_length!r}"
            )
        if header_length == 0:
            raise V2CodecError(
                f"raw binary requests ({HEADER_NAME}: 0) are not supported; send the JSON "
                f"inference header first and give its length in {HEADER_NAME}"
            )
        if header_length > size:
            raise V2CodecError(
                f"the {HEADER_NAME} header is {header_length} but the request body has only "
                f"{size} bytes"
            )
        header = memoryview(body)[:header_length]
        where = f"the inference header (the first {header_length} bytes of the body)"
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise V2CodecError(f"{where} is not valid JSON: {exc}") from exc
    if type(document) is not dict:
        raise V2CodecError(f"{where} must be a JSON object, got {json_kind(document)}")

    request_id = document.get("id")
    if request_id is not None and type(request_id) is not str:
        raise V2CodecError(f"'id' must be a string, got {json_kind(request_id)}")

    parameters = document.get("parameters")
    if parameters is None:
        parameters = {}
    elif type(parameters) is not dict:
        raise V2CodecError(f"'parameters' must be an object, got {json_kind(parameters)}")
    binary_output_default = parameters.get("binary_data_output", False)
    if type(binary_output_default) is not bool:
        raise V2CodecError(
            "parameters.binary_data_output must be true or false, got "
            f"{show(binary_output_default)}"
        )

    raw_inputs = document.get("inputs")
    if raw_inputs is None:
        raise V2CodecError("the request has no 'inputs'; expected an array of input tensors")
    if type(raw_inputs) is not list:
        raise V2CodecError(
            f"'inputs' must be an array of input tensors, got {json_kind(raw_inputs)}"
        )
    if not raw_inputs:
        raise V2CodecError("'inputs' is empty; expected at least one input tensor")

    has_binary = header_length is not None
    offset = size if header_length is None else header_length
    inputs: list[InputTensor] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_inputs):
        tensor, offset = _decode_input(index, raw, body, offset, has_binary, seen)
        inputs.append(tensor)
    if header_length is not None and offset != size:
        raise V2CodecError(
            f"the request body has {size - header_length} bytes of binary data after the "
            "inference header but the inputs' parameters.binary_data_size add up to "
            f"{offset - header_length}"
        )

    return InferenceRequest(
        id=request_id,
        inputs=inputs,
        outputs=_decode_outputs(document.get("outputs")),
        binary_output_default=binary_output_default,
        parameters=parameters,
    )


def _decode_input(
    index: int, raw: object, body: bytes, offset: int, has_binary: bool, seen: set[str]
) -> tuple[InputTensor, int]:
    """Decode inputs[index]; returns the tensor and the offset past its binary data."""
    if type(raw) is not dict:
        raise V2CodecError(f"inputs[{index}] must be an object, got {json_kind(raw)}")
    name = raw.get("name")
    if type(name) is not str or not name:
        raise V2CodecError(f"inputs[{index}] has no 'name'; expected a non-empty string")
    if name in seen:
        raise V2CodecError(f"duplicate input name {name!r} (inputs[{index}]); names must be unique")
    seen.add(name)

    datatype = raw.get("datatype")
    if datatype is None:
        raise V2CodecError(f"input {name!r} has no 'datatype'; expected one of {DATATYPE_NAMES}")
    spec = SPECS.get(datatype) if type(datatype) is str else None
    if spec is None:
        raise V2CodecError(
            f"input {name!r} has unknown datatype {show(datatype)}; "
            f"expected one of {DATATYPE_NAMES}"
        )

    raw_shape = raw.get("shape")
    if raw_shape is None:
        raise V2CodecError(
            f"input {name!r} has no 'shape'; expected an array of non-negative integers"
        )
    if type(raw_shape) is not list or not all(type(d) is int and d >= 0 for d in raw_shape):
        raise V2CodecError(
            f"input {name!r}: 'shape' must be an array of non-negative integers, "
            f"got {show(raw_shape)}"
        )
    if len(raw_shape) > MAX_NESTING:
        raise V2CodecError(
            f"input {name!r}: 'shape' has {len(raw_shape)} dimensions; at most {MAX_NESTING} "
            "are supported"
        )
    shape: tuple[int, ...] = tuple(raw_shape)
    count = math.prod(shape)
    if count > _MAX_ELEMENTS or (count == 0 and math.prod(d for d in shape if d) > _MAX_ELEMENTS):
        raise V2CodecError(
            f"input {name!r}: shape {list(shape)} is too large (over 2**60 elements, counting "
            "only non-zero dimensions)"
        )

    parameters = raw.get("parameters")
    binary_size = None
    if parameters is not None:
        if type(parameters) is not dict:
            raise V2CodecError(
                f"input {name!r}: 'parameters' must be an object, got {json_kind(parameters)}"
            )
        if "shared_memory_region" in parameters:
            raise V2CodecError(
                f"input {name!r}: the shared-memory extension is not supported; send the data "
                "in 'data' or as binary data"
            )
        binary_size = parameters.get("binary_data_size")

    if binary_size is None:
        data = raw.get("data")
        if data is None:
            raise V2CodecError(
                f"input {name!r} has no 'data' and no parameters.binary_data_size; "
                "expected one of them"
            )
        array = decode_json(name, spec, shape, count, data)
        return InputTensor(name, spec.name, shape, array), offset

    if type(binary_size) is not int or binary_size < 0:
        raise V2CodecError(
            f"input {name!r}: parameters.binary_data_size must be a non-negative integer, "
            f"got {show(binary_size)}"
        )
    if "data" in raw:
        raise V2CodecError(
            f"input {name!r} has both 'data' and parameters.binary_data_size; send one of them"
        )
    if not has_binary:
        raise V2CodecError(
            f"input {name!r} declares parameters.binary_data_size but the request has no "
            f"{HEADER_NAME} header, so the body holds no binary data"
        )
    array = decode_binary(name, spec, shape, count, body, offset, binary_size)
    return InputTensor(name, spec.name, shape, array), offset + binary_size


def _decode_outputs(raw: object) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if type(raw) is not list:
        raise V2CodecError(
            f"'outputs' must be an array of objects with a 'name', got {json_kind(raw)}"
        )
    if not raw:
        return None
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        if type(item) is not dict:
            raise V2CodecError(
                f"outputs[{index}] must be an object with a 'name', got {json_kind(item)}"
            )
        name = item.get("name")
        if type(name) is not str or not name:
            raise V2CodecError(f"outputs[{index}] has no 'name'; expected a non-empty string")
        if name in seen:
            raise V2CodecError(
                f"duplicate output name {name!r} (outputs[{index}]); names must be unique"
            )
        seen.add(name)
        binary = None
        parameters = item.get("parameters")
        if parameters is not None:
            if type(parameters) is not dict:
                raise V2CodecError(
                    f"output {name!r}: 'parameters' must be an object, got {json_kind(parameters)}"
                )
            if "shared_memory_region" in parameters:
                raise V2CodecError(f"output {name!r}: the shared-memory extension is not supported")
            if "classification" in parameters:
                raise V2CodecError(
                    f"output {name!r}: the classification extension is not supported"
                )
            binary = parameters.get("binary_data")
            if binary is not None and type(binary) is not bool:
                raise V2CodecError(
                    f"output {name!r}: parameters.binary_data must be true or false, "
                    f"got {show(binary)}"
                )
        outputs.append(RequestedOutput(name, binary))
    return outputs
