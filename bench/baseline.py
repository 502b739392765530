"""The seed-style server peers resemble: a plain FastAPI route calling scikit-learn per request.

Pydantic parses the V2 JSON body, a sync route runs `predict_proba` in FastAPI's
thread pool, one request at a time per call. Started by the benchmark as
`python -m bench.baseline MODEL_FOLDER PORT`, on the same core as tabserve.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferRequest(BaseModel):
    inputs: list[Tensor]


def build(folder: Path) -> FastAPI:
    """The baseline app for the model in `folder`."""
    model: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        model["estimator"] = joblib.load(folder / "model.joblib")
        yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/v2/models/{name}/infer")
    def infer(name: str, body: InferRequest) -> dict[str, Any]:
        tensor = body.inputs[0]
        features = np.asarray(tensor.data, dtype=np.float64).reshape(tensor.shape)
        proba = model["estimator"].predict_proba(features)
        labels = model["estimator"].classes_[proba.argmax(axis=1)]
        return {
            "model_name": name,
            "outputs": [
                {
                    "name": "predict",
                    "datatype": "INT64",
                    "shape": [len(labels)],
                    "data": labels.tolist(),
                },
                {
                    "name": "predict_proba",
                    "datatype": "FP64",
                    "shape": list(proba.shape),
                    "data": proba.ravel().tolist(),
                },
            ],
        }

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": "estimator" in model}

    return app


if __name__ == "__main__":
    uvicorn.run(
        build(Path(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning"
    )
