"""GET /models/{m}/predictions: cursor paging, time range, version and feedback filters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tabserve.service.app import create_app
from tabserve.service.predlog import LoggedRow, PredictionStore
from tabserve.service.settings import Settings

IRIS = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}


def seed(settings: Settings) -> None:
    """Seven logged iris rows at times 100..106, r0..r6; r1 from version 1."""
    store = PredictionStore(settings.predlog_database_url)
    store.migrate()
    store.write(
        [
            LoggedRow("iris", 1 if i == 1 else 2, f"r{i}", 0, 100 + i, 0.01, IRIS, "setosa", None)
            for i in range(7)
        ]
    )
    store.dispose()


def ids(page: Any) -> list[str]:
    return [item["request_id"] for item in page["items"]]


def test_pages_follow_the_cursor_to_the_oldest_row(log_settings: Callable[..., Settings]) -> None:
    settings = log_settings(predlog_retention_seconds=0)
    seed(settings)
    with TestClient(create_app(settings)) as client:
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 3}
        pages = 0
        while True:
            page = client.get("/models/iris/predictions", params=params).json()
            seen += ids(page)
            pages += 1
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert seen == [f"r{i}" for i in range(6, -1, -1)]
        assert pages == 3
        exact = client.get("/models/iris/predictions", params={"limit": 7}).json()
        assert exact["next_cursor"] is None
        first = exact["items"][-1]
        assert first == {
            "id": first["id"],
            "request_id": "r0",
            "row": 0,
            "version": 2,
            "time": 100.0,
            "latency_seconds": 0.01,
            "inputs": IRIS,
            "prediction": "setosa",
            "probabilities": None,
            "truth": None,
            "feedback_time": None,
        }


def test_filters_by_time_version_and_feedback(log_settings: Callable[..., Settings]) -> None:
    settings = log_settings(predlog_retention_seconds=0)
    seed(settings)
    with TestClient(create_app(settings)) as client:
        got = client.get("/models/iris/predictions", params={"since": 102, "until": 105})
        assert ids(got.json()) == ["r4", "r3", "r2"]
        got = client.get("/models/iris/predictions", params={"version": 1})
        assert ids(got.json()) == ["r1"]
        answer = client.post(
            "/models/iris/feedback",
            json=[
                {"request_id": "r5", "truth": "virginica"},
                {"request_id": "r2", "truth": "setosa"},
            ],
        )
        assert answer.json()["accepted"] == 2
        got = client.get("/models/iris/predictions", params={"with_feedback": True}).json()
        assert [(i["request_id"], i["truth"]) for i in got["items"]] == [
            ("r5", "virginica"),
            ("r2", "setosa"),
        ]


def test_bad_query_parameters_are_422(log_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(log_settings())) as client:
        for params in (
            {"cursor": "abc"},
            {"cursor": "9" * 19},  # past a 64-bit id
            {"limit": 0},
            {"limit": 1001},
            {"since": "yesterday"},
            {"until": "nan"},
            {"version": 2**31},
        ):
            answer = client.get("/models/iris/predictions", params=params)
            assert answer.status_code == 422, params
            assert answer.json()["code"] == "invalid_request"
            assert answer.json()["details"][0]["field"] in params
