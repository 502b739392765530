"""The decoded shapes of the Open Inference Protocol (KServe V2): requests, tensors, outputs.

Every malformed request raises `V2CodecError`, whose message names the field or tensor,
what was wrong and what was expected; the web layer answers it with status 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from numpy.typing import NDArray


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


@dataclass(slots=True, eq=False)
class OutputTensor:
    """One output to encode; `data` may be numeric, bool, or str/bytes/object for BYTES.

    Not frozen: one is built per output of every answer, and a frozen dataclass's
    `__init__` costs three times as much.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: NDArray[Any]
