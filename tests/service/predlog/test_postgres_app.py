"""The whole loop (log, feedback, quality, browse) on the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.predlog import PredictionStore
from tabserve.service.settings import Settings

IRIS = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}


def test_the_app_logs_and_joins_feedback_on_postgresql(
    log_settings: Callable[..., Settings], database_url: Callable[[str], str]
) -> None:
    url = database_url("postgresql")
    settings = log_settings(predlog_url=url, log_redact=["sepal_width_cm"])
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/models/iris/predict", json=[IRIS] * 4, headers={"x-request-id": "pg"}
        )
        predicted = [p["prediction"] for p in answer.json()["predictions"]]
        truths = ["setosa", "setosa", "versicolor", "virginica"]
        items = [{"request_id": "pg", "row": i, "truth": t} for i, t in enumerate(truths)]
        body = client.post("/models/iris/feedback", json=items).json()
        assert body["accepted"] == 4
        (quality,) = client.get("/models/iris/quality").json()["versions"]
        expected = sum(p == t for p, t in zip(predicted, truths, strict=True)) / 4
        assert quality["accuracy"] == pytest.approx(expected)
        page = client.get("/models/iris/predictions", params={"limit": 2}).json()
        assert [i["row"] for i in page["items"]] == [3, 2]
        assert page["items"][0]["inputs"]["sepal_width_cm"] is None
        assert page["items"][0]["truth"] == "virginica"
    store = PredictionStore(url)
    assert store.engine.dialect.name == "postgresql"
    assert [r.truth for r in store.labelled("iris")] == truths
    store.dispose()
