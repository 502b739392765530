"""Training-data statistics for the manifest: per-feature stats and drift reference bins."""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from tabserve.artifact.manifest import CategoryStats, Histogram, NumericStats

QUANTILES = {"p01": 1, "p05": 5, "p25": 25, "p50": 50, "p75": 75, "p95": 95, "p99": 99}
DECILES = np.arange(10, 100, 10)


def histogram(values: npt.NDArray[np.float64]) -> Histogram:
    """Decile-edged histogram of finite `values` (edges de-duplicated for discrete data)."""
    if values.size == 0:
        return Histogram(edges=[], counts=[0])
    edges = np.unique(np.percentile(values, DECILES))
    bins = np.searchsorted(edges, values, side="right")
    counts = np.bincount(bins, minlength=edges.size + 1)
    return Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts])


def numeric_stats(column: npt.NDArray[np.float64]) -> NumericStats:
    """Statistics of a numeric column; NaN counts as missing."""
    present = column[~np.isnan(column)]
    if present.size == 0:
        zero = 0.0
        return NumericStats(
            count=0,
            missing=int(column.size),
            min=zero,
            max=zero,
            mean=zero,
            std=zero,
            quantiles=dict.fromkeys(QUANTILES, zero),
            histogram=histogram(present),
        )
    pct = np.percentile(present, list(QUANTILES.values()))
    return NumericStats(
        count=int(present.size),
        missing=int(column.size - present.size),
        min=float(present.min()),
        max=float(present.max()),
        mean=float(present.mean()),
        std=float(present.std()),
        quantiles={k: float(v) for k, v in zip(QUANTILES, pct, strict=True)},
        histogram=histogram(present),
    )


def category_stats(column: npt.NDArray[np.object_]) -> CategoryStats:
    """Statistics of a categorical column; None counts as missing."""
    present = [str(v) for v in column if v is not None]
    categories, counts = np.unique(np.asarray(present, dtype=str), return_counts=True)
    return CategoryStats(
        count=len(present),
        missing=int(column.size - len(present)),
        categories=[str(c) for c in categories],
        frequencies=[int(c) for c in counts],
    )


def fingerprint(features: npt.NDArray[np.object_], target: npt.NDArray[np.generic]) -> str:
    """A sha256 over the data's canonical text form: equal data gives an equal fingerprint."""
    digest = hashlib.sha256()
    for row in features:
        digest.update(repr(tuple(_canonical(v) for v in row)).encode())
    digest.update(b"\x00target\x00")
    digest.update(repr([_canonical(v) for v in target.tolist()]).encode())
    return digest.hexdigest()


def _canonical(value: object) -> object:
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
