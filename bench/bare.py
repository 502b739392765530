"""The HTTP stack's own limit: a bare ASGI app doing the least a V2 answer needs.

Parse a V2 JSON body with orjson, score a logistic regression in numpy (X·W + b,
softmax; 20 features, 3 classes, fixed random weights), answer V2 JSON with
orjson: no validation, batching, metrics, logging or request ids. Served by
uvicorn (uvloop, httptools) with tabserve's one-write-per-answer protocol, it is
what any server on this machine could at best reach with one core, so `make bench`
prints tabserve's figures as a share of it. Started as `python -m bench.bare PORT`;
`python -m bench.bare PORT uvicorn` serves it with uvicorn's own protocol (two
writes per answer) instead.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import orjson
import uvicorn

from tabserve.service.http_protocol import TabserveHttpProtocol

_RNG = np.random.default_rng(0)
_WEIGHTS = _RNG.normal(size=(20, 3))
_BIAS = _RNG.normal(size=3)
_READY = b'{"ready":true}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer V2 infer on any POST, readiness on any GET."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = "startup" if message["type"] == "lifespan.startup" else "shutdown"
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await _answer(send, _READY)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    tensor = orjson.loads(body)["inputs"][0]
    features = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    scores = features @ _WEIGHTS + _BIAS
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    proba = exp / exp.sum(axis=1, keepdims=True)
    labels = {"name": "predict", "datatype": "INT64", "shape": [len(proba)]}
    probabilities = {"name": "predict_proba", "datatype": "FP64", "shape": list(proba.shape)}
    answer = {
        "model_name": "logistic",
        "outputs": [{**labels, "data": proba.argmax(1)}, {**probabilities, "data": proba.ravel()}],
    }
    await _answer(send, orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY))


async def _answer(send: Any, payload: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools" if sys.argv[2:] == ["uvicorn"] else TabserveHttpProtocol,
    )
