"""The V2 request most clients send, decoded and answered with the least work.

Nearly every inference request is the same shape: one FP64 (or FP32) tensor of
shape [rows, features], flat or one row per array, every value within its
training range, default outputs. For that shape alone, `ExpressV2` skips what the
general codec (`protocol.v2_request`) and validation do for every other case, and writes the
answer in one `orjson.dumps` call.

It only ever says yes or "not mine": `decode` returns None for anything else
(binary data, named feature tensors, parameters, output selection, missing or
out-of-range values, any error at all), and the general path then decodes the same
body and answers exactly as it always does, errors included. Responses are
byte-for-byte those of the general path (`tests/service/test_v2_express.py`
compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import orjson

from tabserve.service.core.runtime import Prediction
from tabserve.service.core.served import ServedModel
from tabserve.service.core.validation import FeatureSchema, ValidatedBatch
from tabserve.service.protocol import default_answer

_DOCUMENT_KEYS = frozenset({"id", "inputs"})
_TENSOR_KEYS = frozenset({"name", "shape", "datatype", "data"})
_NUMBERS = frozenset({int, float})
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True)
class ExpressRequest:
    """A decoded, validated request: its rows and its `id` (None when absent)."""

    batch: ValidatedBatch
    request_id: str | None


class ExpressV2:
    """One model version's express decoder and encoder (build with `for_model`)."""

    def __init__(self, model: ServedModel, schema: FeatureSchema) -> None:
        self.schema = schema
        self.width = schema.width
        self.max_rows = schema.max_rows
        self.model_name = model.name
        self.model_version = str(model.version)

    @classmethod
    def for_model(cls, model: ServedModel) -> ExpressV2 | None:
        """The express lane for `model`, or None when its inputs never fit it."""
        schema, manifest = model.schema, model.manifest
        if schema is None or manifest is None or not schema.all_numeric:
            return None
        return cls(model, schema)

    def decode(self, body: bytes) -> ExpressRequest | None:
        """The request in `body` if it has the express shape and passes validation, else None."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(document) is not dict or not document.keys() <= _DOCUMENT_KEYS:
            return None
        request_id = document.get("id")
        inputs = document.get("inputs")
        if (request_id is not None and type(request_id) is not str) or type(inputs) is not list:
            return None
        if len(inputs) != 1 or type(tensor := inputs[0]) is not dict:
            return None
        if not tensor.keys() <= _TENSOR_KEYS:
            return None
        name, datatype = tensor.get("name"), tensor.get("datatype")
        if type(name) is not str or not name or name in self.schema.index:
            return None  # a tensor named as a feature is one column: the general path
        if datatype != "FP64" and datatype != "FP32":
            return None
        rows = self._rows(tensor.get("shape"))
        if rows is None:
            return None
        values = self._values(tensor.get("data"), rows)
        if values is None:
            return None
        if datatype == "FP32":
            batch = self._fp32(values, rows)
        else:
            batch = self.schema.accept_flat(values, rows)
        return None if batch is None else ExpressRequest(batch, request_id)

    def _rows(self, shape: object) -> int | None:
        if type(shape) is not list or len(shape) != 2:
            return None
        rows, width = shape
        if type(rows) is not int or type(width) is not int or width != self.width:
            return None
        return rows if 1 <= rows <= self.max_rows else None

    def _values(self, data: object, rows: int) -> list[int | float] | None:
        """`data` as a flat list of rows * width JSON numbers, or None."""
        if type(data) is not list:
            return None
        types = set(map(type, data))
        if types == {list}:  # one array per row (or any regular nesting one level deep)
            if len(set(map(len, data))) != 1:
                return None
            data = list(chain.from_iterable(data))
            types = set(map(type, data))
        if len(data) != rows * self.width or not types <= _NUMBERS:
            return None
        return data

    def _fp32(self, values: list[int | float], rows: int) -> ValidatedBatch | None:
        """As the general path does, FP32 values are rounded to float32 before the checks."""
        try:
            wide = np.asarray(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float64
            return None
        with np.errstate(over="ignore"):  # overflow to infinity is refused by the range check
            matrix = wide.astype(np.float32).astype(np.float64).reshape(rows, self.width)
        return self.schema.accept_in_range(matrix)

    def encode(self, prediction: Prediction, request_id: str | None) -> bytes:
        """The V2 JSON answer with the default outputs (predict, and predict_proba)."""
        return default_answer(self.model_name, self.model_version, request_id, prediction)
