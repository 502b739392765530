"""The drift reference of one model version: its bins, their labels and training shares.

Built once per model version from the manifest's training statistics. Every
feature's bins, then the prediction's, lie side by side in one flat vector, so a
batch (every model call kept since the last flush) is counted with one comparison
over its numeric block, one C-level lookup per categorical column and one
`bincount`:

* a numeric feature has the bins of its training histogram, `(-inf, e0)`,
  `[e0, e1)`, ..., `[e_last, +inf)` (a value's bin is
  `searchsorted(edges, value, side="right")`), then `<missing>`;
* a categorical feature has one bin per training category, then `<unseen>`
  (a category training never saw) and `<missing>`;
* the prediction has one bin per class (classifiers) or the bins of the training
  target's histogram (regressors).

A bin's reference share is its training rows over all training rows, missing
ones included. PSI compares live shares with these (see `psi`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise, repeat
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tabserve.artifact.manifest import CategoryStats, Histogram, Manifest, NumericStats
from tabserve.service.core.runtime import Prediction

EPSILON = 1e-4
"""Shares below this count as this in PSI, so an empty bin adds a large, finite term."""
MISSING = "<missing>"
UNSEEN = "<unseen>"


def psi(counts: npt.NDArray[Any], reference: npt.NDArray[np.float64]) -> float | None:
    """Population stability index of live `counts` per bin against `reference` shares.

    `sum((a - e) * ln(a / e))` over bins, where `a` is the live share and `e` the
    reference share, each raised to at least EPSILON (no renormalisation: the
    recording rules in deploy/prometheus compute exactly this). None without rows.
    """
    total = float(counts.sum())
    if total <= 0:
        return None
    live = np.maximum(counts / total, EPSILON)
    expected = np.maximum(reference, EPSILON)
    return float(((live - expected) * np.log(live / expected)).sum())


@dataclass(frozen=True)
class BinnedColumn:
    """One feature (or the prediction) and where its bins lie in the flat vector."""

    name: str
    kind: Literal["number", "category"]
    labels: list[str]
    reference: npt.NDArray[np.float64]
    start: int

    @property
    def stop(self) -> int:
        """One past its last bin in the flat vector."""
        return self.start + len(self.labels)


class DriftReference:
    """Bins and training shares of one model version; `count` bins a batch."""

    def __init__(self, manifest: Manifest) -> None:
        self.features: list[BinnedColumn] = []
        edges: list[list[float]] = []
        numeric_start: list[int] = []
        self._numeric: list[int] = []
        self._categorical: list[tuple[int, dict[str | None, int], int]] = []
        size = 0
        for i, feature in enumerate(manifest.features):
            stats = feature.stats
            if isinstance(stats, NumericStats):
                column = _numeric_column(feature.name, stats, size)
                self._numeric.append(i)
                edges.append(stats.histogram.edges)
                numeric_start.append(size)
            else:
                assert isinstance(stats, CategoryStats)
                column = _category_column(feature.name, stats, size)
                lookup: dict[str | None, int] = {
                    c: size + k for k, c in enumerate(stats.categories)
                }
                lookup[None] = column.stop - 1
                self._categorical.append((i, lookup, column.stop - 2))
            self.features.append(column)
            size = column.stop
        self.prediction = _prediction_column(manifest, size)
        self.size = size if self.prediction is None else self.prediction.stop
        self._all_numeric = len(self._numeric) == len(manifest.features)
        self._numeric_idx = np.asarray(self._numeric, dtype=np.intp)
        # Edges padded with +inf to one width, as [edge, 1, feature]: summing
        # `value >= edge` over the first axis is searchsorted(side="right") for every
        # value at once (adding whole [rows, features] planes, fast in numpy).
        width = max((len(e) for e in edges), default=0)
        padded = np.full((width, 1, len(edges)), np.inf)
        for position, cuts in enumerate(edges):
            padded[: len(cuts), 0, position] = cuts
        self._edges = padded
        self._passed_dtype = np.uint8 if width < 256 else np.intp  # a count of edges passed
        self._may_miss = manifest.estimator.supports_missing
        self._numeric_start = np.asarray(numeric_start, dtype=np.intp)
        self._numeric_missing = np.asarray(
            [self.features[i].stop - 1 for i in self._numeric], dtype=np.intp
        )
        self._class_index = {str(c): k for k, c in enumerate(manifest.target.classes or [])}
        target = manifest.target.histogram
        self._target_edges = np.asarray(target.edges if target is not None else [])

    def count(self, features: npt.NDArray[Any], prediction: Prediction) -> npt.NDArray[np.intp]:
        """Rows per flat bin for one batch (validated rows in manifest order)."""
        parts: list[npt.NDArray[np.intp]] = []
        if self._numeric:
            parts.append(self._numeric_bins(features))
        rows = features.shape[0]
        for i, lookup, unseen in self._categorical:
            codes = map(lookup.get, features[:, i], repeat(unseen, rows))
            parts.append(np.fromiter(codes, dtype=np.intp, count=rows))
        if self.prediction is not None:
            parts.append(self._prediction_bins(prediction))
        flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.bincount(flat, minlength=self.size)

    def _numeric_bins(self, features: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
        block = features if self._all_numeric else features[:, self._numeric_idx]
        if block.dtype != np.float64:
            block = block.astype(np.float64)
        passed = (block >= self._edges).view(np.uint8).sum(axis=0, dtype=self._passed_dtype)
        bins: npt.NDArray[np.intp] = passed + self._numeric_start
        if self._may_miss:  # validation refuses NaN for models that cannot take it
            missing = np.isnan(block)
            if missing.any():
                bins = np.where(missing, self._numeric_missing, bins)
        return bins.ravel()

    def _prediction_bins(self, prediction: Prediction) -> npt.NDArray[np.intp]:
        assert self.prediction is not None
        start = self.prediction.start
        if self.prediction.kind == "category":
            if prediction.proba is not None:
                found: npt.NDArray[np.intp] = prediction.proba.argmax(axis=1) + start
                return found
            labels = map(str, prediction.predict.tolist())
            index = self._class_index
            unknown = self.prediction.stop - 1
            codes = (start + index[label] if label in index else unknown for label in labels)
            return np.fromiter(codes, dtype=np.intp, count=prediction.predict.shape[0])
        values = np.asarray(prediction.predict, dtype=np.float64)
        bins: npt.NDArray[np.intp] = (
            np.searchsorted(self._target_edges, values, side="right") + start
        )
        return bins


def _numeric_column(name: str, stats: NumericStats, start: int) -> BinnedColumn:
    labels = [*interval_labels(stats.histogram), MISSING]
    counts = [*stats.histogram.counts, stats.missing]
    return BinnedColumn(name, "number", labels, _shares(counts), start)


def _category_column(name: str, stats: CategoryStats, start: int) -> BinnedColumn:
    unseen = _unused(UNSEEN, stats.categories)
    missing = _unused(MISSING, [*stats.categories, unseen])
    labels = [*stats.categories, unseen, missing]
    counts = [*stats.frequencies, 0, stats.missing]
    return BinnedColumn(name, "category", labels, _shares(counts), start)


def _prediction_column(manifest: Manifest, start: int) -> BinnedColumn | None:
    target = manifest.target
    if target.classes is not None and target.distribution is not None:
        labels = [str(c) for c in target.classes]
        unknown = _unused(UNSEEN, labels)
        counts = [*target.distribution, 0]
        return BinnedColumn("prediction", "category", [*labels, unknown], _shares(counts), start)
    if target.histogram is not None:
        labels = interval_labels(target.histogram)
        return BinnedColumn("prediction", "number", labels, _shares(target.histogram.counts), start)
    return None


def interval_labels(histogram: Histogram) -> list[str]:
    """`(-inf, 4.8)`, `[4.8, 5.1)`, ..., `[7.2, +inf)`: one label per bin.

    Edges print with 6 significant digits, or more where that would make two
    labels alike (the bins themselves use the exact edges).
    """
    edges = [float(e) for e in histogram.edges]
    digits = 6
    shown = [f"{e:.{digits}g}" for e in edges]
    while len(set(shown)) < len(shown) and digits < 17:
        digits += 1
        shown = [f"{e:.{digits}g}" for e in edges]
    bounds = ["-inf", *shown, "+inf"]
    labels = [f"[{low}, {high})" for low, high in pairwise(bounds)]
    labels[0] = "(" + labels[0][1:]
    return labels


def _unused(label: str, taken: list[str]) -> str:
    """`label`, with underscores added until no training category is spelled the same."""
    while label in taken:
        label += "_"
    return label


def _shares(counts: list[int]) -> npt.NDArray[np.float64]:
    total = sum(counts)
    values = np.asarray(counts, dtype=np.float64)
    return values / total if total else values
