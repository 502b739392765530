"""Live quality from logged predictions and their ground truth.

Two views of the same numbers: `measure` computes them from the store over a
window (for `GET /models/{name}/quality`), and `QualityCounters` counts each
accepted ground truth into Prometheus counters, which add up exactly across
worker processes and pods (PromQL turns them into accuracy, macro F1 and MAE).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Counter

from tabserve.artifact.manifest import Task
from tabserve.service.predlog.metrics import PredictionLogMetrics
from tabserve.service.predlog.records import Label, LabelledRow
from tabserve.service.predlog.truths import absolute_error


@dataclass(frozen=True)
class VersionQuality:
    """Quality of one model version over the rows with ground truth."""

    version: int
    rows: int
    accuracy: float | None = None
    macro_f1: float | None = None
    mae: float | None = None


def measure(rows: Sequence[LabelledRow], task: Task) -> list[VersionQuality]:
    """Per version (ascending): accuracy and macro F1 for classifiers, MAE for regressors."""
    by_version: dict[int, list[LabelledRow]] = {}
    for row in rows:
        by_version.setdefault(row.version, []).append(row)
    out = []
    for version in sorted(by_version):
        group = by_version[version]
        if task == "classification":
            actual = [str(r.truth) for r in group]
            predicted = [str(r.prediction) for r in group]
            out.append(
                VersionQuality(
                    version,
                    len(group),
                    accuracy=sum(a == p for a, p in zip(actual, predicted, strict=True))
                    / len(group),
                    macro_f1=macro_f1(actual, predicted),
                )
            )
        else:
            errors = [absolute_error(r.prediction, r.truth) for r in group]
            out.append(VersionQuality(version, len(group), mae=sum(errors) / len(errors)))
    return out


def macro_f1(actual: Sequence[str], predicted: Sequence[str]) -> float:
    """The unweighted mean of per-class F1 over every class that is actual or predicted.

    Per class, F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (actual count + predicted count),
    which is also how the PromQL in docs/prediction-log.md computes it.
    """
    correct = Tally(a for a, p in zip(actual, predicted, strict=True) if a == p)
    actual_count = Tally(actual)
    predicted_count = Tally(predicted)
    classes = set(actual_count) | set(predicted_count)
    scores = [2 * correct[c] / (actual_count[c] + predicted_count[c]) for c in classes]
    return sum(scores) / len(scores)


class QualityCounters:
    """Prometheus counters of accepted ground truth, bound once per model version."""

    def __init__(self, metrics: PredictionLogMetrics) -> None:
        self.metrics = metrics
        self._bound: dict[tuple[str, int], _Bound] = {}

    def count(
        self,
        model: str,
        version: int,
        classes: list[str] | None,
        prediction: Label,
        truth: Label,
    ) -> None:
        """One row's ground truth: a confusion cell for classifiers, |error| for regressors."""
        bound = self._bind(model, version, classes)
        bound.rows.inc()
        if bound.absolute_error is not None:
            bound.absolute_error.inc(absolute_error(prediction, truth))
            return
        actual, predicted = str(truth), str(prediction)
        cell = bound.confusion.get((actual, predicted))
        if cell is None:  # a label outside the manifest's classes: count it anyway
            labels = (model, str(version), actual, predicted)
            cell = bound.confusion[(actual, predicted)] = self.metrics.feedback_confusion.labels(
                *labels
            )
        cell.inc()
        if actual == predicted:
            correct = bound.correct.get(actual)
            if correct is None:
                correct = bound.correct[actual] = self.metrics.feedback_correct.labels(
                    model, str(version), actual
                )
            correct.inc()

    def prepare(self, model: str, version: int, classes: list[str] | None) -> None:
        """Create a version's series at 0 before any feedback, so `increase()` sees it all."""
        self._bind(model, version, classes)

    def _bind(self, model: str, version: int, classes: list[str] | None) -> _Bound:
        key = (model, version)
        bound = self._bound.get(key)
        if bound is not None:
            return bound
        labels = (model, str(version))
        m = self.metrics
        # Every class's series exists from the first feedback on (at 0), so PromQL's
        # per-class ratios see classes never predicted correctly too.
        bound = _Bound(
            rows=m.feedback_rows.labels(*labels),
            absolute_error=(m.feedback_absolute_error.labels(*labels) if classes is None else None),
            confusion={
                (a, p): m.feedback_confusion.labels(*labels, a, p)
                for a in classes or []
                for p in classes or []
            },
            correct={c: m.feedback_correct.labels(*labels, c) for c in classes or []},
        )
        self._bound[key] = bound
        return bound


@dataclass
class _Bound:
    rows: Counter
    absolute_error: Counter | None
    confusion: dict[tuple[str, str], Counter]
    correct: dict[str, Counter]
