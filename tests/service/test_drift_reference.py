"""Binning a batch: the vectorised count is numpy.searchsorted + bincount, bin by bin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tabserve.artifact.manifest import (
    MANIFEST_FILE,
    CategoryStats,
    Feature,
    Histogram,
    Manifest,
    NumericStats,
)
from tabserve.service.core.drift_reference import DriftReference, interval_labels, psi
from tabserve.service.core.runtime import Prediction


def manifest(models_dir: Path, name: str, version: int = 1) -> Manifest:
    return Manifest.model_validate_json(
        (models_dir / name / str(version) / MANIFEST_FILE).read_text()
    )


def expected_counts(reference: DriftReference, rows: np.ndarray, m: Manifest) -> list[int]:
    """The oracle: one searchsorted per numeric feature, NaN in the <missing> bin."""
    counts = np.zeros(reference.size, dtype=np.int64)
    for i, (feature, column) in enumerate(zip(m.features, reference.features, strict=True)):
        values = rows[:, i].astype(np.float64)
        present = ~np.isnan(values)
        bins = np.searchsorted(feature.stats.histogram.edges, values[present], side="right")
        np.add.at(counts, column.start + bins, 1)
        counts[column.stop - 1] += int((~present).sum())
    return counts.tolist()


def test_numeric_bins_match_searchsorted_edges_included(models_dir: Path) -> None:
    m = manifest(models_dir, "iris")
    reference = DriftReference(m)
    rng = np.random.default_rng(0)
    rows = rng.uniform(0, 8, size=(500, 4))
    # values exactly on an edge go right (side="right"), as the manifest's histogram did
    for i, feature in enumerate(m.features):
        rows[: len(feature.stats.histogram.edges), i] = feature.stats.histogram.edges
    prediction = Prediction(np.zeros(500), np.tile([1.0, 0.0, 0.0], (500, 1)))
    counted = reference.count(rows, prediction)
    features_end = reference.features[-1].stop
    assert counted[:features_end].tolist() == expected_counts(reference, rows, m)[:features_end]
    assert reference.prediction is not None
    assert counted[reference.prediction.start] == 500


def test_mixed_rows_with_missing_values_and_unseen_categories(models_dir: Path) -> None:
    m = manifest(models_dir, "churn")
    assert m.estimator.supports_missing
    reference = DriftReference(m)
    rows = np.array(
        [
            [30.0, "paris", 2000.0],
            [np.nan, "berlin", np.nan],
            [99.0, None, 5000.0],
            [18.0, "tokyo", 1.0],
        ],
        dtype=object,
    )
    counted = reference.count(rows, Prediction(np.array(["no"] * 4), np.tile([0.6, 0.4], (4, 1))))
    age, city, income = reference.features
    assert city.labels == ["berlin", "lisbon", "paris", "<unseen>", "<missing>"]
    assert counted[city.start : city.stop].tolist() == [1, 0, 1, 1, 1]
    assert counted[age.stop - 1] == 1  # <missing>
    assert counted[income.stop - 1] == 1
    assert counted[age.start : age.stop].sum() == counted[income.start : income.stop].sum() == 4


def test_regression_predictions_fall_in_the_target_histogram(models_dir: Path) -> None:
    m = manifest(models_dir, "diabetes")
    reference = DriftReference(m)
    assert m.target.histogram is not None
    edges = m.target.histogram.edges
    values = np.array([edges[0] - 1, edges[0], edges[-1] + 1])
    counted = reference.count(np.zeros((3, 10)), Prediction(values))
    assert reference.prediction is not None
    start = reference.prediction.start
    assert counted[start : reference.prediction.stop].tolist() == [1, 1] + [0] * (
        len(edges) - 2
    ) + [1]


def test_labels_stay_distinct_and_readable() -> None:
    assert interval_labels(Histogram(edges=[1.0, 2.5], counts=[1, 1, 1])) == [
        "(-inf, 1)",
        "[1, 2.5)",
        "[2.5, +inf)",
    ]
    close = interval_labels(Histogram(edges=[1.0000001, 1.0000002], counts=[1, 1, 1]))
    assert close == ["(-inf, 1.0000001)", "[1.0000001, 1.0000002)", "[1.0000002, +inf)"]


def test_a_category_spelled_like_a_reserved_bin_keeps_its_own(models_dir: Path) -> None:
    m = manifest(models_dir, "churn")
    stats = CategoryStats(
        count=3, missing=0, categories=["<missing>", "<unseen>"], frequencies=[1, 2]
    )
    city = Feature(name="city", type="category", stats=stats)
    changed = m.model_copy(update={"features": [m.features[0], city, m.features[2]]})
    labels = DriftReference(changed).features[1].labels
    assert labels == ["<missing>", "<unseen>", "<unseen>_", "<missing>_"]


def test_histograms_with_many_edges_count_past_255(models_dir: Path) -> None:
    m = manifest(models_dir, "iris")
    edges = [float(e) for e in range(300)]
    wide = NumericStats(
        **{
            **m.features[0].stats.model_dump(exclude={"histogram"}),
            "histogram": Histogram(edges=edges, counts=[1] * 301),
        }
    )
    features = [m.features[0].model_copy(update={"stats": wide}), *m.features[1:]]
    reference = DriftReference(m.model_copy(update={"features": features}))
    rows = np.array([[299.5, 3.0, 1.0, 0.2], [-1.0, 3.0, 1.0, 0.2]])
    counted = reference.count(rows, Prediction(np.zeros(2), np.tile([1.0, 0.0, 0.0], (2, 1))))
    assert counted[300] == 1  # the bin past the 300th edge
    assert counted[0] == 1


def test_psi_floors_empty_bins_and_needs_rows() -> None:
    assert psi(np.array([0, 0]), np.array([0.5, 0.5])) is None
    assert psi(np.array([5, 5]), np.array([0.5, 0.5])) == 0.0
    expected = (1e-4 - 0.5) * np.log(1e-4 / 0.5) + 0.5 * np.log(1 / 0.5)
    assert psi(np.array([0, 10]), np.array([0.5, 0.5])) == pytest.approx(expected)
