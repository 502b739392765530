"""Open Inference Protocol (KServe V2) REST codec, with Triton's binary tensor data extension.

Requests are parsed with orjson straight into numpy arrays (no Pydantic on the tensor path).

Wire format, as the specs and `tritonclient.http` define it:

* Pure JSON: the body is the inference request object; tensor ``data`` is a JSON array in
  row-major order, flat or nested in the tensor's natural shape.
* Binary extension: the ``Inference-Header-Content-Length`` header gives the length of the JSON
  object at the start of the body; the binary tensors follow it, concatenated in the order of
  the inputs that carry ``parameters.binary_data_size``. Binary data is little-endian, row-major,
  unpadded; BOOL is one byte (0 or 1) per element and each BYTES element is a 4-byte
  little-endian unsigned length followed by that many bytes.
* Outputs are requested in binary with ``parameters.binary_data`` on a requested output, or for
  all outputs with the request-level ``parameters.binary_data_output``; the per-output setting
  wins. A binary response output carries ``parameters.binary_data_size`` and the response gets
  an ``Inference-Header-Content-Length`` header.

Every malformed request raises `V2CodecError` whose message names the field or tensor, what was
wrong and what was expected; the routes return it as ``{"error": str(exc)}`` with status 400.
Invalid arguments to `encode_response` are server bugs and raise `ValueError` instead.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final

import numpy as np
import orjson
from numpy.typing import NDArray

__all__ = [
    "InferenceRequest",
    "InputTensor",
    "OutputTensor",
    "RequestedOutput",
    "V2CodecError",
    "datatype_of",
    "decode_request",
    "encode_response",
    "parse_header_length",
]


class V2CodecError(Exception):
    """Malformed V2 request; str(exc) is a client-facing message naming the field/tensor and what
    was expected."""


@dataclass(frozen=True, slots=True, eq=False)
class InputTensor:
    """One decoded input tensor; `data` already has `shape` and the datatype's numpy dtype.

    BYTES inputs are object arrays of `str`. Arrays decoded from binary data may be read-only
    views of the request body.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: NDArray[Any]


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output named in the request's ``outputs``; `binary` is its ``parameters.binary_data``."""

    name: str
    binary: bool | None


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """A decoded inference request."""

    id: str | None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None
    binary_output_default: bool
    parameters: dict[str, object]

    def binary_for(self, output_name: str) -> bool:
        """Whether `output_name` must be returned as binary data.

        The output's own ``binary_data`` wins, else the request's ``binary_data_output``.
        """
        if self.outputs is not None:
            for requested in self.outputs:
                if requested.name == output_name and requested.binary is not None:
                    return requested.binary
        return self.binary_output_default


