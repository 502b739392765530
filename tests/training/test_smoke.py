"""A first end-to-end check: train in-process, load back, predictions agree."""

from pathlib import Path

import numpy as np

from tabserve.artifact.store import load_artifact
from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train


def test_iris_round_trip(tmp_path: Path) -> None:
    data = load_bundled("iris")
    result = train(TrainRequest(data, "random_forest", tmp_path, "iris"))
    loaded = load_artifact(tmp_path / "iris" / "1")
    assert loaded.manifest == result.manifest
    np.testing.assert_array_equal(
        loaded.estimator.predict_proba(data.features), result.pipeline.predict_proba(data.features)
    )
