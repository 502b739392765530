"""Live drift and data quality: served inputs and predictions against the training statistics.

`DriftMonitor.observe` is a data plane call listener: it keeps a reference to each
coalesced batch and its prediction (an O(1) append). `flush` bins everything kept
for a model version in one vectorised pass (`DriftReference.count`: no per-row
Python) and adds the counts to the Prometheus counters `tabserve_drift_rows_total`
and `tabserve_drift_prediction_rows_total` (one `inc` per non-empty bin). It runs
on a short timer, before every `/metrics` exposition, before every drift report
and at shutdown, so totals stay exact while a model call pays only for the
append; a version with MAX_WAITING_ROWS rows waiting is binned at once, which
bounds the memory. Out-of-range values are the existing
`tabserve_out_of_range_values_total` (counted by validation), not counted again.

`report` answers for a sliding window: it reads the counter totals (every
worker's, in multiprocess mode) and subtracts a snapshot taken about
`window_seconds` ago. Everything here runs on the event loop, so there are no locks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter

from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.digits import parse_digits
from tabserve.service.core.drift_metrics import DriftMetrics
from tabserve.service.core.drift_reference import BinnedColumn, DriftReference, psi
from tabserve.service.core.drift_settings import DriftSettings
from tabserve.service.core.drift_totals import counter_totals
from tabserve.service.core.errors import ModelNotReadyError
from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.core.registry import ModelRegistry
from tabserve.service.core.runtime import Prediction
from tabserve.service.core.served import ServedModel

log = logging.getLogger("tabserve.drift")

SNAPSHOTS_PER_WINDOW = 60
"""The window's start is known to within window / SNAPSHOTS_PER_WINDOW."""
TOP_FEATURES = 5
MAX_WAITING_ROWS = 8192
"""Calls wait for the flush timer until this many rows wait; then they are binned at once."""

Key = tuple[str, int]


@dataclass(frozen=True)
class BinReport:
    """One bin of a feature or of the prediction over the window."""

    label: str
    reference: float
    share: float | None
    rows: int


@dataclass(frozen=True)
class ColumnReport:
    """A feature (or the prediction) over the window."""

    name: str
    type: str
    """`number` or `category` (classes, for the prediction)."""
    rows: int
    psi: float | None
    drifting: bool
    missing_rate: float | None
    out_of_range_rate: float | None
    bins: list[BinReport]


@dataclass(frozen=True)
class DriftReport:
    """Drift of one model version over the window."""

    model: str
    version: int
    window_seconds: float
    covered_seconds: float
    since: datetime
    rows: int
    psi_threshold: float
    min_rows: int
    features: list[ColumnReport]
    prediction: ColumnReport | None
    top_drifting: list[str]
    available: bool = True
    """False when the version has no drift reference (then nothing is counted for it)."""
    reason: str | None = None
    """Why drift is unavailable, from the manifest (`drift.reason`)."""


@dataclass
class _Tracked:
    """One model version's reference, bound counters, and the calls not binned yet."""

    reference: DriftReference
    counters: list[Counter]
    positions: dict[tuple[str, str], int]
    """Flat bin of (feature, bin label); the prediction's bins under feature ""."""
    feature_index: dict[str, int]
    calls: list[tuple[npt.NDArray[Any], Prediction]] = field(default_factory=list)
    rows: int = 0
    """Rows in `calls`."""


@dataclass(frozen=True)
class _Totals:
    bins: npt.NDArray[np.float64]
    out_of_range: npt.NDArray[np.float64]


@dataclass(frozen=True)
class _Snapshot:
    taken: float
    totals: dict[Key, _Totals]


