"""One answered request as Open Inference Protocol (V2) JSON: its rows, and its answer.

The request body names one input per feature with the model's feature types (FP64
for numbers, BYTES for categories), so it reads like a column-wise V2 request. The
answer is exactly what the V2 infer route returns for those rows, encoded by the same
codec. Missing values, and every value of a redacted feature, are JSON null.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson

from tabserve.service.core.dataplane import Served
from tabserve.service.core.served import ServedModel
from tabserve.service.protocol import default_answer


class PayloadEncoder:
    """Encodes `Served` records; features named in `redact` never leave as values."""

    def __init__(self, redact: Iterable[str]) -> None:
        self.redact = frozenset(redact)

    def request(self, served: Served) -> bytes:
        """`{"id", "inputs": [one tensor of shape [rows] per feature]}`."""
        features = served.features
        rows = features.shape[0]
        inputs = []
        for index, (name, datatype, redacted) in enumerate(self._layout(served.model)):
            data: Any
            if redacted:
                data = [None] * rows
            elif datatype == "FP64":
                data = np.ascontiguousarray(features[:, index], dtype=np.float64)
            else:
                data = features[:, index].tolist()
            inputs.append({"name": name, "datatype": datatype, "shape": [rows], "data": data})
        return orjson.dumps(
            {"id": served.request_id, "inputs": inputs}, option=orjson.OPT_SERIALIZE_NUMPY
        )

    def response(self, served: Served) -> bytes:
        """The V2 infer answer: model_name, model_version, id, outputs predict (+ predict_proba)."""
        model = served.model
        return default_answer(model.name, str(model.version), served.request_id, served.prediction)

    def _layout(self, model: ServedModel) -> list[tuple[str, str, bool]]:
        """Per feature: its name, V2 datatype and whether it is redacted."""
        return [
            (f.name, "FP64" if f.type == "number" else "BYTES", f.name in self.redact)
            for f in model.manifest.features
        ]
