"""V2 input tensors given as JSON arrays, flat or nested row-major, decoded into numpy."""

from __future__ import annotations

from itertools import chain
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from tabserve.service.protocol.v2_datatypes import (
    BOOL,
    BOOL_TYPES,
    BYTES,
    FLOAT,
    INT,
    INT_TYPES,
    MAX_NESTING,
    NUMBER_TYPES,
    STR_TYPES,
    Spec,
    json_kind,
    show,
)
from tabserve.service.protocol.v2_types import V2CodecError

_EXPECTED_ELEMENT: Final[dict[str, str]] = {
    FLOAT: "a number",
    INT: "an integer",
    BOOL: "true or false",
    BYTES: "a string",
}
_EXACT_FLOAT_INT: Final = float(2**53)  # floats below this magnitude hold integers exactly


def decode_json(
    name: str, spec: Spec, shape: tuple[int, ...], count: int, data: object
) -> NDArray[Any]:
    """The tensor given as a JSON array, flat or nested row-major."""
    if type(data) is not list:
        raise V2CodecError(f"input {name!r}: 'data' must be an array, got {json_kind(data)}")
    array = _fast_json(spec, data)
    if array is None:
        return _slow_json(name, spec, shape, count, data)
    if array.size != count:
        raise _count_mismatch(name, array.size, shape, count)
    return array.reshape(shape)


def _fast_json(spec: Spec, data: list[Any]) -> NDArray[Any] | None:
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
        if len(types) != 1 or len(set(map(len, level))) != 1 or depth == MAX_NESTING:
            return None  # arrays mixed with scalars, arrays of unequal lengths, or absurd depth
        level = list(chain.from_iterable(level))
        types = set(map(type, level))
        depth += 1
    try:
        return _convert(spec, level, types)
    except (TypeError, ValueError, OverflowError):
        return None


def _convert(spec: Spec, data: list[Any], types: set[type]) -> NDArray[Any] | None:
    """`data` (flat, element types `types`) as a 1-D array, or None if any element is invalid."""
    family = spec.family
    if family == FLOAT:
        if not types <= NUMBER_TYPES:
            return None
        values = np.asarray(data, dtype=np.float64)
        if spec.dtype.itemsize < 8:
            if values.size and float(np.abs(values).max()) > spec.high:
                return None  # would overflow to inf
            return values.astype(spec.dtype)
        return values
    if family == INT:
        if types <= INT_TYPES:
            return np.asarray(data, dtype=spec.dtype)  # OverflowError when out of range
        if not types <= NUMBER_TYPES:
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
    if family == BOOL:
        return np.asarray(data, dtype=np.bool_) if types <= BOOL_TYPES else None
    if not types <= STR_TYPES:
        return None
    array = np.empty(len(data), dtype=object)
    array[:] = data
    return array


def _slow_json(
    name: str, spec: Spec, shape: tuple[int, ...], count: int, data: list[Any]
) -> NDArray[Any]:
    """Validate element by element; raises V2CodecError naming the first problem."""
    flat = _flatten(name, data)
    if len(flat) != count:
        raise _count_mismatch(name, len(flat), shape, count)
    family = spec.family
    expected = f"{spec.name} expects {_EXPECTED_ELEMENT[family]}"
    values: list[Any] = flat
    if family == FLOAT:
        for index, value in enumerate(flat):
            kind = type(value)
            if kind is not int and kind is not float:
                raise _bad_element(name, index, value, expected)
            if not spec.low <= value <= spec.high:
                raise _out_of_range(name, index, value, spec)
    elif family == INT:
        values = []
        for index, value in enumerate(flat):
            kind = type(value)
            if kind is float:
                if not value.is_integer():
                    raise V2CodecError(
                        f"input {name!r}: data element {index} (row-major flat index) is "
                        f"{show(value)}, which is not a whole number; {expected}"
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
        wanted = bool if family == BOOL else str
        for index, value in enumerate(flat):
            if type(value) is not wanted:
                raise _bad_element(name, index, value, expected)
    if family == BYTES:
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
        if len(dims) > MAX_NESTING:
            raise V2CodecError(
                f"input {name!r}: 'data' is nested more than {MAX_NESTING} levels deep"
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
            raise _ragged(name, f"{path} is {show(node)} but {reference} is an array")
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
        f"input {name!r}: data element {index} (row-major flat index) is {show(value)}, "
        f"{json_kind(value)}; {expected}"
    )


def _out_of_range(name: str, index: int, value: float, spec: Spec) -> V2CodecError:
    bounds = (
        f"{int(spec.low)}..{int(spec.high)}"
        if spec.family == INT
        else f"magnitude at most {spec.high:.6g}"
    )
    return V2CodecError(
        f"input {name!r}: data element {index} (row-major flat index) is {show(value)}, "
        f"which is out of range for {spec.name} ({bounds})"
    )
