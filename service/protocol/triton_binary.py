"""Triton's binary tensor data extension: the header length, binary inputs, binary outputs.

The ``Inference-Header-Content-Length`` header gives the length of the JSON object at the
start of the body; the binary tensors follow it, concatenated in the order of the inputs that
carry ``parameters.binary_data_size``. Binary data is little-endian, row-major, unpadded; BOOL
is one byte (0 or 1) per element and each BYTES element is a 4-byte little-endian unsigned
length followed by that many bytes.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from tabserve.service.core.digits import parse_digits
from tabserve.service.protocol.v2_datatypes import BOOL, BYTES, Spec
from tabserve.service.protocol.v2_types import V2CodecError

U32: Final = struct.Struct("<I")
HEADER_NAME: Final = "Inference-Header-Content-Length"


def parse_header_length(value: str | None) -> int | None:
    """Parse the ``Inference-Header-Content-Length`` request header (None when absent)."""
    if value is None:
        return None
    length = parse_digits(value.strip())
    if length is None:
        raise V2CodecError(
            f"the {HEADER_NAME} header must be a non-negative integer byte count, "
            f"got {value[:40]!r}"
        )
    return length


def decode_binary(
    name: str,
    spec: Spec,
    shape: tuple[int, ...],
    count: int,
    body: bytes,
    offset: int,
    size: int,
) -> NDArray[Any]:
    """The tensor held in body[offset:offset + size]."""
    available = len(body) - offset
    if spec.family == BYTES:
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
    if spec.family == BOOL:
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
        (length,) = U32.unpack_from(body, position)
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


def pack_bytes(texts: list[str]) -> bytes:
    """BYTES elements as binary data: each a 4-byte little-endian length, then its UTF-8."""
    parts: list[bytes] = []
    for text in texts:
        encoded = text.encode("utf-8")
        parts.append(U32.pack(len(encoded)))
        parts.append(encoded)
    return b"".join(parts)
