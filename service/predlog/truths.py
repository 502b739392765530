"""Which regression truths feedback accepts, and how much one row's error may count.

Live MAE is a sum of |prediction - truth| over rows: one absurd truth (1e308, or a
400-digit integer) would turn the sum into infinity for good, and every later
`/quality` answer and PromQL ratio with it. So a truth must lie within the
training target's range widened by `TRUTH_RANGE_FACTOR` times its scale on each
side (docs/prediction-log.md), and a row's error counts at most `ERROR_CAP`, so
the sums stay finite whatever a model predicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tabserve.artifact.manifest import TargetInfo
from tabserve.service.core.validation import MAX_MAGNITUDE
from tabserve.service.predlog.records import Label

TRUTH_RANGE_FACTOR = 1000.0
"""How many target scales past the training target's 10th..90th percentiles a truth may lie."""
ERROR_CAP = 2 * MAX_MAGNITUDE
"""The most one row adds to the absolute-error sum (a non-finite prediction counts this)."""


@dataclass(frozen=True)
class TruthRange:
    """The closed interval of regression truths feedback accepts for one model version."""

    low: float
    high: float

    @classmethod
    def of(cls, target: TargetInfo | None) -> TruthRange:
        """From the manifest's target histogram: its edges are the training deciles.

        The scale is the larger of the 10th..90th percentile spread and their
        magnitudes (at least 1), so a target that is nearly constant, or far from
        zero, still gets a wide range. Never beyond what features accept (float32).
        """
        histogram = target.histogram if target is not None else None
        edges = histogram.edges if histogram is not None else []
        if not edges:
            return cls(-MAX_MAGNITUDE, MAX_MAGNITUDE)
        p10, p90 = edges[0], edges[-1]
        scale = max(p90 - p10, abs(p10), abs(p90), 1.0)
        margin = TRUTH_RANGE_FACTOR * scale
        return cls(max(p10 - margin, -MAX_MAGNITUDE), min(p90 + margin, MAX_MAGNITUDE))

    def check(self, truth: int | float) -> tuple[float | None, str | None]:
        """The truth as a float, or None and why it is refused (NaN and infinities too)."""
        try:
            value = float(truth)
        except OverflowError:  # an integer beyond float64
            value = math.inf
        if not self.low <= value <= self.high:
            return None, (
                f"expected a finite number within [{self.low:g}, {self.high:g}] (the "
                f"training target's 10th to 90th percentile, widened by "
                f"{TRUTH_RANGE_FACTOR:g} times its scale on each side), got {_shown(truth)}"
            )
        return value, None


def absolute_error(prediction: Label, truth: Label) -> float:
    """|prediction - truth| for the quality sums, at most ERROR_CAP (also for NaN or inf)."""
    try:
        error = abs(float(prediction) - float(truth))
    except (TypeError, ValueError, OverflowError):
        return ERROR_CAP
    return error if error <= ERROR_CAP else ERROR_CAP  # NaN fails the comparison too


def _shown(value: int | float) -> str:
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return repr(value)
