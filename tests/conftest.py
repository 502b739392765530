"""Fixtures shared by every test package: real artifacts made by the training package."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from tabserve.training.datasets import load_bundled, load_csv
from tabserve.training.pipeline import TrainRequest, train

# Apps and servers started by tests serve gRPC only when a test asks (on a free port):
# the default, 8081, is one port for every test process on the machine, and each app
# would bind it (SO_REUSEPORT lets them), so one test's client could reach another's.
# Server processes inherit this through the environment.
os.environ.setdefault("TABSERVE_GRPC_PORT", "0")


def write_mixed_csv(path: Path, rows: int = 240, seed: int = 3) -> Path:
    """A CSV with numeric and categorical columns, some values missing, a binary target."""
    rng = np.random.default_rng(seed)
    cities = ["berlin", "lisbon", "paris"]
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["age", "city", "income", "churned"])
        for i in range(rows):
            age = int(rng.integers(18, 80))
            city = cities[i % 3]
            income = round(float(rng.normal(3000, 800)), 2)
            churned = "yes" if (age > 50) ^ (city == "paris") else "no"
            out.writerow(
                [
                    age,
                    "" if i % 17 == 0 else city,
                    "NA" if i % 13 == 0 else income,
                    churned,
                ]
            )
    return path


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """iris v1 (forest) and v2 (logistic), diabetes v1 (ridge), churn v1 (mixed types, HGB)."""
    root = tmp_path_factory.mktemp("models")
    iris = load_bundled("iris")
    train(TrainRequest(iris, "random_forest", root, "iris", params={"n_estimators": 10}))
    train(TrainRequest(iris, "logistic_regression", root, "iris"))
    train(TrainRequest(load_bundled("diabetes"), "ridge", root, "diabetes"))
    mixed = load_csv(write_mixed_csv(root.parent / "churn.csv"), "churned")
    train(TrainRequest(mixed, "hist_gradient_boosting", root, "churn", params={"max_iter": 20}))
    return root


@pytest.fixture
def same_cases_in_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis generates the same cases whatever else this process has imported.

    `derandomize=True` fixes the seed, but Hypothesis also mixes constants taken from
    the source of every local module loaded so far into what it generates
    (`hypothesis.internal.conjecture.providers._get_local_constants`). Under xdist the
    modules a worker has imported depend on which test modules it ran first, so the
    fuzz suites generated other cases in other runs and a defect surfaced in some runs
    only. With no local constants the cases depend on the seed and the schema alone.
    `raising=True`: if Hypothesis renames this, the fuzz tests fail loudly here.
    """
    from hypothesis.internal.conjecture import providers
    from hypothesis.internal.constants_ast import Constants

    monkeypatch.setattr(providers, "_get_local_constants", Constants, raising=True)
