"""Schemathesis over the prediction log's routes: no 5xx, answers as documented.

The whole-API fuzz test runs with the log off (its default), so these routes do
not exist there; here the log is on, holds real rows and truths, and every log
route is fuzzed with valid and invalid data, on each served model and on random
names. Hypothesis is derandomized and kept from mixing in constants of the modules
the process loaded (`same_cases_in_every_process`): the same cases run every time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import ASGIClient
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tabserve.service.app import create_app
from tabserve.service.settings import Settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
LOG_PATHS = {
    "/models/{model}/feedback",
    "/models/{model}/quality",
    "/models/{model}/predictions",
}
IRIS = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}


def fuzz(
    operation: Any,
    mode: GenerationMode,
    fixed: dict[str, str] | None,
    session: ASGIClient,
    failures: dict[str, str],
    cases: dict[str, int],
) -> None:
    """Up to 15 cases of one operation, mode and path variant; failures kept, not raised."""
    label = f"{operation.label} [{mode.value}, {fixed}]"
    strategy = (
        operation.as_strategy(mode, path_parameters=fixed) if fixed else operation.as_strategy(mode)
    )

    @hypothesis_settings(
        max_examples=15,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        cases[label] = cases.get(label, 0) + 1
        try:
            case.call_and_validate(session=session, base_url="http://testserver", checks=CHECKS)
        except BaseException as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
            if not isinstance(exc, Exception | BaseExceptionGroup):
                raise
            failures.setdefault(label, str(exc))

    with contextlib.suppress(Unsatisfiable):  # no invalid data for an input-less operation
        check()


@pytest.mark.usefixtures("same_cases_in_every_process")
def test_log_routes_survive_fuzzing(log_settings: Callable[..., Settings]) -> None:
    app = create_app(log_settings(log_level="error"))
    failures: dict[str, str] = {}
    cases: dict[str, int] = {}
    with TestClient(app) as client:
        for i in range(3):
            client.post(
                "/models/iris/predict", json=[IRIS, IRIS], headers={"x-request-id": f"f{i}"}
            )
        client.post("/models/iris/feedback", json={"request_id": "f0", "truth": "setosa"})
        document = client.get("/openapi.json").json()
        names = [m["name"] for m in client.get("/models").json()]
        schema = schemathesis.openapi.from_dict(document)
        session = ASGIClient(app)  # not entered: the TestClient owns the lifespan
        operations = [r.ok() for r in schema.get_all_operations()]
        operations = [op for op in operations if op.path in LOG_PATHS]
        assert len(operations) == 3
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for fixed in [None, *({"model": n} for n in names)]:
                    fuzz(operation, mode, fixed, session, failures, cases)
    report = "\n\n".join(f"{label}:\n{text[:3000]}" for label, text in failures.items())
    assert not failures, f"{len(failures)} failing variants:\n\n{report}"
    assert sum(cases.values()) >= 200


# Inputs the adversarial probe of issue #17 found, which generated cases do not reach.
_HUGE = "1" + "0" * 400
HOSTILE_TRUTHS = [_HUGE, "-" + _HUGE, "1e308", "-1e308", "NaN", "Infinity", "-Infinity"]
HOSTILE_QUERIES = [
    "/models/diabetes/predictions?limit=%D9%A1",
    "/models/diabetes/predictions?limit=%EF%BC%91",
    "/models/diabetes/predictions?version=%2B1",
    "/models/diabetes/predictions?version=1_0",
    "/models/diabetes/predictions?version=" + "9" * 5000,
    "/models/diabetes/predictions?cursor=%C2%B2",
    "/models/diabetes/quality?window_seconds=1e400",
]


def test_hostile_truths_and_queries_get_answers_never_a_5xx(
    log_settings: Callable[..., Settings],
) -> None:
    record = dict.fromkeys(["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"], 0.01)
    with TestClient(create_app(log_settings(log_level="error"))) as client:
        rows = [record] * (len(HOSTILE_TRUTHS) + 1)
        predicted = client.post(
            "/models/diabetes/predict", json=rows, headers={"x-request-id": "h"}
        )
        assert predicted.status_code == 200
        items = ",".join(
            f'{{"request_id": "h", "row": {k}, "truth": {t}}}' for k, t in enumerate(HOSTILE_TRUTHS)
        )
        answer = client.post("/models/diabetes/feedback", content=f"[{items}]")
        assert answer.status_code == 200, answer.text
        assert {r["outcome"] for r in answer.json()["results"]} == {"invalid"}
        quality = client.get("/models/diabetes/quality").json()
        assert quality["versions"] == []
        for path in HOSTILE_QUERIES:
            refused = client.get(path)
            assert refused.status_code == 422, (path, refused.text)
            assert refused.json()["code"] == "invalid_request"
