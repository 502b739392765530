"""Units under the pipeline: statistics, fingerprints, manifest rules, table and progress."""

from __future__ import annotations

import io
import math
import re
import threading
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from tabserve.artifact.manifest import (
    ArtifactFile,
    CategoryStats,
    Environment,
    EstimatorInfo,
    Feature,
    Histogram,
    Manifest,
    NumericStats,
    TargetInfo,
    TrainingData,
)
from tabserve.training import progress as progress_module
from tabserve.training.evaluate import format_table
from tabserve.training.profile import category_stats, fingerprint, histogram, numeric_stats
from tabserve.training.progress import Progress

# statistics -----------------------------------------------------------------------------


def test_histogram_bins_follow_the_documented_searchsorted_rule() -> None:
    values = np.arange(1.0, 11.0)  # 1..10: deciles 1.9, 2.8, ..., 9.1
    hist = histogram(values)
    assert hist.edges == pytest.approx([1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1])
    assert hist.counts == [1] * 10
    assert (
        hist.counts
        == np.bincount(np.searchsorted(hist.edges, values, side="right"), minlength=10).tolist()
    )


def test_histogram_of_discrete_values_deduplicates_edges() -> None:
    values = np.asarray([0.0] * 6 + [1.0] * 5)  # 11 values: the deciles fall on values
    hist = histogram(values)
    assert hist.edges == [0.0, 1.0]
    assert hist.counts == [0, 6, 5]
    assert histogram(np.asarray([5.0, 5.0, 5.0])) == Histogram(edges=[5.0], counts=[0, 3])
    assert histogram(np.asarray([])) == Histogram(edges=[], counts=[0])


def test_numeric_stats_exclude_missing_values() -> None:
    column = np.asarray([4.0, math.nan, 1.0, 7.0, math.nan])
    stats = numeric_stats(column)
    assert (stats.count, stats.missing) == (3, 2)
    assert (stats.min, stats.max, stats.mean) == (1.0, 7.0, 4.0)
    assert stats.std == float(np.std([4.0, 1.0, 7.0]))
    assert stats.quantiles["p50"] == 4.0
    assert list(stats.quantiles) == ["p01", "p05", "p25", "p50", "p75", "p95", "p99"]
    assert sum(stats.histogram.counts) == 3


def test_numeric_stats_of_an_all_missing_column() -> None:
    stats = numeric_stats(np.asarray([math.nan, math.nan]))
    assert (stats.count, stats.missing) == (0, 2)
    assert (stats.min, stats.max, stats.mean, stats.std) == (0.0, 0.0, 0.0, 0.0)
    assert stats.histogram == Histogram(edges=[], counts=[0])


def test_category_stats_sort_and_count_present_values() -> None:
    column = np.asarray(["b", None, "a", "b", "c", None, "b"], dtype=object)
    assert category_stats(column) == CategoryStats(
        count=5, missing=2, categories=["a", "b", "c"], frequencies=[1, 3, 1]
    )
    assert category_stats(np.asarray([None, None], dtype=object)) == CategoryStats(
        count=0, missing=2, categories=[], frequencies=[]
    )


def test_fingerprint_depends_on_values_only() -> None:
    floats = np.asarray([[1.0, math.nan], [2.0, 3.0]])
    objects = np.asarray([[1.0, math.nan], [2.0, 3.0]], dtype=object)
    target = np.asarray(["a", "b"])
    assert fingerprint(floats, target) == fingerprint(objects, target)
    assert fingerprint(floats, target) == fingerprint(floats.copy(), target.copy())
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint(floats, target))
    changed = floats.copy()
    changed[1, 1] = 3.5
    assert fingerprint(changed, target) != fingerprint(floats, target)
    assert fingerprint(floats, np.asarray(["a", "c"])) != fingerprint(floats, target)
    swapped = np.asarray([[1.0, 3.0], [2.0, math.nan]])
    assert fingerprint(swapped, target) != fingerprint(floats, target)


# manifest rules -------------------------------------------------------------------------


def _number() -> NumericStats:
    return numeric_stats(np.asarray([1.0, 2.0, 3.0]))


def _manifest(**changes: Any) -> Manifest:
    fields: dict[str, Any] = {
        "name": "m",
        "version": 1,
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
        "task": "classification",
        "estimator": EstimatorInfo(
            kind="random_forest",
            class_name="RandomForestClassifier",
            params={},
            pipeline=["model"],
            supports_missing=False,
        ),
        "features": [Feature(name="x", type="number", stats=_number())],
        "target": TargetInfo(name="y", classes=["a", "b"], distribution=[2, 1]),
        "metrics": {"accuracy": 1.0},
        "environment": Environment(python="3", numpy="2", scikit_learn="1.5.0", joblib="1"),
        "artifact": ArtifactFile(file="model.joblib", sha256="0" * 64, size_bytes=1),
        "training": TrainingData(
            source="csv:x.csv",
            rows=3,
            train_rows=2,
            test_rows=1,
            test_size=0.3,
            seed=0,
            fingerprint="f",
        ),
    }
    fields.update(changes)
    return Manifest.model_validate(fields)


