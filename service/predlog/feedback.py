"""Ground truth for logged predictions: validate each item, join it with the log, count it.

Each item gets its own outcome (`Outcome`): accepted; unknown_request (no logged
row with that request id and row for the model: never logged, sampled out,
expired, or not yet written by another worker, so worth a retry); duplicate (the
row has ground truth already, or the item repeats an earlier one); invalid (the
truth does not fit the model). Rows still in this process's writer queue are
written first, so feedback right after a prediction finds it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tabserve.artifact.manifest import Manifest
from tabserve.service.core.errors import ModelNotFoundError
from tabserve.service.core.registry import ModelRegistry
from tabserve.service.predlog.metrics import PredictionLogMetrics
from tabserve.service.predlog.quality import QualityCounters
from tabserve.service.predlog.records import Label, LoggedPrediction, Outcome, Truth
from tabserve.service.predlog.store import PredictionStore
from tabserve.service.predlog.truths import TruthRange
from tabserve.service.predlog.writer import PredictionLogWriter

FLUSH_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class FeedbackResult:
    """What became of one item; `version` is the version that made the prediction."""

    request_id: str
    row: int
    outcome: Outcome
    version: int | None = None
    error: str | None = None


class FeedbackRecorder:
    """Accepts ground truth for one model at a time. Blocking: call it off the event loop."""

    def __init__(
        self,
        store: PredictionStore,
        writer: PredictionLogWriter,
        registry: ModelRegistry,
        metrics: PredictionLogMetrics,
    ) -> None:
        self.store = store
        self.writer = writer
        self.registry = registry
        self.metrics = metrics
        self.counters = QualityCounters(metrics)

    def record(self, model: str, items: Sequence[Truth]) -> list[FeedbackResult]:
        """One result per item, in order. ModelNotFoundError if `model` is not served."""
        self.registry.versions(model)
        found = self._logged(model, [(i.request_id, i.row) for i in items])
        results: list[FeedbackResult | None] = [None] * len(items)
        pending: dict[tuple[str, int], tuple[int, LoggedPrediction, Label]] = {}
        for position, item in enumerate(items):
            key = (item.request_id, item.row)
            logged = found.get(key)
            if logged is None:
                results[position] = FeedbackResult(*key, Outcome.UNKNOWN_REQUEST)
                continue
            version = logged.row.version
            if key in pending or logged.truth is not None:
                results[position] = FeedbackResult(*key, Outcome.DUPLICATE, version)
                continue
            truth, error = self._checked(model, version, item.truth)
            if error is not None:
                results[position] = FeedbackResult(*key, Outcome.INVALID, version, error)
                continue
            pending[key] = (position, logged, truth)
        stored = self.store.add_truths(
            model, [(*key, truth) for key, (_, _, truth) in pending.items()], time.time()
        )
        for key, (position, logged, truth) in pending.items():
            version = logged.row.version
            if key not in stored:  # another process stored the same row's truth first
                results[position] = FeedbackResult(*key, Outcome.DUPLICATE, version)
                continue
            results[position] = FeedbackResult(*key, Outcome.ACCEPTED, version)
            self.counters.count(
                model, version, self._classes(model, version), logged.row.prediction, truth
            )
        final = [r for r in results if r is not None]
        for outcome in Outcome:
            n = sum(r.outcome is outcome for r in final)
            if n:
                self.metrics.feedback_items.labels(model, outcome.value).inc(n)
        return final

    def prepare(self) -> None:
        """Create every loaded version's quality series at 0 (see `QualityCounters.prepare`)."""
        for version in self.registry.all():
            if version.served is not None:
                self.counters.prepare(
                    version.name, version.version, self._classes(version.name, version.version)
                )

    def _logged(
        self, model: str, keys: list[tuple[str, int]]
    ) -> dict[tuple[str, int], LoggedPrediction]:
        # Asked before reading: a write that commits while the read runs and settles
        # right after it would otherwise leave its rows unseen and unflushed.
        unsettled = self.writer.pending
        found = self.store.find(model, keys)
        missing = [k for k in keys if k not in found]
        if missing and unsettled:
            self.writer.flush(FLUSH_TIMEOUT_SECONDS)
            found.update(self.store.find(model, missing))
        return found

    def _classes(self, model: str, version: int) -> list[str] | None:
        manifest = self._manifest(model, version)
        classes = manifest.target.classes if manifest is not None else None
        return [str(c) for c in classes] if classes else None

    def _manifest(self, model: str, version: int) -> Manifest | None:
        """The predicting version's manifest; the default version's if it was unloaded."""
        try:
            served = self.registry.get(model, version).served
        except ModelNotFoundError:
            served = None
        served = served or self.registry.get(model).served
        return served.manifest if served is not None else None

    def _checked(self, model: str, version: int, truth: Label) -> tuple[Label, str | None]:
        """The truth in the model's own terms (its class label), or why it does not fit."""
        manifest = self._manifest(model, version)
        labels = manifest.target.classes if manifest is not None else None
        if labels:
            truth_text = None if isinstance(truth, bool | float) else str(truth)
            for label in labels:
                if truth_text == str(label):
                    return label, None
            shown = ", ".join(repr(str(c)) for c in labels)
            return truth, f"expected one of the model's classes ({shown}), got {truth!r}"
        if isinstance(truth, bool) or not isinstance(truth, int | float):
            return truth, f"expected a number (the model is a regressor), got {truth!r}"
        value, error = TruthRange.of(manifest.target if manifest else None).check(truth)
        return (truth, error) if value is None else (value, None)
