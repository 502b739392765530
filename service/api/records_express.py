"""The named-feature request most clients send, answered without FastAPI's per-request work.

`POST /models/{m}/predict` is a FastAPI route so that `/docs` shows each model's
real features, and FastAPI pays for that on every request: dependency solving,
the body through a Pydantic union of generated record models, the answer through
the response model and `jsonable_encoder`. That was three times the cost of the
V2 path (`docs/benchmarks.md`).

So the express route (`express.py`) answers each record route's exact path before
the route itself, as it does V2 infer. This lane decodes the common body (one record, or a list
of records, each with exactly the model's feature names and numbers within their
training ranges, for a model whose inputs are all numeric) and answers it
itself; anything else, errors included, goes on through FastAPI to the record
route with the body replayed, which answers exactly as it always has. The answer
has the same JSON as the FastAPI route's (its numbers written by orjson:
`0.00001` where Python writes `1e-05`, the same value);
`tests/service/test_records_express.py` compares the two.
"""

from __future__ import annotations

from typing import Any

import orjson

from tabserve.service.core.runtime import Prediction
from tabserve.service.core.served import LaneKey, ServedModel
from tabserve.service.core.validation import ValidatedBatch
from tabserve.service.protocol.records import records_answer

_NUMBERS = frozenset({int, float})


class RecordsExpress:
    """One model version's express decoder and encoder for records."""

    def __init__(self, model: ServedModel, classes: list[str], classifier: bool) -> None:
        self.schema = model.schema
        self.names = model.schema.names
        self.width = model.schema.width
        self.classes = classes
        self.classifier = classifier
        self.model_name = model.name
        self.version = model.version

    @classmethod
    def for_model(cls, model: ServedModel, max_string_length: int) -> RecordsExpress | None:
        """The lane for `model`, or None when its records never fit it.

        `max_string_length` is the JSON limit (`TABSERVE_MAX_STRING_LENGTH`) the lane
        must keep as the general path does.
        """
        schema, manifest = model.schema, model.manifest
        if not schema.all_numeric:
            return None
        if max(map(len, schema.names)) > max_string_length:
            return None  # such a key is refused (413) by the general path
        classes = manifest.target.classes
        classifier = manifest.task == "classification"
        if classifier:
            kinds = {type(c) for c in classes or []}
            if kinds not in ({str}, {int}):
                return None  # labels the response model might convert: the general path
        return cls(model, [str(c) for c in classes or []], classifier)

    def decode(self, body: bytes) -> ValidatedBatch | None:
        """The rows of `body` if it has the express shape and passes validation, else None."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(document) is dict:
            return self.accept([document])
        if type(document) is list and document:
            return self.accept(document)
        return None

    def accept(self, records: list[Any]) -> ValidatedBatch | None:
        """`decode` for records already parsed (a stream message's): their rows, or None.

        Each record must have exactly the model's feature names and numbers within
        their training ranges; None means the general checks answer, errors included.
        """
        if not records or len(records) > self.schema.max_rows:
            return None
        names, width = self.names, self.width
        values: list[Any] = []
        for record in records:
            if type(record) is not dict or len(record) != width:
                return None
            try:
                values.extend([record[name] for name in names])
            except KeyError:
                return None
        if not set(map(type, values)) <= _NUMBERS:
            return None
        return self.schema.accept_flat(values, len(records))

    def encode(self, prediction: Prediction, request_id: str) -> bytes:
        """The body the FastAPI route's `PredictResponse` would have."""
        proba = prediction.proba if self.classifier else None
        return records_answer(
            self.model_name, self.version, request_id, prediction.predict, proba, self.classes
        )


_LANE: LaneKey[RecordsExpress | None] = LaneKey("records_express")


def records_lane(model: ServedModel, max_string_length: int) -> RecordsExpress | None:
    """`model`'s records express lane, built once per version (None: it has none)."""
    return model.lanes.get(_LANE, lambda: RecordsExpress.for_model(model, max_string_length))