def test_a_valid_manifest_round_trips_through_json() -> None:
    manifest = _manifest(target=TargetInfo(name="y", classes=[0, 1], distribution=[2, 1]))
    again = Manifest.model_validate_json(manifest.model_dump_json())
    assert again == manifest
    assert again.target.classes == [0, 1]
    assert _manifest().feature_names == ["x"]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"name": "../m"}, "String should match pattern"),
        ({"version": 0}, "Input should be greater than or equal to 1"),
        ({"features": []}, "List should have at least 1 item"),
        (
            {
                "features": [
                    Feature(name="x", type="number", stats=_number()),
                    Feature(name="x", type="number", stats=_number()),
                ]
            },
            "feature names must be unique",
        ),
        ({"target": TargetInfo(name="y")}, "a classification manifest needs target.classes"),
        (
            {"task": "regression"},
            "a regression manifest has no target.classes",
        ),
        ({"schema_version": 2}, "Input should be 1"),
        ({"owner": "me"}, "Extra inputs are not permitted"),
    ],
)
def test_manifest_rules(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        _manifest(**changes)


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (
            lambda: Histogram(edges=[1.0, 2.0], counts=[1, 2]),
            "histogram has 2 edges, so it needs 3 counts, got 2",
        ),
        (
            lambda: Histogram(edges=[2.0, 2.0], counts=[1, 2, 3]),
            "histogram edges must be strictly increasing",
        ),
        (
            lambda: CategoryStats(count=1, missing=0, categories=["a"], frequencies=[1, 2]),
            "categories and frequencies must have the same length",
        ),
        (
            lambda: CategoryStats(count=2, missing=0, categories=["a", "a"], frequencies=[1, 1]),
            "categories must be unique",
        ),
        (
            lambda: Feature(name="x", type="category", stats=_number()),
            "feature 'x' is a category but has number stats",
        ),
        (lambda: Feature(name="", type="number", stats=_number()), "at least 1 character"),
    ],
)
def test_part_rules(build: Any, problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        build()


# the metrics table and progress lines ---------------------------------------------------


def test_format_table() -> None:
    assert format_table({"accuracy": 0.95, "f1_macro": 0.123456, "roc_auc": 1.0}) == (
        "metric    value\n--------  ------\naccuracy  0.9500\nf1_macro  0.1235\nroc_auc   1.0000"
    )
    assert format_table({"r2": -0.5}) == "metric  value\n------  ------\nr2      -0.5000"


def _done(line: str) -> str:
    return re.sub(r"\(\d+\.\ds\)$", "(Ns)", line)


def test_progress_numbers_steps_and_reports_done() -> None:
    stream = io.StringIO()
    progress = Progress(total=2, stream=stream)
    with progress.step("first"):
        pass
    with progress.step("second"):
        pass
    assert [_done(line) for line in stream.getvalue().splitlines()] == [
        "[1/2] first ...",
        "[1/2] first done (Ns)",
        "[2/2] second ...",
        "[2/2] second done (Ns)",
    ]


def test_progress_step_that_fails_prints_no_done_line() -> None:
    stream = io.StringIO()
    progress = Progress(total=1, stream=stream)
    with pytest.raises(RuntimeError, match="boom"), progress.step("failing"):
        raise RuntimeError("boom")
    assert stream.getvalue() == "[1/1] failing ...\n"


def test_progress_quiet_prints_nothing() -> None:
    stream = io.StringIO()
    with Progress(total=1, stream=stream, quiet=True).step("hidden"):
        pass
    assert stream.getvalue() == ""


class _TickWatcher(io.StringIO):
    """A stream that signals when a tick line (`... Ns`) is written."""

    def __init__(self) -> None:
        super().__init__()
        self.ticked = threading.Event()

    def write(self, text: str) -> int:
        if re.search(r" \.\.\. \d+s\n$", text):
            self.ticked.set()
        return super().write(text)


def test_a_slow_step_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "TICK_SECONDS", 0.01)
    stream = _TickWatcher()
    with Progress(total=1, stream=stream).step("slow"):
        assert stream.ticked.wait(timeout=30)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/1] slow ..."
    assert all(re.fullmatch(r"\[1/1\] slow \.\.\. \d+s", line) for line in lines[1:-1])
    assert len(lines) >= 3
    assert re.fullmatch(r"\[1/1\] slow done \(\d+\.\ds\)", lines[-1])