class DriftMonitor:
    """Counts what each model version serves per bin, and reports drift over a window."""

    def __init__(
        self,
        registry: ModelRegistry,
        metrics: ServiceMetrics,
        series: DriftMetrics,
        settings: DriftSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.series = series
        self.window = settings.window_seconds
        self.flush_seconds = settings.flush_seconds
        self.threshold = settings.psi_threshold
        self.min_rows = settings.min_rows
        self.clock = clock
        self.snapshot_every = self.window / SNAPSHOTS_PER_WINDOW
        self._tracked: dict[Key, _Tracked | None] = {}
        self.started = clock()
        """When counting began: this app's counters are new then, and with workers the
        supervisor builds the monitor before they fork, so nothing was counted before."""
        self._snapshots: deque[_Snapshot] = deque([_Snapshot(self.started, {})])
        self._timer: asyncio.Task[None] | None = None

    def attach(self, dataplane: DataPlane) -> None:
        """Count every model call, and flush before every exposition."""
        dataplane.call_listeners.append(self.observe)
        self.metrics.before_render.append(self.flush)

    # --- hot path -------------------------------------------------------------------

    def observe(
        self, model: ServedModel, features: npt.NDArray[Any], prediction: Prediction
    ) -> None:
        """Call listener: keep the batch for the next flush (binned now if many rows wait)."""
        key = (model.name, model.version)
        tracked = self._tracked[key] if key in self._tracked else self._track(model)
        if tracked is None:
            return
        tracked.calls.append((features, prediction))
        tracked.rows += features.shape[0]
        if tracked.rows >= MAX_WAITING_ROWS:
            self._count(key, tracked)

    # --- counters -------------------------------------------------------------------

    def flush(self) -> None:
        """Bin the calls kept since the last flush and add them to the Prometheus counters."""
        for key, tracked in list(self._tracked.items()):
            if tracked is not None and tracked.calls:
                self._count(key, tracked)

    def _count(self, key: Key, tracked: _Tracked) -> None:
        """One vectorised pass over every kept call of a version, one inc() per filled bin."""
        calls, tracked.calls, tracked.rows = tracked.calls, [], 0
        try:
            counts = tracked.reference.count(*_joined(calls))
        except Exception:
            # Listeners must never fail a request: stop counting this version, say so once.
            log.exception("drift counting failed for %s version %s; stopped", *key)
            self._tracked[key] = None
            return
        for index in np.flatnonzero(counts).tolist():
            tracked.counters[index].inc(int(counts[index]))

    def _track(self, model: ServedModel) -> _Tracked | None:
        """Build a version's reference and bind its series (each bin's counter starts at 0)."""
        key = (model.name, model.version)
        if not model.manifest.drift.available:  # no reference: no bins, no series
            self._tracked[key] = None
            return None
        try:
            reference = DriftReference(model.manifest)
        except Exception:
            log.exception("no drift reference for %s version %s", *key)
            self._tracked[key] = None
            return None
        labels = (model.name, str(model.version))
        series = self.series
        counters: list[Counter] = []
        positions: dict[tuple[str, str], int] = {}
        for column in reference.features:
            for offset, (label, share) in enumerate(
                zip(column.labels, column.reference, strict=True)
            ):
                counters.append(series.rows.labels(*labels, column.name, label))
                series.reference.labels(*labels, column.name, label).set(float(share))
                positions[(column.name, label)] = column.start + offset
        if reference.prediction is not None:
            column = reference.prediction
            for offset, (label, share) in enumerate(
                zip(column.labels, column.reference, strict=True)
            ):
                counters.append(series.prediction_rows.labels(*labels, label))
                series.prediction_reference.labels(*labels, label).set(float(share))
                positions[("", label)] = column.start + offset
        tracked = _Tracked(
            reference,
            counters,
            positions,
            {column.name: i for i, column in enumerate(reference.features)},
        )
        self._tracked[key] = tracked
        return tracked

    # --- the window -----------------------------------------------------------------

    async def start(self) -> None:
        """Bind every ready version's series (their counters appear at 0), snapshot, and
        start the timer that flushes and snapshots (the app's lifespan calls this).

        A worker forked long after the others (gunicorn replacing one) inherits a
        start older than the window; it cannot know the totals of a window ago, so
        its window starts now instead.
        """
        now = self.clock()
        if now - self._snapshots[0].taken > self.window:
            self._snapshots.clear()
        self._snapshot(now, self._totals())
        self._timer = asyncio.create_task(self.run())

    async def run(self) -> None:
        """Flush every `flush_seconds`; snapshot every `snapshot_every`. Runs until cancelled."""
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                self.flush()
                now = self.clock()
                if not self._snapshots or now - self._snapshots[-1].taken >= self.snapshot_every:
                    self._snapshot(now, self._totals())
            except Exception:
                log.exception("drift flush or snapshot failed; trying again")

    async def stop(self) -> None:
        """Stop the timer and flush what is buffered (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()

    def report(self, model: ServedModel) -> DriftReport:
        """Drift of `model` from the snapshot about `window` seconds ago until now.

        ModelNotReadyError if counting failed for this version (and stopped). A version
        without a drift reference gets a report that says so, and why.
        """
        if not model.manifest.drift.available:
            return self._unavailable(model, model.manifest.drift.reason)
        now = self.clock()
        totals = self._totals()
        self._snapshot(now, totals)
        base = self._snapshots[0]
        key = (model.name, model.version)
        tracked = self._tracked.get(key)
        if tracked is None:
            raise ModelNotReadyError(
                f"drift of model {model.name!r} version {model.version} is not counted: its "
                "counting failed (the log says why); the model itself still serves"
            )
        live = totals[key]
        start = base.totals.get(key)
        bins = live.bins - (start.bins if start is not None else 0)
        out_of_range = live.out_of_range - (start.out_of_range if start is not None else 0)
        reference = tracked.reference
        features = [
            self._column(column, bins, out_of_range[i] if column.kind == "number" else None)
            for i, column in enumerate(reference.features)
        ]
        prediction = None
        if reference.prediction is not None:
            prediction = self._column(reference.prediction, bins, None, missing=False)
        ranked = sorted(
            (f for f in features if f.drifting), key=lambda f: f.psi or 0.0, reverse=True
        )
        return DriftReport(
            model=model.name,
            version=model.version,
            window_seconds=self.window,
            covered_seconds=now - base.taken,
            since=datetime.fromtimestamp(time.time() - (now - base.taken), UTC),
            rows=features[0].rows,
            psi_threshold=self.threshold,
            min_rows=self.min_rows,
            features=features,
            prediction=prediction,
            top_drifting=[f.name for f in ranked[:TOP_FEATURES]],
        )

    def _unavailable(self, model: ServedModel, reason: str | None) -> DriftReport:
        return DriftReport(
            model=model.name,
            version=model.version,
            window_seconds=self.window,
            covered_seconds=0.0,
            since=datetime.now(UTC),
            rows=0,
            psi_threshold=self.threshold,
            min_rows=self.min_rows,
            features=[],
            prediction=None,
            top_drifting=[],
            available=False,
            reason=reason,
        )

    def _column(
        self,
        column: BinnedColumn,
        bins: npt.NDArray[np.float64],
        out_of_range: float | None,
        *,
        missing: bool = True,
    ) -> ColumnReport:
        counts = bins[column.start : column.stop]
        rows = int(counts.sum())
        value = psi(counts, column.reference)
        return ColumnReport(
            name=column.name,
            type=column.kind,
            rows=rows,
            psi=value,
            drifting=value is not None and value > self.threshold and rows >= self.min_rows,
            missing_rate=float(counts[-1] / rows) if missing and rows else None,
            out_of_range_rate=(
                float(out_of_range / rows) if out_of_range is not None and rows else None
            ),
            bins=[
                BinReport(label, float(share), float(n / rows) if rows else None, int(n))
                for label, share, n in zip(column.labels, column.reference, counts, strict=True)
            ],
        )

    def _snapshot(self, now: float, totals: dict[Key, _Totals]) -> None:
        """Keep `totals` if the last snapshot is old enough; drop the ones the window passed."""
        snapshots = self._snapshots
        if not snapshots or now - snapshots[-1].taken >= self.snapshot_every:
            snapshots.append(_Snapshot(now, totals))
        # snapshots[0] stays the newest one at least `window` old, the start of the window
        while len(snapshots) > 1 and snapshots[1].taken <= now - self.window:
            snapshots.popleft()

    def _totals(self) -> dict[Key, _Totals]:
        """Every ready version's counter totals, laid out like its bins (flushed first)."""
        self.flush()
        for model in self.registry.all():
            key = (model.name, model.version)
            if model.served is not None and key not in self._tracked:
                self._track(model.served)
        raw = counter_totals(
            [self.series.rows, self.series.prediction_rows, self.metrics.validation.out_of_range]
        )
        totals: dict[Key, _Totals] = {}
        for key, tracked in self._tracked.items():
            if tracked is not None:
                features = len(tracked.reference.features)
                totals[key] = _Totals(np.zeros(tracked.reference.size), np.zeros(features))
        for name, series in raw.items():
            for labels, value in series.items():
                found = dict(labels)
                key = (found.get("model", ""), _version(found.get("version", "")))
                tracked = self._tracked.get(key)
                if tracked is None or key not in totals:
                    continue
                if name == "tabserve_out_of_range_values":
                    index = tracked.feature_index.get(found.get("feature", ""))
                    if index is not None:
                        totals[key].out_of_range[index] = value
                    continue
                feature = found.get("feature", "")
                position = tracked.positions.get((feature, found.get("bin", "")))
                if position is not None:
                    totals[key].bins[position] = value
        return totals


def _joined(
    calls: list[tuple[npt.NDArray[Any], Prediction]],
) -> tuple[npt.NDArray[Any], Prediction]:
    """Several calls' rows and predictions as one batch."""
    if len(calls) == 1:
        return calls[0]
    features = np.concatenate([f for f, _ in calls])
    predict = np.concatenate([p.predict for _, p in calls])
    probas = [p.proba for _, p in calls if p.proba is not None]
    proba = np.concatenate(probas) if len(probas) == len(calls) else None
    return features, Prediction(predict, proba)


def _version(text: str) -> int:
    number = parse_digits(text)
    return -1 if number is None else number
