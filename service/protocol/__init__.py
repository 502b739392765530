"""The one home of every wire format; it knows no web framework.

Open Inference Protocol (KServe V2) tensors in JSON and in Triton's binary extension
(`v2_request`, `v2_response`, `v2_json`, `triton_binary`), the records answer
(`records`) and the error body (`error_body`). The HTTP routes, the express lanes,
the streams and the sinks all call these, so each format is written in one place.
"""

from tabserve.service.protocol.triton_binary import HEADER_NAME, parse_header_length
from tabserve.service.protocol.v2_datatypes import datatype_of
from tabserve.service.protocol.v2_request import decode_request
from tabserve.service.protocol.v2_response import (
    default_answer,
    encode_response,
    output_tensor,
    prediction_outputs,
)
from tabserve.service.protocol.v2_types import (
    InferenceRequest,
    InputTensor,
    OutputTensor,
    RequestedOutput,
    V2CodecError,
)

__all__ = [
    "HEADER_NAME",
    "InferenceRequest",
    "InputTensor",
    "OutputTensor",
    "RequestedOutput",
    "V2CodecError",
    "datatype_of",
    "decode_request",
    "default_answer",
    "encode_response",
    "output_tensor",
    "parse_header_length",
    "prediction_outputs",
]
