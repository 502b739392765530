"""Parity between a compiled model and scikit-learn, on rows drawn from the manifest.

The rows cover each numeric feature's training range (uniform between its p01 and
p99, plus its exact quantiles, histogram edges, min and max), every category, and
missing values where the model accepts them. They have the layout validation
hands to `predict`: float64 for all-numeric models, otherwise an object array of
floats (NaN = missing) and strings (None = missing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from tabserve.artifact.manifest import CategoryStats, Manifest, NumericStats
from tabserve.service.core.engines.boosters import booster_splits
from tabserve.service.core.engines.preparation import UnsupportedModelError
from tabserve.service.core.runtime import Prediction

RANDOM_ROWS = 256
SINGLE_ROWS = 8
MISSING_SHARE = 0.1


def parity_rows(manifest: Manifest, rows: int = RANDOM_ROWS, seed: int = 0) -> npt.NDArray[Any]:
    """`rows` random rows followed by rows of each feature's landmark values."""
    known = [f.stats for f in manifest.features if f.stats is not None]
    if len(known) != len(manifest.features):
        raise UnsupportedModelError(
            "no training statistics to draw parity rows from (imported without reference "
            "data), so the compiled engine cannot be checked"
        )
    rng = np.random.default_rng(seed)
    landmarks = [_landmarks(stats) for stats in known]
    extra = max(len(values) for values in landmarks)
    total = rows + extra
    all_numeric = all(f.type == "number" for f in manifest.features)
    may_miss = manifest.missing_allowed
    out = np.empty((total, len(manifest.features)), dtype=np.float64 if all_numeric else object)
    for i, stats in enumerate(known):
        column: list[Any]
        if isinstance(stats, NumericStats):
            low, high = stats.quantiles["p01"], stats.quantiles["p99"]
            column = [float(v) for v in rng.uniform(low, high, rows)]
        else:
            assert isinstance(stats, CategoryStats)
            column = [str(v) for v in rng.choice(stats.categories or [""], rows)]
        column += [landmarks[i][k % len(landmarks[i])] for k in range(extra)]
        if may_miss[i]:
            marker = np.nan if isinstance(stats, NumericStats) else None
            for row in np.flatnonzero(rng.random(rows) < MISSING_SHARE):
                column[row] = marker
        out[:, i] = column
    for i, feature in enumerate(manifest.features):
        if may_miss[i]:
            out[0, i] = np.nan if feature.type == "number" else None
    return out


def _landmarks(stats: NumericStats | CategoryStats) -> list[Any]:
    if isinstance(stats, CategoryStats):
        return list(stats.categories) or [""]
    values = {stats.min, stats.max, *stats.quantiles.values(), *stats.histogram.edges}
    return sorted(values)


def parity_failure(
    reference: Callable[[npt.NDArray[Any]], Prediction],
    candidate: Callable[[npt.NDArray[Any]], Prediction],
    rows: npt.NDArray[Any],
    tolerance: float,
) -> str | None:
    """None if `candidate` matches `reference` on `rows` (whole and row by row), else why not.

    Labels must be identical. Probabilities may differ by `tolerance` (absolute);
    regression values by `tolerance` times the largest reference value (at least 1).
    """
    expected = reference(rows)
    problem = _difference(expected, candidate(rows), tolerance)
    for i in range(min(SINGLE_ROWS, len(rows))):
        if problem is not None:
            break
        one = Prediction(
            expected.predict[i : i + 1],
            None if expected.proba is None else expected.proba[i : i + 1],
        )
        problem = _difference(one, candidate(rows[i : i + 1]), tolerance)
    return problem


def _difference(expected: Prediction, got: Prediction, tolerance: float) -> str | None:
    want = expected.predict
    rows = len(want)
    if got.predict.shape != want.shape:
        return f"output shape {got.predict.shape}, scikit-learn gives {want.shape}"
    if expected.proba is None:
        scale = max(1.0, float(np.max(np.abs(want))))
        gap = float(np.max(np.abs(got.predict.astype(np.float64) - want)))
        if not gap <= tolerance * scale:
            return (
                f"values differ from scikit-learn's by up to {gap:.3g} "
                f"(tolerance {tolerance:g} x {scale:.3g})"
            )
        return None
    differ = np.flatnonzero(got.predict != want)
    if differ.size:
        first = int(differ[0])
        return (
            f"{differ.size} of {rows} labels differ from scikit-learn's "
            f"(row {first}: {got.predict[first]!r}, expected {want[first]!r})"
        )
    if got.proba is None or got.proba.shape != expected.proba.shape:
        shape = None if got.proba is None else got.proba.shape
        return f"probabilities of shape {shape}, scikit-learn gives {expected.proba.shape}"
    gap = float(np.max(np.abs(got.proba - expected.proba)))
    if not gap <= tolerance:
        return (
            f"probabilities differ from scikit-learn's by up to {gap:.3g} (tolerance {tolerance:g})"
        )
    return None


def split_probes(
    model: Any, base: npt.NDArray[np.float64], limit: int = 300, seed: int = 0
) -> npt.NDArray[np.float64] | None:
    """Rows that sit on and beside a tree ensemble's split thresholds (None: no trees).

    Each probe is a prepared row with one feature set to a threshold `t`, its float64
    neighbours, `float32(t)` or its float32 neighbours: where a float32 engine and
    scikit-learn's comparisons (float32 or float64, by estimator) could part ways.
    """
    splits = _splits(model)
    if splits is None or not len(splits[0]) or not len(base):
        return None
    features, thresholds = splits
    # A forest fitted with missing values may split missing from present values alone,
    # at threshold +inf: no number sits there, and the parity rows hold missing ones.
    finite = np.isfinite(thresholds)
    features, thresholds = features[finite], thresholds[finite]
    if not len(features):
        return None
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(features), size=min(limit, len(features)), replace=False)
    rows: list[npt.NDArray[np.float64]] = []
    for feature, threshold in zip(features[chosen], thresholds[chosen], strict=True):
        single = np.float32(threshold)
        for value in (
            threshold,
            np.nextafter(threshold, -np.inf),
            np.nextafter(threshold, np.inf),
            float(single),
            float(np.nextafter(single, np.float32(-np.inf))),
            float(np.nextafter(single, np.float32(np.inf))),
        ):
            row = base[len(rows) % len(base)].copy()
            row[feature] = value
            rows.append(row)
    return np.asarray(rows, dtype=np.float64)


def _splits(model: Any) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]] | None:
    """Every split (feature, threshold) of a tree ensemble's trees."""
    boosted = booster_splits(model)
    if boosted is not None:
        return boosted
    features: list[npt.NDArray[Any]] = []
    thresholds: list[npt.NDArray[Any]] = []
    if hasattr(model, "_predictors"):  # HistGradientBoosting
        for tree in (t for iteration in model._predictors for t in iteration):
            inner = tree.nodes[~tree.nodes["is_leaf"].astype(bool)]
            features.append(inner["feature_idx"])
            thresholds.append(inner["num_threshold"])
    elif hasattr(model, "estimators_"):  # forests (a list), gradient boosting (a 2-D array)
        for estimator in np.ravel(np.asarray(model.estimators_, dtype=object)):
            tree = estimator.tree_
            inner = tree.children_left >= 0
            features.append(tree.feature[inner])
            thresholds.append(tree.threshold[inner])
    else:
        return None
    return (
        np.concatenate(features).astype(np.intp),
        np.concatenate(thresholds).astype(np.float64),
    )
