"""V2 datatypes and how each maps onto numpy; how JSON values are named in error messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson
from numpy.typing import NDArray

FLOAT: Final = "float"
INT: Final = "int"
BOOL: Final = "bool"
BYTES: Final = "bytes"


@dataclass(frozen=True, slots=True)
class Spec:
    """How one V2 datatype maps onto numpy."""

    name: str
    family: str  # FLOAT, INT, BOOL or BYTES
    dtype: np.dtype[Any]  # the array dtype handed to the model (native byte order)
    wire: np.dtype[Any]  # the little-endian dtype of the binary representation
    low: float  # smallest allowed value (ints: exact; floats: -max finite)
    high: float  # largest allowed value


def _int_spec(name: str, code: str) -> Spec:
    info = np.iinfo(np.dtype(code))
    return Spec(name, INT, np.dtype(code), np.dtype("<" + code), int(info.min), int(info.max))


def _float_spec(name: str, code: str) -> Spec:
    top = float(np.finfo(np.dtype(code)).max)
    return Spec(name, FLOAT, np.dtype(code), np.dtype("<" + code), -top, top)


SPECS: Final[dict[str, Spec]] = {
    "BOOL": Spec("BOOL", BOOL, np.dtype(np.bool_), np.dtype(np.bool_), 0, 1),
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
    "BYTES": Spec("BYTES", BYTES, np.dtype(object), np.dtype(object), 0, 0),
}
DATATYPE_NAMES: Final = ", ".join(SPECS)

# numpy dtype -> V2 datatype, for the fixed-size kinds (str/bytes/object handled by kind).
_DATATYPE_OF_DTYPE: Final[dict[np.dtype[Any], str]] = {
    spec.dtype: name for name, spec in SPECS.items() if spec.family != BYTES
}

NUMBER_TYPES: Final[frozenset[type]] = frozenset((int, float))
INT_TYPES: Final[frozenset[type]] = frozenset((int,))
BOOL_TYPES: Final[frozenset[type]] = frozenset((bool,))
STR_TYPES: Final[frozenset[type]] = frozenset((str,))
MAX_NESTING: Final = 64  # numpy's own limit on dimensions


def datatype_of(array: NDArray[Any]) -> str:
    """The V2 datatype for `array`'s dtype: "FP64", "INT64", "BOOL", "BYTES" for str/bytes/object.

    Raises ValueError for dtypes V2 cannot carry (complex, datetime, float128, ...).
    """
    dtype = array.dtype
    if dtype.kind in "OUS":
        return "BYTES"
    name = _DATATYPE_OF_DTYPE.get(dtype) or _DATATYPE_OF_DTYPE.get(dtype.newbyteorder("="))
    if name is None:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return name


_JSON_KINDS: Final[dict[type, str]] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def json_kind(value: object) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def show(value: object, limit: int = 60) -> str:
    """`value` as (truncated) JSON, the way the client wrote it."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
