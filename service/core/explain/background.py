"""The training means of the columns a linear model takes, from the manifest's statistics.

The manifest profiles every feature over the training data: a numeric feature's mean
and its count of missing values, a categorical feature's frequency per category. When
each column comes from one feature (`columns.feature_sources`), a column's mean over the
training data is the frequency-weighted mean of what the preprocessing makes of each
of its feature's values: exact for categories (a finite support) and, for numbers, exact
when the preprocessing is affine in the value (imputers, scalers), which is checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tabserve.artifact.manifest import CategoryStats, Manifest, NumericStats
from tabserve.service.core.explain.attribution import Floats
from tabserve.service.core.explain.columns import Sources
from tabserve.service.core.explain.methods import UnsupportedError

Transform = Callable[[Any], Floats]
Support = list[tuple[Any, float]]


def training_means(manifest: Manifest, transform: Transform, sources: Sources) -> Floats:
    """Each column's mean over the profiled training rows (the model's input columns)."""
    supports = [_support(feature.name, feature.stats) for feature in manifest.features]
    longest = max(len(s) for s in supports)
    width = len(supports)
    rows = np.empty((longest + 3, width), dtype=object)
    weights = np.zeros((longest, width))
    for i, support in enumerate(supports):
        for r in range(longest):
            value, weight = support[r] if r < len(support) else (support[0][0], 0.0)
            rows[r, i] = value
            weights[r, i] = weight
        rows[longest:, i] = support[0][0]
    numeric = [i for i, f in enumerate(manifest.features) if isinstance(f.stats, NumericStats)]
    probes = _affinity_probes(manifest, numeric)
    for i, values in probes.items():
        rows[longest:, i] = values
    if len(numeric) == width:
        rows = rows.astype(np.float64)
    columns = transform(rows)
    means: Floats = (columns[:longest] * weights[:, sources]).sum(axis=0)
    _check_affine(manifest, columns[longest:], sources, probes)
    return means


def _support(name: str, stats: NumericStats | CategoryStats | None) -> Support:
    """The values a feature took in training, each with its share of the rows."""
    if stats is None:
        raise UnsupportedError(
            f"feature {name!r} has no training statistics (imported without reference "
            "data), and a linear model's base value needs its training mean"
        )
    total = stats.count + stats.missing
    if total == 0:
        raise UnsupportedError(f"feature {name!r} has no training rows in the manifest")
    missing: Support = [(math.nan, stats.missing / total)] if stats.missing else []
    if isinstance(stats, NumericStats):
        present: Support = [(stats.mean, stats.count / total)] if stats.count else []
        return present + missing or [(0.0, 0.0)]
    missing = [(None, stats.missing / total)] if stats.missing else []
    frequencies = zip(stats.categories, stats.frequencies, strict=True)
    return [(c, n / total) for c, n in frequencies] + missing


def _affinity_probes(manifest: Manifest, numeric: list[int]) -> dict[int, list[float]]:
    """Per numeric feature with a range: its min, its mean and its max, in three rows."""
    probes = {}
    for i in numeric:
        stats = manifest.features[i].stats
        assert isinstance(stats, NumericStats)
        if stats.count and stats.max > stats.min:
            probes[i] = [stats.min, stats.mean, stats.max]
    return probes


def _check_affine(
    manifest: Manifest, columns: Floats, sources: Sources, probes: dict[int, list[float]]
) -> None:
    """Refuse a numeric feature whose columns are not affine in its value (its mean's image
    would not be the mean of its images)."""
    for i, (low, middle, high) in probes.items():
        # A column depends on its own feature alone: the probe rows move every feature.
        own = sources == i
        at_low, at_middle, at_high = columns[0, own], columns[1, own], columns[2, own]
        fraction = (middle - low) / (high - low)
        expected = at_low + fraction * (at_high - at_low)
        scale = np.maximum(1.0, np.abs(expected))
        if not np.all(np.abs(at_middle - expected) <= 1e-9 * scale):
            name = manifest.features[i].name
            raise UnsupportedError(
                f"the preprocessing of numeric feature {name!r} is not affine, so its "
                "training mean in the model's columns is unknown"
            )