@dataclass(frozen=True, slots=True, eq=False)
class OutputTensor:
    """One output to encode; `data` may be numeric, bool, or str/bytes/object for BYTES."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: NDArray[Any]


# --------------------------------------------------------------------------- datatypes

_FLOAT: Final = "float"
_INT: Final = "int"
_BOOL: Final = "bool"
_BYTES: Final = "bytes"


@dataclass(frozen=True, slots=True)
class _Spec:
    """How one V2 datatype maps onto numpy."""

    name: str
    family: str  # _FLOAT, _INT, _BOOL or _BYTES
    dtype: np.dtype[Any]  # the array dtype handed to the model (native byte order)
    wire: np.dtype[Any]  # the little-endian dtype of the binary representation
    low: float  # smallest allowed value (ints: exact; floats: -max finite)
    high: float  # largest allowed value


def _int_spec(name: str, code: str) -> _Spec:
    info = np.iinfo(np.dtype(code))
    return _Spec(name, _INT, np.dtype(code), np.dtype("<" + code), int(info.min), int(info.max))


def _float_spec(name: str, code: str) -> _Spec:
    top = float(np.finfo(np.dtype(code)).max)
    return _Spec(name, _FLOAT, np.dtype(code), np.dtype("<" + code), -top, top)


_SPECS: Final[dict[str, _Spec]] = {
    "BOOL": _Spec("BOOL", _BOOL, np.dtype(np.bool_), np.dtype(np.bool_), 0, 1),
    "UINT8": _int_spec("UINT8", "u1"),
    "UINT16": _int_spec("UINT16", "u2"),
    "UINT32": _int_spec("UINT32", "u4"),
    "UINT64": _int_spec("UINT64", "u8"),
    "INT8": _int_spec("INT8", "i1"),
    "INT16": _int_spec("INT16", "i2"),
    "INT32": _int_spec("INT32", "i4"),
    "INT64": _int_spec("INT64", "i8"),
    "FP16": _float_spec("FP16", "f2"),
    "FP32": _float_spec("FP32", "f4"),
    "FP64": _float_spec("FP64", "f8"),
    "BYTES": _Spec("BYTES", _BYTES, np.dtype(object), np.dtype(object), 0, 0),
}
_DATATYPE_NAMES: Final = ", ".join(_SPECS)

# numpy dtype -> V2 datatype, for the fixed-size kinds (str/bytes/object handled by kind).
_DATATYPE_OF_DTYPE: Final[dict[np.dtype[Any], str]] = {
    spec.dtype: name for name, spec in _SPECS.items() if spec.family != _BYTES
}

_EXPECTED_ELEMENT: Final[dict[str, str]] = {
    _FLOAT: "a number",
    _INT: "an integer",
    _BOOL: "true or false",
    _BYTES: "a string",
}
_NUMBER_TYPES: Final[frozenset[type]] = frozenset((int, float))
_INT_TYPES: Final[frozenset[type]] = frozenset((int,))
_BOOL_TYPES: Final[frozenset[type]] = frozenset((bool,))
_STR_TYPES: Final[frozenset[type]] = frozenset((str,))
_EXACT_FLOAT_INT: Final = float(2**53)  # floats below this magnitude hold integers exactly
_MAX_NESTING: Final = 64  # numpy's own limit on dimensions
_MAX_ELEMENTS: Final = 2**60  # numpy refuses shapes whose byte size overflows int64, even if empty
_U32: Final = struct.Struct("<I")
_HEADER_NAME: Final = "Inference-Header-Content-Length"


def datatype_of(array: NDArray[Any]) -> str:
    """The V2 datatype for `array`'s dtype: "FP64", "INT64", "BOOL", "BYTES" for str/bytes/object.

    Raises ValueError for dtypes V2 cannot carry (complex, datetime, float128, ...).
    """
    dtype = array.dtype
    if dtype.kind in "OUS":
        return "BYTES"
    name = _DATATYPE_OF_DTYPE.get(dtype.newbyteorder("="))
    if name is None:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return name


def parse_header_length(value: str | None) -> int | None:
    """Parse the ``Inference-Header-Content-Length`` request header (None when absent)."""
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise V2CodecError(
            f"the {_HEADER_NAME} header must be a non-negative integer byte count, got {value!r}"
        )
    return int(text)


# --------------------------------------------------------------------------- decoding


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
                f"the {_HEADER_NAME} header must be a non-negative integer, got {header_length!r}"
            )
        if header_length == 0:
            raise V2CodecError(
                f"raw binary requests ({_HEADER_NAME}: 0) are not supported; send the JSON "
                f"inference header first and give its length in {_HEADER_NAME}"
            )
        if header_length > size:
            raise V2CodecError(
                f"the {_HEADER_NAME} header is {header_length} but the request body has only "
                f"{size} bytes"
            )
        header = memoryview(body)[:header_length]
        where = f"the inference header (the first {header_length} bytes of the body)"
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise V2CodecError(f"{where} is not valid JSON: {exc}") from exc
    if type(document) is not dict:
        raise V2CodecError(f"{where} must be a JSON object, got {_json_kind(document)}")

    request_id = document.get("id")
    if request_id is not None and type(request_id) is not str:
        raise V2CodecError(f"'id' must be a string, got {_json_kind(request_id)}")

    parameters = document.get("parameters")
    if parameters is None:
        parameters = {}
    elif type(parameters) is not dict:
        raise V2CodecError(f"'parameters' must be an object, got {_json_kind(parameters)}")
    binary_output_default = parameters.get("binary_data_output", False)
    if type(binary_output_default) is not bool:
        raise V2CodecError(
            "parameters.binary_data_output must be true or false, got "
            f"{_show(binary_output_default)}"
        )

    raw_inputs = document.get("inputs")
    if raw_inputs is None:
        raise V2CodecError("the request has no 'inputs'; expected an array of input tensors")
    if type(raw_inputs) is not list:
        raise V2CodecError(
            f"'inputs' must be an array of input tensors, got {_json_kind(raw_inputs)}"
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
        raise V2CodecError(f"inputs[{index}] must be an object, got {_json_kind(raw)}")
    name = raw.get("name")
    if type(name) is not str or not name:
        raise V2CodecError(f"inputs[{index}] has no 'name'; expected a non-empty string")
    if name in seen:
        raise V2CodecError(f"duplicate input name {name!r} (inputs[{index}]); names must be unique")
    seen.add(name)

    datatype = raw.get("datatype")
    if datatype is None:
        raise V2CodecError(f"input {name!r} has no 'datatype'; expected one of {_DATATYPE_NAMES}")
    spec = _SPECS.get(datatype) if type(datatype) is str else None
    if spec is None:
        raise V2CodecError(
            f"input {name!r} has unknown datatype {_show(datatype)}; "
            f"expected one of {_DATATYPE_NAMES}"
        )

    raw_shape = raw.get("shape")
    if raw_shape is None:
        raise V2CodecError(
            f"input {name!r} has no 'shape'; expected an array of non-negative integers"
        )
    if type(raw_shape) is not list or not all(type(d) is int and d >= 0 for d in raw_shape):
        raise V2CodecError(
            f"input {name!r}: 'shape' must be an array of non-negative integers, "
            f"got {_show(raw_shape)}"
        )
    if len(raw_shape) > _MAX_NESTING:
        raise V2CodecError(
            f"input {name!r}: 'shape' has {len(raw_shape)} dimensions; at most {_MAX_NESTING} "
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
                f"input {name!r}: 'parameters' must be an object, got {_json_kind(parameters)}"
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
        array = _decode_json(name, spec, shape, count, data)
        return InputTensor(name, spec.name, shape, array), offset

    if type(binary_size) is not int or binary_size < 0:
        raise V2CodecError(
            f"input {name!r}: parameters.binary_data_size must be a non-negative integer, "
            f"got {_show(binary_size)}"
        )
    if "data" in raw:
        raise V2CodecError(
            f"input {name!r} has both 'data' and parameters.binary_data_size; send one of them"
        )
    if not has_binary:
        raise V2CodecError(
            f"input {name!r} declares parameters.binary_data_size but the request has no "
            f"{_HEADER_NAME} header, so the body holds no binary data"
        )
    array = _decode_binary(name, spec, shape, count, body, offset, binary_size)
    return InputTensor(name, spec.name, shape, array), offset + binary_size


def _decode_binary(
    name: str,
    spec: _Spec,
    shape: tuple[int, ...],
    count: int,
    body: bytes,
    offset: int,
    size: int,
) -> NDArray[Any]:
    """The tensor held in body[offset:offset + size]."""
    available = len(body) - offset
    if spec.family == _BYTES:
        if size > available:
            raise _truncated(name, size, available)
        return _decode_bytes_binary(name, shape, count, body, offset, size)

    itemsize = spec.wire.itemsize
    expected = count * itemsize
    if size != expected:
        raise V2CodecError(
            f"input {name!r}: parameters.binary_data_size is {size} bytes but shape "
            f"{list(shape)} of {spec.name} needs {expected} bytes ({count} elements of "
            f"{itemsize} byte{'s' if itemsize > 1 else ''})"
        )
    if size > available:
        raise _truncated(name, size, available)
    if count == 0:
        return np.empty(shape, dtype=spec.dtype)
    if spec.family == _BOOL:
        octets = np.frombuffer(body, dtype=np.uint8, count=count, offset=offset)
        if octets.max() > 1:
            bad = int(np.argmax(octets > 1))
            raise V2CodecError(
                f"input {name!r}: BOOL binary element {bad} is the byte {int(octets[bad])}; "
                "expected 0 or 1"
            )
        return octets.view(np.bool_).reshape(shape)
    array = np.frombuffer(body, dtype=spec.wire, count=count, offset=offset)
    if not array.flags.aligned:
        # The JSON header has an arbitrary length, so binary tensors rarely start on an aligned
        # address; an aligned copy keeps compiled estimator code on its fast, safe path.
        array = array.copy()
    return array.reshape(shape)


def _truncated(name: str, size: int, available: int) -> V2CodecError:
    return V2CodecError(
        f"input {name!r}: parameters.binary_data_size is {size} bytes but only {available} "
        "bytes of binary data remain in the request body"
    )


def _decode_bytes_binary(
    name: str, shape: tuple[int, ...], count: int, body: bytes, offset: int, size: int
) -> NDArray[Any]:
    """BYTES elements: each a 4-byte little-endian length, then that many UTF-8 bytes."""
    end = offset + size
    position = offset
    items: list[str] = []
    for index in range(count):
        if position + 4 > end:
            raise V2CodecError(
                f"input {name!r}: BYTES binary data ({size} bytes) ends before element {index} "
                f"of the {count} that shape {list(shape)} requires"
            )
        (length,) = _U32.unpack_from(body, position)
        position += 4
        if position + length > end:
            raise V2CodecError(
                f"input {name!r}: BYTES element {index} declares {length} bytes but only "
                f"{end - position} remain in its binary_data_size of {size}"
            )
        try:
            items.append(str(body[position : position + length], "utf-8"))
        except UnicodeDecodeError as exc:
            raise V2CodecError(
                f"input {name!r}: BYTES element {index} is not valid UTF-8 ({exc.reason} at "
                f"byte {exc.start}); this server accepts text only"
            ) from exc
        position += length
    if position != end:
        raise V2CodecError(
            f"input {name!r}: parameters.binary_data_size is {size} bytes but the {count} "
            f"BYTES elements of shape {list(shape)} use {position - offset}"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def _decode_json(
    name: str, spec: _Spec, shape: tuple[int, ...], count: int, data: object
) -> NDArray[Any]:
    """The tensor given as a JSON array, flat or nested row-major."""
    if type(data) is not list:
        raise V2CodecError(f"input {name!r}: 'data' must be an array, got {_json_kind(data)}")
    array = _fast_json(spec, data)
    if array is None:
        return _slow_json(name, spec, shape, count, data)
    if array.size != count:
        raise _count_mismatch(name, array.size, shape, count)
    return array.reshape(shape)


def _fast_json(spec: _Spec, data: list[Any]) -> NDArray[Any] | None:
    """One vectorised conversion, or None when `data` needs the element-by-element path.

    Returning an array promises that `data` is regular and every element is valid for `spec`;
    None promises nothing: `_slow_json` finds and reports the problem (or builds the array).
    Nested data is flattened level by level with C-level iterators (much faster than letting
    numpy discover the nesting), checking at each level that all nodes are arrays of one length.
    """
    level = data
    # orjson yields exactly bool, int, float, str, list, dict or None per element, and bool is
    # its own type here, so a type set separates JSON numbers from true/false and strings.
    types = set(map(type, level))
    depth = 1
    while list in types:
        if len(types) != 1 or len(set(map(len, level))) != 1 or depth == _MAX_NESTING:
            return None  # arrays mixed with scalars, arrays of unequal lengths, or absurd depth
        level = list(chain.from_iterable(level))
        types = set(map(type, level))
        depth += 1
    try:
        return _convert(spec, level, types)
    except (TypeError, ValueError, OverflowError):
        return None


def _convert(spec: _Spec, data: list[Any], types: set[type]) -> NDArray[Any] | None:
    """`data` (flat, element types `types`) as a 1-D array, or None if any element is invalid."""
    family = spec.family
    if family == _FLOAT:
        if not types <= _NUMBER_TYPES:
            return None
        values = np.asarray(data, dtype=np.float64)
        if spec.dtype.itemsize < 8:
            if values.size and float(np.abs(values).max()) > spec.high:
                return None  # would overflow to inf
            return values.astype(spec.dtype)
        return values
    if family == _INT:
        if types <= _INT_TYPES:
            return np.asarray(data, dtype=spec.dtype)  # OverflowError when out of range
        if not types <= _NUMBER_TYPES:
            return None
        values = np.asarray(data, dtype=np.float64)
        if values.size and not (
            float(np.abs(values).max()) < _EXACT_FLOAT_INT
            and values.min() >= spec.low
            and values.max() <= spec.high
            and bool(np.all(np.trunc(values) == values))
        ):
            return None
        return values.astype(spec.dtype)
    if family == _BOOL:
        return np.asarray(data, dtype=np.bool_) if types <= _BOOL_TYPES else None
    if not types <= _STR_TYPES:
        return None
    array = np.empty(len(data), dtype=object)
    array[:] = data
    return array


def _slow_json(
    name: str, spec: _Spec, shape: tuple[int, ...], count: int, data: list[Any]
) -> NDArray[Any]:
    """Validate element by element; raises V2CodecError naming the first problem."""
    flat = _flatten(name, data)
    if len(flat) != count:
        raise _count_mismatch(name, len(flat), shape, count)
    family = spec.family
    expected = f"{spec.name} expects {_EXPECTED_ELEMENT[family]}"
    values: list[Any] = flat
    if family == _FLOAT:
        for index, value in enumerate(flat):
            kind = type(value)
            if kind is not int and kind is not float:
                raise _bad_element(name, index, value, expected)
            if not spec.low <= value <= spec.high:
                raise _out_of_range(name, index, value, spec)
    elif family == _INT:
        values = []
        for index, value in enumerate(flat):
            kind = type(value)
            if kind is float:
                if not value.is_integer():
                    raise V2CodecError(
                        f"input {name!r}: data element {index} (row-major flat index) is "
                        f"{_show(value)}, which is not a whole number; {expected}"
                    )
                whole = int(value)
            elif kind is int:
                whole = value
            else:
                raise _bad_element(name, index, value, expected)
            if not spec.low <= whole <= spec.high:
                raise _out_of_range(name, index, value, spec)
            values.append(whole)
    else:
        wanted = bool if family == _BOOL else str
        for index, value in enumerate(flat):
            if type(value) is not wanted:
                raise _bad_element(name, index, value, expected)
    if family == _BYTES:
        array = np.empty(count, dtype=object)
        array[:] = values
    else:
        array = np.array(values, dtype=spec.dtype)
    return array.reshape(shape)


def _flatten(name: str, data: list[Any]) -> list[Any]:
    """The leaves of a regular nested list in row-major order; ragged nesting is an error."""
    dims: list[int] = []
    probe: Any = data
    while type(probe) is list:
        dims.append(len(probe))
        if len(dims) > _MAX_NESTING:
            raise V2CodecError(
                f"input {name!r}: 'data' is nested more than {_MAX_NESTING} levels deep"
            )
        if not probe:
            break
        probe = probe[0]
    flat: list[Any] = []
    leaf_depth = len(dims)

    def walk(node: Any, depth: int, path: str) -> None:
        reference = "data" + "[0]" * depth
        if depth == leaf_depth:
            if type(node) is list:
                raise _ragged(name, f"{path} is an array but {reference} is not")
            flat.append(node)
            return
        if type(node) is not list:
            raise _ragged(name, f"{path} is {_show(node)} but {reference} is an array")
        if len(node) != dims[depth]:
            raise _ragged(
                name, f"{path} has {len(node)} elements but {reference} has {dims[depth]}"
            )
        if depth + 1 == leaf_depth:
            for index, child in enumerate(node):
                if type(child) is list:
                    raise _ragged(name, f"{path}[{index}] is an array but {reference}[0] is not")
            flat.extend(node)
            return
        for index, child in enumerate(node):
            walk(child, depth + 1, f"{path}[{index}]")

    walk(data, 0, "data")
    return flat


def _ragged(name: str, detail: str) -> V2CodecError:
    return V2CodecError(
        f"input {name!r}: 'data' is a ragged nested array ({detail}); expected a flat array or "
        "one nested in the tensor's shape"
    )


def _count_mismatch(name: str, got: int, shape: tuple[int, ...], count: int) -> V2CodecError:
    return V2CodecError(
        f"input {name!r}: 'data' has {got} elements but shape {list(shape)} needs {count}"
    )


def _bad_element(name: str, index: int, value: object, expected: str) -> V2CodecError:
    return V2CodecError(
        f"input {name!r}: data element {index} (row-major flat index) is {_show(value)}, "
        f"{_json_kind(value)}; {expected}"
    )


def _out_of_range(name: str, index: int, value: float, spec: _Spec) -> V2CodecError:
    bounds = (
        f"{int(spec.low)}..{int(spec.high)}"
        if spec.family == _INT
        else f"magnitude at most {spec.high:.6g}"
    )
    return V2CodecError(
        f"input {name!r}: data element {index} (row-major flat index) is {_show(value)}, "
        f"which is out of range for {spec.name} ({bounds})"
    )


def _decode_outputs(raw: object) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if type(raw) is not list:
        raise V2CodecError(
            f"'outputs' must be an array of objects with a 'name', got {_json_kind(raw)}"
        )
    if not raw:
        return None
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        if type(item) is not dict:
            raise V2CodecError(
                f"outputs[{index}] must be an object with a 'name', got {_json_kind(item)}"
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
                    f"output {name!r}: 'parameters' must be an object, got {_json_kind(parameters)}"
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
                    f"got {_show(binary)}"
                )
        outputs.append(RequestedOutput(name, binary))
    return outputs


_JSON_KINDS: Final[dict[type, str]] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _json_kind(value: object) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _show(value: object, limit: int = 60) -> str:
    """`value` as (truncated) JSON, the way the client wrote it."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- encoding


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
    spec = _SPECS.get(output.datatype)
    if spec is None:
        raise ValueError(
            f"output {output.name!r} has unknown datatype {output.datatype!r}; "
            f"expected one of {_DATATYPE_NAMES}"
        )
    shape = [int(d) for d in output.shape]
    data = output.data
    if data.size != math.prod(shape):
        raise ValueError(
            f"output {output.name!r} has {data.size} elements but shape {shape} needs "
            f"{math.prod(shape)}"
        )
    entry: dict[str, object] = {"name": output.name, "datatype": spec.name, "shape": shape}

    if spec.family == _BYTES:
        texts = _texts(output)
        if not as_binary:
            entry["data"] = texts
            return entry, None
        parts: list[bytes] = []
        for text in texts:
            encoded = text.encode("utf-8")
            parts.append(_U32.pack(len(encoded)))
            parts.append(encoded)
        chunk = b"".join(parts)
        entry["parameters"] = {"binary_data_size": len(chunk)}
        return entry, chunk

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
    if kind == "U" or set(map(type, items)) <= _STR_TYPES:
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
